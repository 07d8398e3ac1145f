import assert from 'node:assert/strict'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { Api, assertProblem } from './hardening/client.js'
import { dataDir, startServer } from './hardening/server.js'
import { DIALECTS, GOOD_PASSWORD } from './helpers/app.js'
import { freshSchema } from './helpers/postgres.js'

// A sign-in whose password check is under way while the account is deleted: the account was there when it
// was looked up and is gone when the session is written. Before: the session's foreign key failed, 500.

/** Deletes the user in a transaction of the test's own and holds it open until `commit` is called. */
async function holdDeletion(dialect: 'sqlite' | 'postgres', target: { file?: string; schema?: string }, userId: number) {
  if (dialect === 'sqlite') {
    const db = new SQLite(target.file as string)
    db.pragma('foreign_keys = ON')
    db.prepare('BEGIN IMMEDIATE').run()
    db.prepare('DELETE FROM users WHERE id = ?').run(userId)
    return async () => {
      db.prepare('COMMIT').run()
      db.close()
    }
  }
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL, options: `-c search_path=${target.schema}` })
  await client.connect()
  await client.query('BEGIN')
  await client.query('DELETE FROM users WHERE id = $1', [userId])
  return async () => {
    await client.query('COMMIT')
    await client.end()
  }
}

for (const dialect of DIALECTS) {
  test(`when an account is deleted while its sign-in checks the password, then the sign-in is a 401, never a 500 (${dialect.name})`, { skip: dialect.skip }, async (t) => {
    const data = dataDir(t)
    const file = `${data.dir}/portrait.db`
    const schema = dialect.name === 'postgres' ? await freshSchema(t) : undefined
    const env: Record<string, string> = schema ? { DATABASE_URL: process.env.TEST_DATABASE_URL as string, DATABASE_SCHEMA: schema } : {}
    const server = await startServer(t, { data, env })
    const api = new Api(server.url)
    const owner = await api.signUp('leaving')
    // The deletion holds its lock: the sign-in finds the account (the committed state), checks the password,
    // then waits at its write until the deletion commits.
    const commit = await holdDeletion(dialect.name, { file, schema }, owner.user.id)
    const signIn = api.call('/api/auth/sign-in', { method: 'POST', json: { username: 'leaving', password: GOOD_PASSWORD } })
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await commit()
    const problem = assertProblem(await signIn, 401)
    assert.equal(problem.type, '/problems/invalid_credentials')
    assert.doesNotMatch(server.output(), /"level":50/, 'an error-level log line')
  })
}
