import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { TEST_JWT_SECRET } from './helpers/app.js'
import { deferCleanup, removeWhenDone } from './helpers/cleanup.js'

const ROOT = join(import.meta.dirname, '..')
const PG = process.env.TEST_DATABASE_URL

/** Runs the real server with `env` and returns how it ended; it is expected to exit at once. */
function start(t: test.TestContext, env: Record<string, string>): Promise<{ status: number | null; stderr: string; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-startup-'))
  removeWhenDone(t, dir)
  const base = { PATH: process.env.PATH ?? '', DATA_DIR: dir, DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`, MEDIA_ROOT: join(dir, 'media'), JWT_SECRET: TEST_JWT_SECRET, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' }
  return new Promise((resolveRun) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env: { ...base, ...env, ...(env.DATABASE_URL === 'dir' ? { DATABASE_URL: `sqlite:${dir}` } : {}) }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolveRun({ status: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr })
    })
  })
}

function assertOneLine(result: { status: number | null; stderr: string }, pattern: RegExp): void {
  assert.equal(result.status, 1, result.stderr)
  assert.match(result.stderr, /^portrait: [^\n]+\n$/, result.stderr)
  assert.match(result.stderr, pattern)
}

test('when the port is taken, then the server exits 1 with one line saying so', async (t) => {
  const holder = createServer()
  await new Promise<void>((listening) => holder.listen(0, '127.0.0.1', listening))
  deferCleanup(t, () => holder.close())
  const { port } = holder.address() as { port: number }
  assertOneLine(await start(t, { PORT: String(port) }), new RegExp(`^portrait: 127\\.0\\.0\\.1:${port} is already in use \\(EADDRINUSE\\); stop the other server or set PORT`))
})

test('when HOST does not resolve or is not an address of this machine, then the server exits 1 with one line', async (t) => {
  assertOneLine(await start(t, { HOST: 'no-such-host.invalid' }), /^portrait: HOST=no-such-host\.invalid does not resolve \((ENOTFOUND|EAI_AGAIN)\)/)
  assertOneLine(await start(t, { HOST: '192.0.2.1' }), /^portrait: HOST=192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\)/)
})

test('when the SQLite file cannot be opened or its directory made, then the server exits 1 with one line about the file', async (t) => {
  assertOneLine(await start(t, { DATABASE_URL: 'dir' }), /^portrait: the SQLite file \S+ cannot be opened or written \(SQLITE_CANTOPEN: [^)]*\); check that it is a writable file/)
  // Its directory would be inside a regular file (this test's own source).
  const file = join(import.meta.filename, 'portrait.db')
  assertOneLine(await start(t, { DATABASE_URL: `sqlite:${file}` }), /^portrait: cannot create the directory for the SQLite file .*\(mkdir .*: (EEXIST|ENOTDIR)\)/)
})

test('when several variables are bad, then one line names every one of them', async (t) => {
  const result = await start(t, { PORT: 'abc', LOG_LEVEL: 'loud', JWT_SECRET: 'short', AVATAR_SIZE: '1.5' })
  assertOneLine(result, /JWT_SECRET="<hidden>" is invalid/)
  for (const name of ['PORT="abc"', 'LOG_LEVEL="loud"', 'AVATAR_SIZE="1.5"']) assert.ok(result.stderr.includes(`${name} is invalid`), result.stderr)
  assert.doesNotMatch(result.stderr, /short/)
})

test('when the PostgreSQL database does not exist or refuses the role, then the server exits 1 with one line and no password', { skip: !PG && 'TEST_DATABASE_URL is not set' }, async (t) => {
  const url = new URL(PG as string)
  const missing = new URL(url)
  missing.pathname = '/portrait_no_such_database'
  missing.password = 'hunter22'
  assertOneLine(await start(t, { DATABASE_URL: missing.href }), /^portrait: the PostgreSQL database "portrait_no_such_database" does not exist \(3D000\); create it/)
  const stranger = new URL(url)
  stranger.username = 'portrait_no_such_role'
  stranger.password = 'hunter22'
  const refused = await start(t, { DATABASE_URL: stranger.href })
  assertOneLine(refused, /^portrait: PostgreSQL refused the role "portrait_no_such_role" \((28000|28P01): [^)]+\); check the user and password in DATABASE_URL/)
  assert.doesNotMatch(refused.stderr, /hunter22/)
})
