import assert from 'node:assert/strict'
import { createHmac, createPrivateKey, createPublicKey, createSign, generateKeyPairSync, type JsonWebKey, sign } from 'node:crypto'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { TEST_JWT_SECRET } from '../helpers/app.js'
import { Api, assertProblem, GOOD_PASSWORD, jwtPayload, type Session } from './client.js'
import { createSuperuser, dataDir, startServer } from './server.js'

// OWASP ASVS V3 (sessions) / API2 (broken authentication): every forged, stale or revoked token is a 401.

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

function hmacJwt(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string, hash = 'sha256'): string {
  const signingInput = `${b64(header)}.${b64(payload)}`
  return `${signingInput}.${createHmac(hash, secret).update(signingInput).digest('base64url')}`
}

const now = () => Math.floor(Date.now() / 1000)
const GRACE_SECONDS = 1
const refresh = (api: Api, token: string) => api.call('/api/auth/refresh', { method: 'POST', json: { refresh: token } })

test('tokens against a running server', async (t) => {
  const data = dataDir(t)
  await createSuperuser(data, 'root', GOOD_PASSWORD)
  // A short reuse grace, so that "after the grace" is a two-second wait.
  const server = await startServer(t, { data, env: { REFRESH_REUSE_GRACE: `${GRACE_SECONDS}s` } })
  const api = new Api(server.url)

  /** A token is refused: 401 problem+json with a Bearer challenge. */
  async function assertRejected(token: string, why: string) {
    const reply = await api.me(token)
    assert.equal(reply.status, 401, `${why}: ${reply.status} ${reply.text}`)
    assertProblem(reply, 401)
    assert.equal(reply.headers.get('www-authenticate'), 'Bearer')
  }

  await t.test('when a token is forged, re-signed or altered, then it is refused with 401', async () => {
    const victim = await api.signUp('victim')
    const other = await api.signUp('other')
    assert.equal((await api.me(victim.access)).status, 200)
    const claims = jwtPayload(victim.access)
    const [header, payload, signature] = victim.access.split('.') as [string, string, string]
    // The genuine header (HS256, typ at+jwt, the secret's kid): each "validly signed" forgery breaks one rule only.
    const valid = JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, unknown>
    assert.deepEqual(Object.keys(valid).sort(), ['alg', 'kid', 'typ'])
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const rs256Input = `${b64({ ...valid, alg: 'RS256' })}.${payload}`
    const forged: [string, string][] = [
      ['alg none, empty signature', `${b64({ ...valid, alg: 'none' })}.${payload}.`],
      ['alg none, kept signature', `${b64({ ...valid, alg: 'none' })}.${payload}.${signature}`],
      ['alg NONE', `${b64({ ...valid, alg: 'NONE' })}.${payload}.${signature}`],
      ['HS512 with the real secret', hmacJwt({ ...valid, alg: 'HS512' }, claims, TEST_JWT_SECRET, 'sha512')],
      ['HS384 with the real secret', hmacJwt({ ...valid, alg: 'HS384' }, claims, TEST_JWT_SECRET, 'sha384')],
      ['RS256 header, HMAC-signed with the secret (key confusion)', hmacJwt({ ...valid, alg: 'RS256' }, claims, TEST_JWT_SECRET)],
      ['RS256 signed with an attacker key', `${rs256Input}.${createSign('RSA-SHA256').update(rs256Input).sign(privateKey).toString('base64url')}`],
      ['HS256 with a wrong key', hmacJwt(valid, claims, `${TEST_JWT_SECRET}-but-not-quite`)],
      ['sub changed, signature kept', `${header}.${b64({ ...claims, sub: String(other.user.id) })}.${signature}`],
      ['the signature altered', `${header}.${payload}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`],
      ['expired (validly signed)', hmacJwt(valid, { ...claims, iat: now() - 3600, exp: now() - 60 }, TEST_JWT_SECRET)],
      ['no exp (validly signed)', hmacJwt(valid, { ...claims, exp: undefined }, TEST_JWT_SECRET)],
      ['not yet valid (validly signed)', hmacJwt(valid, { ...claims, nbf: now() + 3600 }, TEST_JWT_SECRET)],
      ['typ refresh (validly signed)', hmacJwt(valid, { ...claims, typ: 'refresh' }, TEST_JWT_SECRET)],
      // A valid signature over another user's id keeps the victim's session id: the session belongs to someone else.
      ['sub of another user with a valid signature', hmacJwt(valid, { ...claims, sub: String(other.user.id) }, TEST_JWT_SECRET)],
      ['sid of an unknown session (validly signed)', hmacJwt(valid, { ...claims, sid: 'A'.repeat(22) }, TEST_JWT_SECRET)],
      ['typ header missing (validly signed)', hmacJwt({ alg: 'HS256', kid: valid.kid }, claims, TEST_JWT_SECRET)],
      ['typ header JWT (validly signed)', hmacJwt({ ...valid, typ: 'JWT' }, claims, TEST_JWT_SECRET)],
      ['iat a day in the future (validly signed)', hmacJwt(valid, { ...claims, iat: now() + 86400, exp: now() + 86400 + 900 }, TEST_JWT_SECRET)],
      ['exp ten years away (validly signed)', hmacJwt(valid, { ...claims, iat: now(), exp: now() + 10 * 365 * 86400 }, TEST_JWT_SECRET)],
      ['sub not an integer (validly signed)', hmacJwt(valid, { ...claims, sub: `${claims.sub} OR 1=1` }, TEST_JWT_SECRET)],
      ['a jku header (validly signed)', hmacJwt({ ...valid, jku: `${server.url}/.well-known/jwks.json` }, claims, TEST_JWT_SECRET)],
      ['an unknown kid (validly signed)', hmacJwt({ ...valid, kid: 'hs-BBBBBBBBBBBBBBBBBBBBBB' }, claims, TEST_JWT_SECRET)],
      ['another iss (validly signed)', hmacJwt(valid, { ...claims, iss: 'https://evil.example' }, TEST_JWT_SECRET)],
      ['the refresh token as an access token', victim.refresh],
      ['garbage', 'a.b.c'],
    ]
    for (const [why, token] of forged) await assertRejected(token, why)
    const noScheme = await api.call('/api/users/me', { headers: { authorization: victim.access } })
    assertProblem(noScheme, 401)
    assert.equal((await api.me(victim.access)).status, 200, 'the genuine token still works')
    for (const scheme of ['bearer', 'BEARER']) {
      const reply = await api.call('/api/users/me', { headers: { authorization: `${scheme} ${victim.access}` } })
      assert.equal(reply.status, 200, `scheme ${scheme}: ${reply.text}`)
    }
  })

  await t.test('when the session ends by sign-out, then its access token is refused at once', async () => {
    const byRefresh = await api.signUp('signout1')
    assert.equal((await api.call('/api/auth/sign-out', { method: 'POST', json: { refresh: byRefresh.refresh } })).status, 204)
    await assertRejected(byRefresh.access, 'after sign-out with the refresh token')
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: byRefresh.refresh } }), 401)

    const first = await api.signUp('signout2')
    const second = await api.signIn('signout2')
    assert.equal((await api.call('/api/auth/sign-out', { method: 'POST', token: first.access, json: { all: true } })).status, 204)
    await assertRejected(first.access, 'after sign-out of all sessions (same session)')
    await assertRejected(second.access, 'after sign-out of all sessions (other session)')
  })

  await t.test('when the password changes, then every other session is refused and its refresh token is dead', async () => {
    const kept = await api.signUp('pwchange')
    const other = await api.signIn('pwchange')
    const changed = await api.call(`/api/users/${kept.user.id}/password`, {
      method: 'POST',
      token: kept.access,
      json: { current_password: GOOD_PASSWORD, new_password: 'a-Whole-new-secret-42' },
    })
    assert.equal(changed.status, 204, changed.text)
    await assertRejected(other.access, 'other session after password change')
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: other.refresh } }), 401)
    assert.equal((await api.me(kept.access)).status, 200, 'the session that changed it goes on')
  })

  await t.test('when a superuser deactivates a user, then the user is refused at once and cannot refresh or sign in', async () => {
    const root = await api.signIn('root')
    const target = await api.signUp('deactivated')
    const patch = await api.call(`/api/users/${target.user.id}`, { method: 'PATCH', token: root.access, json: { is_active: false } })
    assert.equal(patch.status, 200, patch.text)
    assert.equal(patch.json.is_active, false)
    await assertRejected(target.access, 'after deactivation')
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: target.refresh } }), 401)
    assertProblem(await api.call('/api/auth/sign-in', { method: 'POST', json: { username: 'deactivated', password: GOOD_PASSWORD } }), 401)
  })

  await t.test('when an account is deleted, then its tokens are refused', async () => {
    const gone = await api.signUp('deleted')
    const del = await api.call(`/api/users/${gone.user.id}`, { method: 'DELETE', token: gone.access, json: { current_password: GOOD_PASSWORD } })
    assert.equal(del.status, 204, del.text)
    await assertRejected(gone.access, 'after deletion')
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: gone.refresh } }), 401)
  })

  await t.test('when a rotated refresh token is presented again after the grace, then the whole session family ends', async () => {
    const session: Session = await api.signUp('reuse')
    const rotated = await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: session.refresh } })
    assert.equal(rotated.status, 200, rotated.text)
    await new Promise((resolve) => setTimeout(resolve, GRACE_SECONDS * 1000 + 1000))
    // The thief replays the old token: refused, and the legitimate holder's newer tokens die with it.
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: session.refresh } }), 401)
    assertProblem(await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: rotated.json.refresh } }), 401)
    await assertRejected(rotated.json.access, 'access token of the ended family')
    await assertRejected(session.access, 'first access token of the ended family')
  })

  await t.test('when one refresh token is presented by parallel clients within the grace, then all get the same working successor', async () => {
    const session: Session = await api.signUp('tworefresh')
    const replies = await Promise.all(Array.from({ length: 10 }, () => refresh(api, session.refresh)))
    assert.deepEqual(
      replies.map((reply) => reply.status),
      Array(10).fill(200),
      replies.map((reply) => reply.text.slice(0, 120)).join('\n'),
    )
    const successors = new Set(replies.map((reply) => reply.json.refresh))
    assert.equal(successors.size, 1, `${successors.size} different successors`)
    for (const reply of replies) assert.equal((await api.me(reply.json.access)).status, 200, 'every access token works')
    const successor = [...successors][0] as string
    const next = await refresh(api, successor)
    assert.equal(next.status, 200, `the successor rotates on: ${next.text}`)
    assert.equal((await api.me(next.json.access)).status, 200, 'the session is alive')
  })

  await t.test('when a real session id comes with a secret never issued for it, then 401 and the session is untouched', async () => {
    const victim: Session = await api.signUp('sidonly')
    // Anyone who saw an access token, even an expired one, knows its sid.
    const sid = jwtPayload(victim.access).sid as string
    for (const junk of ['A'.repeat(43), 'x'.repeat(43), victim.refresh.slice(23, 65).concat(victim.refresh.endsWith('A') ? 'B' : 'A')]) {
      assertProblem(await refresh(api, `${sid}.${junk}`), 401)
      assert.equal((await api.call('/api/auth/sign-out', { method: 'POST', json: { refresh: `${sid}.${junk}` } })).status, 204)
    }
    assert.equal((await api.me(victim.access)).status, 200, 'the access token still works')
    const rotated = await refresh(api, victim.refresh)
    assert.equal(rotated.status, 200, `the real refresh token still works: ${rotated.text}`)
  })
})

test('EdDSA tokens (the default without JWT_SECRET) against a running server', async (t) => {
  const data = dataDir(t)
  const issuer = 'https://accounts.example.com'
  const audience = ['https://api.example.com', 'https://other.example.com']
  const server = await startServer(t, { data, env: { JWT_SECRET: '', JWT_ISSUER: issuer, JWT_AUDIENCE: audience.join(',') } })
  const api = new Api(server.url)
  const victim = await api.signUp('edvictim')
  const [header, payload] = victim.access.split('.') as [string, string, string]
  const genuine = JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, string>
  const claims = jwtPayload(victim.access)

  await t.test('when a user signs in, then the token is EdDSA with a kid the JWKS publishes, typ at+jwt, iss and aud', async () => {
    assert.equal(genuine.alg, 'EdDSA')
    assert.equal(genuine.typ, 'at+jwt')
    assert.deepEqual(Object.keys(genuine).sort(), ['alg', 'kid', 'typ'])
    assert.equal(claims.iss, issuer)
    assert.deepEqual(claims.aud, audience)
    const jwks = await api.call('/.well-known/jwks.json')
    assert.equal(jwks.status, 200)
    assert.equal(jwks.headers.get('cache-control'), 'public, max-age=300')
    assert.deepEqual(
      jwks.json.keys.map((key: Record<string, unknown>) => [key.kid, key.alg, key.use, key.kty, key.crv]),
      [[genuine.kid, 'EdDSA', 'sig', 'OKP', 'Ed25519']],
    )
    for (const key of jwks.json.keys) assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'])
    assert.doesNotMatch(jwks.text, /"(d|k|p|q|dp|dq|qi)"\s*:/, 'no private member anywhere in the JWKS')
    assert.equal((await api.me(victim.access)).status, 200)
  })

  await t.test('when a token is forged in any of the known ways, then it is refused with 401', async () => {
    const jwk = (await api.call('/.well-known/jwks.json')).json.keys[0] as JsonWebKey
    const publicKey = createPublicKey({ key: jwk, format: 'jwk' })
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
    const der = publicKey.export({ type: 'spki', format: 'der' })
    // The real private key, read from the database as only an operator could: a validly signed token that
    // breaks one claim rule is refused for that rule alone.
    const sqlite = new Database(join(data.dir, 'portrait.db'), { readonly: true })
    const row = sqlite.prepare('SELECT private_jwk FROM signing_keys WHERE kid = ?').get(genuine.kid) as { private_jwk: string }
    sqlite.close()
    const realKey = createPrivateKey({ key: JSON.parse(row.private_jwk), format: 'jwk' })
    const attacker = generateKeyPairSync('ed25519')
    const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), kid: 'attacker-key-0000000001', alg: 'EdDSA', use: 'sig' }
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const edJwt = (head: Record<string, unknown>, body: Record<string, unknown>, key = realKey) => {
      const input = `${b64(head)}.${b64(body)}`
      return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`
    }
    const esJwt = (head: Record<string, unknown>, body: Record<string, unknown>) => {
      const input = `${b64(head)}.${b64(body)}`
      return `${input}.${sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
    }
    const hs = { ...genuine, alg: 'HS256' }
    const forged: [string, string][] = [
      ['HS256 signed with the public key PEM as secret (algorithm confusion)', hmacJwt(hs, claims, pem)],
      ['HS256 signed with the public JWK JSON as secret', hmacJwt(hs, claims, JSON.stringify(jwk))],
      ['HS256 signed with the raw public key as secret', hmacJwt(hs, claims, Buffer.from(jwk.x as string, 'base64url').toString('latin1'))],
      ['HS256 signed with the DER public key as secret', hmacJwt(hs, claims, der.toString('latin1'))],
      ['alg none with the real kid', `${b64({ ...genuine, alg: 'none' })}.${payload}.`],
      ['ES256 with the real kid', esJwt({ ...genuine, alg: 'ES256' }, claims)],
      ['EdDSA signed by another key under the real kid', edJwt(genuine, claims, attacker.privateKey)],
      ['an unknown kid (attacker-signed)', edJwt({ ...genuine, kid: attackerJwk.kid }, claims, attacker.privateKey)],
      ['the attacker key embedded as a jwk header', edJwt({ alg: 'EdDSA', typ: 'at+jwt', jwk: attackerJwk }, claims, attacker.privateKey)],
      ['a jku header pointing elsewhere', edJwt({ ...genuine, kid: attackerJwk.kid, jku: 'https://attacker.example/jwks.json' }, claims, attacker.privateKey)],
      ['an x5u header, validly signed', edJwt({ ...genuine, x5u: 'https://attacker.example/cert.pem' }, claims)],
      ['a jku header, validly signed', edJwt({ ...genuine, jku: `${server.url}/.well-known/jwks.json` }, claims)],
      ['a wrong iss, validly signed', edJwt(genuine, { ...claims, iss: 'https://attacker.example' })],
      ['iss missing, validly signed', edJwt(genuine, { ...claims, iss: undefined })],
      ['a wrong aud, validly signed', edJwt(genuine, { ...claims, aud: 'https://attacker.example' })],
      ['an aud list without ours, validly signed', edJwt(genuine, { ...claims, aud: ['https://a.example', 'https://b.example'] })],
      ['aud missing, validly signed', edJwt(genuine, { ...claims, aud: undefined })],
      ['typ JWT, validly signed', edJwt({ ...genuine, typ: 'JWT' }, claims)],
      ['expired, validly signed', edJwt(genuine, { ...claims, iat: now() - 3600, exp: now() - 60 })],
    ]
    for (const [why, token] of forged) {
      const reply = await api.me(token)
      assert.equal(reply.status, 401, `${why}: ${reply.status} ${reply.text}`)
      assertProblem(reply, 401)
    }
    // The same key with every rule kept: accepted, one audience of ours is enough.
    assert.equal((await api.me(edJwt(genuine, { ...claims, aud: audience[1] }))).status, 200)
    assert.equal((await api.me(victim.access)).status, 200, 'the genuine token still works')
  })
})
