import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { type TestContext, test } from 'node:test'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import { GOOD_PASSWORD } from './helpers/app.js'
import { deferCleanup, removeWhenDone } from './helpers/cleanup.js'
import { freshSchema, POSTGRES_SKIP } from './helpers/postgres.js'
import { startServer } from './helpers/processes.js'
import { suite } from './helpers/suite.js'

// Portrait's tokens as another service sees them: a process of its own with jose and the live JWKS URL,
// keys rotated and revoked with the real CLI while the servers run.

const ROOT = resolve(import.meta.dirname, '..')
const AUDIENCE = 'https://api.example.com'

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  })
  const text = await response.text()
  return { status: response.status, json: text ? JSON.parse(text) : undefined }
}

const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()).kid as string
const me = (base: string, token: string) => call(base, 'GET', '/api/users/me', undefined, { authorization: `Bearer ${token}` })

/** `portrait …` as an operator runs it, against the servers' database. */
async function portrait(env: Record<string, string>, ...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/portrait.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    timeout: 60_000,
  })
  return stdout
}

/** The verifying service: one long-lived process, so its JWKS cache lives across rotations as a real one would. */
function remoteVerifier(t: TestContext, jwksUrl: string, issuer: string, cacheMaxAgeMs: number) {
  const child = spawn(process.execPath, ['test/helpers/remote-verifier.mjs'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', JWKS_URL: jwksUrl, ISSUER: issuer, AUDIENCE, CACHE_MAX_AGE_MS: String(cacheMaxAgeMs) },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  deferCleanup(t, () => child.kill('SIGKILL'))
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  return async (token: string): Promise<{ ok: boolean; kid?: string; sub?: string; code?: string }> => {
    child.stdin.write(`${token}\n`)
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const next = await lines.next()
    clearTimeout(timer)
    if (next.done) throw new Error('the verifier exited')
    return JSON.parse(next.value)
  }
}

test('when another service verifies with jose and the JWKS URL, then it follows rotation and revocation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-jwks-'))
  removeWhenDone(t, dir)
  const env = { DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`, DATA_DIR: dir, JWT_SECRET: '', JWT_AUDIENCE: AUDIENCE }
  const server = await startServer(t, { env })
  // No JWT_ISSUER or PUBLIC_URL: the issuer is the configured HOST:PORT (PORT=0 here), the same on every instance.
  const verify = remoteVerifier(t, `${server.url}/.well-known/jwks.json`, 'http://127.0.0.1:0', 1000)

  const signUp = await call(server.url, 'POST', '/api/auth/sign-up', { username: 'remote', email: 'remote@example.com', password: GOOD_PASSWORD })
  assert.equal(signUp.status, 201)
  const first = signUp.json.access as string
  const firstKid = kidOf(first)
  assert.deepEqual(await verify(first), { ok: true, sub: String(signUp.json.user.id), sid: JSON.parse(Buffer.from(first.split('.')[1] as string, 'base64url').toString()).sid, kid: firstKid })
  // One signature character changed well inside it (the last one's low bits are padding, which jose ignores).
  const tampered = `${first.slice(0, -10)}${first.at(-10) === 'A' ? 'B' : 'A'}${first.slice(-9)}`
  assert.equal((await verify(tampered)).ok, false, 'a tampered token fails there too')

  const rotated = await portrait(env, 'keys', 'rotate')
  const secondKid = /new signing key (\S+)/.exec(rotated)?.[1] as string
  assert.ok(secondKid && secondKid !== firstKid, rotated)
  const signIn = await call(server.url, 'POST', '/api/auth/sign-in', { username: 'remote', password: GOOD_PASSWORD })
  const second = signIn.json.access as string
  assert.equal(kidOf(second), secondKid, 'the running server signs with the rotated key')
  assert.equal((await verify(second)).ok, true, 'the verifier fetches the new key on the unknown kid')
  assert.equal((await verify(first)).ok, true, 'tokens of the previous key verify until they expire')
  assert.equal((await me(server.url, first)).status, 200)
  const listed = await portrait(env, 'keys', 'list')
  assert.match(listed, new RegExp(`${firstKid}  EdDSA  created \\S+  verifying until `))
  assert.match(listed, new RegExp(`${secondKid}  EdDSA  created \\S+  current`))
  assert.doesNotMatch(listed, /"d"|private/i)

  await portrait(env, 'keys', 'revoke', firstKid)
  assert.equal((await me(server.url, first)).status, 401, 'Portrait refuses a revoked key at once')
  assert.equal((await me(server.url, second)).status, 200)
  // The verifier keeps keys for 1 s here (10 min by default): past that it fetches again and the key is gone.
  await new Promise((wait) => setTimeout(wait, 1500))
  assert.equal((await verify(second)).ok, true)
  assert.deepEqual(await verify(first), { ok: false, code: 'ERR_JWKS_NO_MATCHING_KEY' })

  // A service that must know at once asks Portrait.
  const secret = (await portrait(env, 'service-keys', 'create', 'billing')).trim()
  const introspect = (token: string) => call(server.url, 'POST', '/api/auth/introspect', { token }, { authorization: `Bearer ${secret}` })
  assert.equal((await introspect(second)).json.active, true)
  assert.deepEqual((await introspect(first)).json, { active: false })
  assert.match(await portrait(env, 'service-keys', 'list'), /^billing {2}created \S+ {2}active$/m)
  assert.ok(!server.output().includes(secret), 'the service secret is not in the log')
  const sqlite = new Database(join(dir, 'portrait.db'), { readonly: true })
  const privates = (sqlite.prepare('SELECT private_jwk FROM signing_keys').all() as { private_jwk: string }[]).map((row) => JSON.parse(row.private_jwk).d)
  sqlite.close()
  assert.equal(privates.length, 2)
  for (const d of privates) {
    assert.match(d, /^[A-Za-z0-9_-]{43}$/)
    assert.ok(!server.output().includes(d), 'no private key in the log')
    assert.ok(!listed.includes(d), 'nor in keys list')
  }
})

suite('two instances on one PostgreSQL schema with EdDSA keys', POSTGRES_SKIP, () => {
  test('when a key rotates or is revoked, then both instances honour it at once, and they share one server secret', async (t) => {
    const schema = await freshSchema(t)
    const env = {
      DATABASE_URL: process.env.TEST_DATABASE_URL as string,
      DATABASE_SCHEMA: schema,
      JWT_SECRET: '',
      JWT_ISSUER: 'https://id.example.com',
      JWT_AUDIENCE: AUDIENCE,
      REFRESH_REUSE_GRACE: '30s',
    }
    // Started together on an empty schema: one signing key between them.
    const [a, b] = await Promise.all([startServer(t, { env }), startServer(t, { env })])
    const jwksOf = async (base: string) => (await call(base, 'GET', '/.well-known/jwks.json')).json.keys.map((key: { kid: string }) => key.kid)
    const keys = await jwksOf(a.url)
    assert.equal(keys.length, 1)
    assert.deepEqual(await jwksOf(b.url), keys)

    const signUp = await call(a.url, 'POST', '/api/auth/sign-up', { username: 'twin', email: 'twin@example.com', password: GOOD_PASSWORD })
    const first = signUp.json.access as string
    assert.equal((await me(b.url, first)).status, 200)

    await portrait(env, 'keys', 'rotate')
    const signIn = await call(b.url, 'POST', '/api/auth/sign-in', { username: 'twin', password: GOOD_PASSWORD })
    const second = signIn.json.access as string
    assert.notEqual(kidOf(second), kidOf(first))
    assert.equal((await me(a.url, second)).status, 200, 'A learns the key B signs with on the unknown kid')
    for (const server of [a, b]) assert.equal((await me(server.url, first)).status, 200)

    await portrait(env, 'keys', 'revoke', kidOf(first))
    for (const server of [a, b]) {
      assert.equal((await me(server.url, first)).status, 401, 'revoked on every instance at the next request')
      assert.equal((await me(server.url, second)).status, 200)
    }

    // Refresh successors derive from the shared server secret: a repeat on B within the grace gets A's successor.
    const refresh = signIn.json.refresh as string
    const onA = await call(a.url, 'POST', '/api/auth/refresh', { refresh })
    const onB = await call(b.url, 'POST', '/api/auth/refresh', { refresh })
    assert.equal(onA.status, 200)
    assert.equal(onB.status, 200, JSON.stringify(onB.json))
    assert.equal(onB.json.refresh, onA.json.refresh)
  })
})
