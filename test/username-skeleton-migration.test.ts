import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Kysely, Migrator, sql } from 'kysely'
import { buildApp } from '../src/app.js'
import { hashPassword } from '../src/auth/passwords.js'
import { createDb } from '../src/db/database.js'
import * as initial from '../src/db/migrations/0001_initial.js'
import { skeleton } from '../src/users/lookalikes.js'
import { CHEAP_HASH, DIALECTS, GOOD_PASSWORD, problemOf, TestClient, testConfig } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { suite } from './helpers/suite.js'

// Migration 0004 on a database that already holds lookalike accounts (as every deployment before it may):
// the oldest keeps the skeleton, the later lookalike keeps its account, and nobody can add another.

const EXISTING = ['root', 'r\u043E\u043Et', 'Alice', 'aIice', 'bob']

for (const dialect of DIALECTS) {
  suite(`migration 0004: username skeletons (${dialect.name})`, dialect.skip, () => {
    test('when a database with lookalike usernames is upgraded, then the oldest owns the skeleton and no newcomer can take it', async (t) => {
      const config = await testConfig(t, dialect.name)
      const hash = await hashPassword(GOOD_PASSWORD, CHEAP_HASH)
      const before = createDb(config)
      try {
        const db = before.kysely as unknown as Kysely<any>
        const schema = dialect.name === 'postgres' ? ((await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]?.s ?? undefined) : undefined
        const migrator = new Migrator({ db, provider: { getMigrations: async () => ({ '0001_initial': initial }) }, migrationTableSchema: schema })
        const { error } = await migrator.migrateToLatest()
        if (error) throw error
        const now = new Date().toISOString()
        const flag = dialect.name === 'postgres' ? false : 0
        for (const username of EXISTING) {
          await db
            .insertInto('users')
            .values({
              username,
              username_lower: username.normalize('NFKC').toLowerCase(),
              email: `${username}@example.com`,
              email_lower: `${username}@example.com`.toLowerCase(),
              password_hash: hash,
              date_joined: now,
              is_active: dialect.name === 'postgres' ? true : 1,
              is_staff: flag,
              is_superuser: flag,
            })
            .execute()
        }
      } finally {
        await before.destroy()
      }

      const app = await buildApp(config) // migrates to the latest version
      deferCleanup(t, () => app.close())
      const after = createDb(config)
      deferCleanup(t, () => after.destroy())
      const rows = await after.kysely.selectFrom('users').select(['username', 'username_skeleton']).orderBy('id').execute()
      assert.deepEqual(
        rows.map((row) => [row.username, row.username_skeleton]),
        [
          ['root', skeleton('root')],
          ['r\u043E\u043Et', null],
          ['Alice', skeleton('Alice')],
          ['aIice', null],
          ['bob', skeleton('bob')],
        ],
      )

      const client = new TestClient(app)
      for (const username of ['r00t', 'ROOT', 'alice', 'AIice', 'b0b']) {
        const reply = await client.send('POST', '/api/auth/sign-up', { username, email: `new-${username.toLowerCase()}@example.org`, password: GOOD_PASSWORD })
        assert.ok(problemOf(reply, 400).errors?.username, `${username}: ${reply.body}`)
      }
      // The grandfathered lookalike keeps its account and may edit it, its own name included.
      const signIn = await client.send('POST', '/api/auth/sign-in', { username: 'r\u043E\u043Et', password: GOOD_PASSWORD })
      assert.equal(signIn.statusCode, 200, signIn.body)
      const { access, user } = signIn.json()
      const edit = await client.send('PUT', `/api/users/${user.id}`, { username: user.username, first_name: 'Still here' }, access)
      assert.equal(edit.statusCode, 200, edit.body)
      // A new name gets its skeleton; a name like root's does not.
      problemOf(await client.send('PATCH', `/api/users/${user.id}`, { username: 'Root' }, access), 400)
      const renamed = await client.send('PATCH', `/api/users/${user.id}`, { username: 'rooted' }, access)
      assert.equal(renamed.statusCode, 200, renamed.body)
      const row = await after.kysely.selectFrom('users').select('username_skeleton').where('id', '=', user.id).executeTakeFirstOrThrow()
      assert.equal(row.username_skeleton, skeleton('rooted'))
    })
  })
}
