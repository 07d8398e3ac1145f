import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { GOOD_PASSWORD } from './helpers/app.js'
import { removeWhenDone } from './helpers/cleanup.js'
import { startServer } from './helpers/processes.js'

const ROOT = join(import.meta.dirname, '..')

test('when the server runs as a process, then a whole session works over a real socket and secrets stay out of the log', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-socket-'))
  removeWhenDone(t, dir)
  // No JWT_SECRET: the server generates one, as on a newcomer's first start.
  const { url, child, output } = await startServer(t, { env: { DATA_DIR: dir, DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`, JWT_SECRET: '' } })

  const json = { 'content-type': 'application/json' }
  const signUp = await fetch(`${url}/api/auth/sign-up`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ username: 'socket', email: 'socket@example.com', password: GOOD_PASSWORD }),
  })
  assert.equal(signUp.status, 201)
  const session = await signUp.json()
  const me = await fetch(`${url}/api/users/me`, { headers: { authorization: `Bearer ${session.access}` } })
  assert.equal(me.status, 200)
  assert.equal((await me.json()).username, 'socket')
  assert.ok(me.headers.get('x-request-id'))
  assert.match(me.headers.get('etag') ?? '', /^".+"$/)
  const signIn = await fetch(`${url}/api/auth/sign-in`, { method: 'POST', headers: json, body: JSON.stringify({ username: 'socket', password: GOOD_PASSWORD }) })
  assert.equal(signIn.status, 200)

  // No JWT_SECRET: tokens are EdDSA, signed by a key the server generated into its database, which is the
  // owner's alone (it holds that private key and the password hashes).
  const header = JSON.parse(Buffer.from(session.access.split('.')[0], 'base64url').toString())
  assert.equal(header.alg, 'EdDSA')
  assert.ok(header.kid, 'the token names its key')
  for (const file of ['portrait.db', 'portrait.db-wal']) assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600, file)

  // SIGTERM: finish and exit 0.
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  assert.equal(await exited, 0)
  const log = output()
  assert.match(log, /"url":"\/api\/users\/me","status":200/)
  for (const secret of [GOOD_PASSWORD, session.access, session.refresh]) assert.ok(!log.includes(secret), 'a secret reached the log')
})

test('when a variable is invalid, then the server refuses to start with a one-line message naming it', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env: { ...process.env, PORT: 'x' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk) => (stderr += chunk))
  const code = await new Promise((resolve) => child.once('exit', resolve))
  assert.equal(code, 1)
  assert.equal(stderr.trim(), 'portrait: PORT="x" is invalid: expected an integer from 0 to 65535')
})
