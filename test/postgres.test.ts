import assert from 'node:assert/strict'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import { sql } from 'kysely'
import type { Config } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { MIGRATION_NAMES, migrateToLatest } from '../src/db/migrate.js'
import { isDatabaseUnavailable } from '../src/db/unavailable.js'
import { DIALECTS, problemOf, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { setFlags } from './helpers/db.js'
import { POSTGRES_SKIP, queryPostgres } from './helpers/postgres.js'
import { suite } from './helpers/suite.js'

// Behaviour that depends on how each dialect stores booleans, timestamps and counts.

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

/** Moves every session of the user to expire at `when`, over a connection of the test's own. */
async function expireSessions(config: Config, userId: number, when: Date): Promise<void> {
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length))
    try {
      db.prepare('UPDATE sessions SET expires_at = ? WHERE user_id = ?').run(when.toISOString(), userId)
    } finally {
      db.close()
    }
    return
  }
  await queryPostgres('UPDATE sessions SET expires_at = $1 WHERE user_id = $2', [when.toISOString(), userId], {
    url: config.databaseUrl,
    schema: config.databaseSchema,
  })
}

for (const dialect of DIALECTS) {
  suite(`dialect behaviour (${dialect.name})`, dialect.skip, () => {
    test('when a session has expired, then the hot-path check refuses its access token', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const { access, user } = await client.signUp()
      await expireSessions(config, user.id, new Date(Date.now() + 60_000))
      assert.equal((await client.get('/api/users/me', access)).statusCode, 200)
      await expireSessions(config, user.id, new Date(Date.now() - 1000))
      problemOf(await client.get('/api/users/me', access), 401)
    })

    test('when a superuser deactivates and reactivates a user, then the flag is stored as the dialect stores booleans', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const admin = await client.signUp()
      await setFlags(config, admin.user.id, { is_staff: true, is_superuser: true })
      const other = await client.signUp()

      const off = await client.send('PATCH', `/api/users/${other.user.id}`, { is_active: false }, admin.access)
      assert.equal(off.statusCode, 200, off.body)
      // The service writes 0/1; PostgreSQL's boolean column must take them and read back false/true.
      assert.equal(off.json().is_active, false)
      const listed = await client.get('/api/users', admin.access)
      assert.equal(listed.statusCode, 200)
      assert.equal(listed.json().count, 2)
      assert.equal(typeof listed.json().count, 'number')
      for (const user of listed.json().results) {
        for (const field of ['is_active', 'is_staff', 'is_superuser']) assert.equal(typeof user[field], 'boolean')
      }
      problemOf(await client.get('/api/users/me', other.access), 401)
      const on = await client.send('PATCH', `/api/users/${other.user.id}`, { is_active: true }, admin.access)
      assert.equal(on.json().is_active, true)
      assert.equal((await client.get('/api/users/me', other.access)).statusCode, 200)
    })

    test('when a search holds LIKE wildcards or another case, then it matches them literally and case-insensitively', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const admin = await client.signUp({ username: 'admin' })
      await setFlags(config, admin.user.id, { is_staff: true })
      await client.signUp({ username: 'Jo_Ann' })
      await client.signUp({ username: 'joXann' })
      const found = (await client.get('/api/users?search=jo_a', admin.access)).json()
      assert.deepEqual(
        found.results.map((user: { username: string }) => user.username),
        ['Jo_Ann'],
      )
      assert.equal(found.count, 1)
      assert.equal((await client.get('/api/users?search=%25', admin.access)).json().count, 0)
    })

    test('when a user signs up, then timestamps come back as ISO-8601 UTC with milliseconds', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const { access } = await client.signUp()
      const me = (await client.get('/api/users/me', access)).json()
      assert.match(me.date_joined, ISO_UTC)
      assert.match(me.last_login, ISO_UTC)
      assert.ok(Math.abs(Date.parse(me.date_joined) - Date.now()) < 10 * 60_000)
    })
  })
}

suite('PostgreSQL storage types', POSTGRES_SKIP, () => {
  test('when a user signs up, then PostgreSQL holds real booleans and timestamptz that read back as the API shows them', async (t) => {
    const { client, config } = await testApp(t, 'postgres')
    const { user } = await client.signUp()
    const [row] = await queryPostgres<Record<string, unknown>>(
      `SELECT pg_typeof(is_active)::text AS bool_type, pg_typeof(date_joined)::text AS time_type,
              is_active, is_staff, date_joined FROM users WHERE id = $1`,
      [user.id],
      { url: config.databaseUrl, schema: config.databaseSchema },
    )
    assert.ok(row)
    assert.equal(row.bool_type, 'boolean')
    assert.equal(row.time_type, 'timestamp with time zone')
    assert.equal(row.is_active, true)
    assert.equal(row.is_staff, false)
    assert.equal((row.date_joined as Date).toISOString(), user.date_joined)
  })
})

suite('PostgreSQL connections', POSTGRES_SKIP, () => {
  test('when a connection dies between two statements of a transaction, then the caller gets the error and the process lives on', async (t) => {
    const db = createDb({ databaseUrl: process.env.TEST_DATABASE_URL as string, databasePoolSize: 2 })
    deferCleanup(t, () => db.destroy())
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    deferCleanup(t, () => process.off('uncaughtException', onUncaught))

    const failure = await db.kysely
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
        // Ends only this test's own backend, as a server restart or a network cut would.
        await queryPostgres('select pg_terminate_backend($1)', [rows[0]?.pid])
        // Work between statements (an image being stored): the termination arrives while no query runs.
        await new Promise((wait) => setTimeout(wait, 300))
        await sql`select 1`.execute(trx)
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    assert.ok(failure, 'the transaction must fail')
    assert.ok(isDatabaseUnavailable(failure), String(failure))
    assert.deepEqual(uncaught, [])
    const { rows } = await sql<{ ok: number }>`select 1 as ok`.execute(db.kysely)
    assert.deepEqual(rows, [{ ok: 1 }])
  })
})

suite('PostgreSQL migrations', POSTGRES_SKIP, () => {
  test('when other schemas are created and dropped meanwhile, then migrating a fresh schema still succeeds', async (t) => {
    const url = process.env.TEST_DATABASE_URL as string
    let churning = true
    // Another deployment (or test) busy with its own schemas in the same database.
    const churn = (async () => {
      for (let i = 0; churning; i++) {
        const schema = `portrait_churn_${process.pid}_${i}`
        await queryPostgres(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.t (id serial PRIMARY KEY, a text, b text)`)
        await queryPostgres(`DROP SCHEMA ${schema} CASCADE`)
      }
    })()
    deferCleanup(t, async () => {
      churning = false
      await churn
    })
    for (let round = 0; round < 10; round++) {
      const schema = `portrait_migrate_${process.pid}_${round}`
      await queryPostgres(`CREATE SCHEMA ${schema}`)
      const db = createDb({ databaseUrl: url, databaseSchema: schema, databasePoolSize: 2 })
      try {
        assert.deepEqual(await migrateToLatest(db.kysely), MIGRATION_NAMES, `round ${round}`)
        assert.deepEqual(await migrateToLatest(db.kysely), [], `round ${round}, second run`)
      } finally {
        await db.destroy()
        await queryPostgres(`DROP SCHEMA ${schema} CASCADE`)
      }
    }
  })
})
