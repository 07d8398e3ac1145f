import assert from 'node:assert/strict'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import { purgeExpiredSessions } from '../src/auth/session-purge.js'
import { SessionsRepository } from '../src/auth/sessions.repository.js'
import type { Config } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { DIALECTS, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { query } from './helpers/db.js'
import { suite } from './helpers/suite.js'

// Sessions end by sign-out (deleted then) or by expiry: expired ones are purged periodically, in small
// batches, so the table does not grow with every sign-in for ever.

async function sessionIds(config: Config, userId?: number): Promise<string[]> {
  const rows = await query<{ id: string }>(config, `SELECT id FROM sessions${userId === undefined ? '' : ' WHERE user_id = ?'}`, userId === undefined ? [] : [userId])
  return rows.map((row) => row.id).sort()
}

const past = (ms: number) => new Date(Date.now() - ms).toISOString()

for (const dialect of DIALECTS) {
  suite(`session purge (${dialect.name})`, dialect.skip, () => {
    test('when sessions expire, then the running app purges them and keeps the live ones', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { sessionPurgeIntervalMs: 50 })
      const expiring = await client.signUp()
      await client.send('POST', '/api/auth/sign-in', { username: expiring.user.username, password: 'correct-Horse-battery-9' })
      const live = await client.signUp()
      assert.equal((await sessionIds(config, expiring.user.id)).length, 2)
      await query(config, 'UPDATE sessions SET expires_at = ? WHERE user_id = ?', [past(1000), expiring.user.id])

      const deadline = Date.now() + 10_000
      while ((await sessionIds(config, expiring.user.id)).length > 0) {
        if (Date.now() > deadline) throw new Error('expired sessions were never purged')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.equal((await sessionIds(config, live.user.id)).length, 1)
      assert.equal((await client.get('/api/users/me', live.access)).statusCode, 200)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: live.refresh })).statusCode, 200)
    })

    test('when thousands of sessions have expired, then one purge removes them all in batches and no live one', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const liveIds = await sessionIds(config, owner.user.id)
      const expired = 1234
      const future = new Date(Date.now() + 3_600_000).toISOString()
      if (dialect.name === 'sqlite') {
        const db = new SQLite(config.databaseUrl.slice('sqlite:'.length))
        const insert = db.prepare('INSERT INTO sessions (id, user_id, refresh_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)')
        db.transaction(() => {
          for (let i = 1; i <= expired; i++) insert.run(`expired-${i}`, owner.user.id, 'h', past(86_400_000), past(1000 + i))
          for (let i = 1; i <= 3; i++) insert.run(`live-${i}`, owner.user.id, 'h', past(1000), future)
        })()
        db.close()
      } else {
        await query(
          config,
          "INSERT INTO sessions (id, user_id, refresh_hash, created_at, expires_at) SELECT 'expired-' || g, ?, 'h', ?::timestamptz, ?::timestamptz FROM generate_series(1, ?::int) g",
          [owner.user.id, past(86_400_000), past(1000), expired],
        )
        await query(config, "INSERT INTO sessions (id, user_id, refresh_hash, created_at, expires_at) SELECT 'live-' || g, ?, 'h', ?::timestamptz, ?::timestamptz FROM generate_series(1, 3) g", [
          owner.user.id,
          past(1000),
          future,
        ])
      }

      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      const removed = await purgeExpiredSessions(new SessionsRepository(db), new Date(), 500)
      assert.equal(removed, expired)
      assert.deepEqual(await sessionIds(config, owner.user.id), [...liveIds, 'live-1', 'live-2', 'live-3'].sort())
      assert.equal((await client.get('/api/users/me', owner.access)).statusCode, 200)
      // Nothing left to do: a second run removes nothing.
      assert.equal(await purgeExpiredSessions(new SessionsRepository(db), new Date(), 500), 0)
    })

    test('when one account signs in over and over, then it keeps its 100 newest sessions, not one per sign-in', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const signIn = async () => {
        const reply = await client.send('POST', '/api/auth/sign-in', { username: owner.user.username, password: 'correct-Horse-battery-9' })
        assert.equal(reply.statusCode, 200, reply.body)
        return reply.json() as { access: string; refresh: string }
      }
      const first = await signIn()
      const later: { access: string; refresh: string }[] = []
      for (let n = 0; n < 105; n++) later.push(await signIn())
      // Before: 107 rows, one per sign-in, each live for REFRESH_TOKEN_TTL.
      assert.equal((await sessionIds(config, owner.user.id)).length, 100)
      // The oldest ended (sign-up's and the first sign-ins'); the newest all work.
      assert.equal((await client.get('/api/users/me', owner.access)).statusCode, 401)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: first.refresh })).statusCode, 401)
      for (const session of later.slice(-100)) assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: later.at(-1)?.refresh })).statusCode, 200)
      // Another user's sessions are not touched.
      const other = await client.signUp()
      await signIn()
      assert.equal((await client.get('/api/users/me', other.access)).statusCode, 200)
    })

    test('when the schema is migrated, then sessions are indexed by expires_at for the purge', async (t) => {
      const { config } = await testApp(t, dialect.name)
      const names =
        dialect.name === 'sqlite'
          ? (await query<{ name: string }>(config, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions'")).map((row) => row.name)
          : (await query<{ indexname: string }>(config, "SELECT indexname FROM pg_indexes WHERE tablename = 'sessions' AND schemaname = current_schema()")).map(
              (row) => row.indexname,
            )
      assert.ok(names.includes('sessions_expires_at_idx'), names.join(', '))
    })
  })
}
