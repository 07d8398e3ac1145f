import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { problemOf, TEST_JWT_SECRET, testApp } from './helpers/app.js'

// Access tokens are verified with node:crypto instead of jose (BENCHMARKS.md): these are the corners
// jose used to guard that the forged-token suites do not already reach, each signed with the real secret.

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const sign = (input: string) => createHmac('sha256', TEST_JWT_SECRET).update(input).digest('base64url')
const jwt = (header: unknown, payload: unknown) => {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${sign(input)}`
}

const TTL = 600

test('when a token is signed with the real secret but breaks a JWT rule, then it is refused with 401', async (t) => {
  const { client } = await testApp(t, 'sqlite', { accessTokenTtlSeconds: TTL })
  const session = await client.signUp()
  const [header, payload] = session.access.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()))
  const now = Math.floor(Date.now() / 1000)
  const signature = session.access.split('.')[2] as string
  // 32 bytes take 43 base64url characters; the last one's two low bits are padding, so flipping one of
  // them spells the same bytes differently: a lenient decoder would accept it, we do not.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const sameBytes = alphabet[alphabet.indexOf(signature.at(-1) as string) ^ 1] as string
  const variants: Record<string, string> = {
    'a critical header extension': jwt({ ...header, crit: ['exp'], exp: true }, payload),
    'an unencoded payload (b64: false)': jwt({ ...header, b64: false, crit: ['b64'] }, payload),
    'b64: false without crit': jwt({ ...header, b64: false }, payload),
    'alg in another case': jwt({ ...header, alg: 'hs256' }, payload),
    'a header that is an array': jwt([header], payload),
    'a payload that is an array': jwt(header, [payload]),
    'a payload that is not JSON': `${b64(header)}.${b64('{not json')}.${sign(`${b64(header)}.${b64('{not json')}`)}`,
    'exp as a string': jwt(header, { ...payload, exp: String(now + 600) }),
    'exp equal to now': jwt(header, { ...payload, exp: now }),
    'nbf as a string': jwt(header, { ...payload, nbf: String(now - 10) }),
    'iat as a string': jwt(header, { ...payload, iat: String(now) }),
    'sub as a number': jwt(header, { ...payload, sub: Number(payload.sub) }),
    'sid missing': jwt(header, { ...payload, sid: undefined }),
    'no typ in the header': jwt({ alg: header.alg, kid: header.kid }, payload),
    'typ JWT in the header (tokens before issue 16)': jwt({ ...header, typ: 'JWT' }, payload),
    'typ at+jwt in another case': jwt({ ...header, typ: 'AT+JWT' }, payload),
    'application/at+jwt as typ': jwt({ ...header, typ: 'application/at+jwt' }, payload),
    'no kid': jwt({ alg: header.alg, typ: header.typ }, payload),
    'an unknown kid': jwt({ ...header, kid: 'hs-AAAAAAAAAAAAAAAAAAAAAA' }, payload),
    'a kid that is a number': jwt({ ...header, kid: 7 }, payload),
    'a jku header': jwt({ ...header, jku: 'https://attacker.example/jwks.json' }, payload),
    'a jwk header': jwt({ ...header, jwk: { kty: 'oct', k: b64(TEST_JWT_SECRET) } }, payload),
    'an x5u header': jwt({ ...header, x5u: 'https://attacker.example/cert.pem' }, payload),
    'iss missing': jwt(header, { ...payload, iss: undefined }),
    'another iss': jwt(header, { ...payload, iss: 'https://attacker.example' }),
    'an aud where none is configured': jwt(header, { ...payload, aud: 'https://api.example.com' }),
    'iat missing': jwt(header, { ...payload, iat: undefined }),
    'iat an hour ahead': jwt(header, { ...payload, iat: now + 3600, exp: now + 3600 + TTL }),
    'iat 31 s ahead (beyond the clock skew)': jwt(header, { ...payload, iat: now + 31 }),
    'exp a year away': jwt(header, { ...payload, exp: now + 365 * 86400 }),
    'exp the TTL plus 31 s away': jwt(header, { ...payload, iat: now, exp: now + TTL + 31 }),
    'a fourth segment': `${session.access}.${signature}`,
    'the signature with one character more': `${session.access}A`,
    'the same signature spelled non-canonically': `${session.access.slice(0, -1)}${sameBytes}`,
  }
  assert.equal(header.typ, 'at+jwt')
  assert.equal(header.alg, 'HS256')
  assert.match(header.kid, /^hs-[A-Za-z0-9_-]{22}$/)
  assert.equal(payload.iss, 'http://127.0.0.1:8000', 'iss: the configured origin when PUBLIC_URL is unset')
  for (const [name, token] of Object.entries(variants)) {
    const response = await client.get('/api/users/me', token)
    assert.equal(response.statusCode, 401, name)
    problemOf(response, 401)
  }
  // Allowed: a past nbf, an issuer clock up to 30 s ahead of ours, and the genuine token itself.
  assert.equal((await client.get('/api/users/me', jwt(header, { ...payload, nbf: now - 10 }))).statusCode, 200)
  assert.equal((await client.get('/api/users/me', jwt(header, { ...payload, iat: now + 20, exp: now + 20 + TTL }))).statusCode, 200)
  assert.equal((await client.get('/api/users/me', jwt(header, { ...payload, iat: now - 100, exp: now + TTL + 20 }))).statusCode, 200)
  assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
})

test('when a token already accepted expires, then it is refused', async (t) => {
  // exp counts whole seconds from the issue time: a 3-second token is still valid at the first request,
  // and 4.1 seconds after that request it has expired whatever the sub-second phase was.
  const { client } = await testApp(t, 'sqlite', { accessTokenTtlSeconds: 3 })
  const session = await client.signUp()
  assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 4100))
  problemOf(await client.get('/api/users/me', session.access), 401)
})

test('when the session of a token already accepted ends, then the token is refused', async (t) => {
  const { client } = await testApp(t)
  const session = await client.signUp()
  assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
  assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: session.refresh })).statusCode, 204)
  problemOf(await client.get('/api/users/me', session.access), 401)
})

test('when the Authorization scheme is written in any case, then the token is accepted (RFC 7235)', async (t) => {
  const { client } = await testApp(t)
  const session = await client.signUp()
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
    const response = await client.request({ method: 'GET', url: '/api/users/me', headers: { authorization: `${scheme} ${session.access}` } })
    assert.equal(response.statusCode, 200, scheme)
  }
  assert.equal((await client.request({ method: 'GET', url: '/api/users/me', headers: { authorization: `Bearer  ${session.access}` } })).statusCode, 200)
  for (const header of [`Basic ${session.access}`, `Bearer${session.access}`, `Bearers ${session.access}`, session.access, `Bearer ${session.access} x`]) {
    problemOf(await client.request({ method: 'GET', url: '/api/users/me', headers: { authorization: header } }), 401)
  }
})
