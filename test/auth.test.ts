import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SignJWT } from 'jose'
import { DIALECTS, GOOD_PASSWORD, problemOf, TEST_JWT_SECRET, testApp } from './helpers/app.js'
import { sideDb } from './helpers/mfa.js'
import { suite } from './helpers/suite.js'

const key = new TextEncoder().encode(TEST_JWT_SECRET)

function tokenParts(token: string) {
  const [header, payload] = token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()))
  return { header, payload }
}

for (const dialect of DIALECTS) {
  suite(`auth (${dialect.name})`, dialect.skip, () => {
    test('when a user signs up, then they get tokens and a profile without the password hash', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.send('POST', '/api/auth/sign-up', {
        username: 'Zoë.Smith',
        email: 'Zoe@Example.com',
        password: GOOD_PASSWORD,
        first_name: '  Zoë  ',
      })
      assert.equal(response.statusCode, 201)
      const body = response.json()
      assert.deepEqual(Object.keys(body).sort(), ['access', 'device_token', 'refresh', 'user'])
      assert.equal(body.user.username, 'Zoë.Smith')
      assert.equal(body.user.email, 'Zoe@Example.com')
      assert.equal(body.user.first_name, 'Zoë')
      assert.equal(body.user.is_staff, false)
      assert.ok(body.user.last_login)
      assert.doesNotMatch(response.body, /argon2|password/)
      const { header, payload } = tokenParts(body.access)
      assert.equal(header.alg, 'HS256')
      assert.equal(payload.typ, 'access')
      assert.equal(payload.sub, String(body.user.id))
      assert.ok(payload.sid && payload.jti && payload.iat && payload.exp)
    })

    test('when sign-up fields are bad, then every failing field is listed and nothing is created', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.send('POST', '/api/auth/sign-up', {
        username: 'has space',
        email: 'not-an-email',
        password: '12345678',
        number_phone: '+',
        is_staff: true,
      })
      const problem = problemOf(response, 400)
      assert.deepEqual(Object.keys(problem.errors ?? {}).sort(), ['email', 'is_staff', 'number_phone', 'password', 'username'])
      const signIn = await client.send('POST', '/api/auth/sign-in', { username: 'has space', password: '12345678' })
      problemOf(signIn, 401)
    })

    test('when the password breaks a rule, then sign-up says which', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const cases: [string, RegExp][] = [
        ['short1!', /too short/],
        ['9876543210123', /entirely numeric/],
        ['password123', /too common/],
        ['alicesmith99', /similar to the username/],
        ['x'.repeat(129), /too long/],
      ]
      for (const [password, message] of cases) {
        const response = await client.send('POST', '/api/auth/sign-up', { username: 'alicesmith', email: 'a@example.com', password })
        assert.match(problemOf(response, 400).errors?.password?.join(' ') ?? '', message, password)
      }
    })

    test('when a username or email is taken in another case, then sign-up is refused on that field', async (t) => {
      const { client } = await testApp(t, dialect.name)
      await client.signUp({ username: 'Taken', email: 'taken@example.com' })
      const response = await client.send('POST', '/api/auth/sign-up', { username: 'tAKEN', email: 'TAKEN@example.COM', password: GOOD_PASSWORD })
      assert.deepEqual(Object.keys(problemOf(response, 400).errors ?? {}).sort(), ['email', 'username'])
    })

    test('when a name differs only in Unicode composition, then it is the same name', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const composed = 'Zo\u00eb'
      const decomposed = 'Zoe\u0308'
      const first = await client.signUp({ username: composed, email: 'zoe@example.com' })
      assert.equal(first.user.username, composed)
      const clash = await client.send('POST', '/api/auth/sign-up', { username: decomposed, email: 'other@example.com', password: GOOD_PASSWORD })
      assert.deepEqual(Object.keys(problemOf(clash, 400).errors ?? {}), ['username'])
      const signIn = await client.send('POST', '/api/auth/sign-in', { username: decomposed.toUpperCase(), password: GOOD_PASSWORD })
      assert.equal(signIn.statusCode, 200)
      assert.equal(signIn.json().user.id, first.user.id)
    })

    test('when many sign-ups race for one username, then exactly one wins and the rest get 400', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const responses = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          client.send('POST', '/api/auth/sign-up', { username: 'racer', email: `racer${i}@example.com`, password: GOOD_PASSWORD }),
        ),
      )
      assert.deepEqual(responses.map((r) => r.statusCode).sort(), [201, 400, 400, 400, 400, 400, 400, 400])
    })

    test('when a user signs in by email or username, then last_login moves and a new session starts', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const session = await client.signUp({ username: 'bob', email: 'Bob@example.com' })
      for (const login of [{ email: 'bob@EXAMPLE.com' }, { username: 'BOB' }]) {
        const response = await client.send('POST', '/api/auth/sign-in', { ...login, password: GOOD_PASSWORD })
        assert.equal(response.statusCode, 200)
        const body = response.json()
        assert.equal(body.user.id, session.user.id)
        assert.ok(body.user.last_login >= (session.user.last_login as string))
        assert.notEqual(tokenParts(body.access).payload.sid, tokenParts(session.access).payload.sid)
      }
    })

    test('when the user is unknown or the password wrong, then the 401 is the same', async (t) => {
      const { client } = await testApp(t, dialect.name)
      await client.signUp({ username: 'carol' })
      const wrong = problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'carol', password: 'wrong-password-1' }), 401)
      const unknown = problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'nobody', password: 'wrong-password-1' }), 401)
      assert.deepEqual({ ...wrong, request_id: '' }, { ...unknown, request_id: '' })
    })

    test('when sign-in lacks a field or sends both identifiers, then 400', async (t) => {
      const { client } = await testApp(t, dialect.name)
      for (const body of [{ username: 'x' }, { password: 'x' }, { username: 'x', email: 'x@example.com', password: 'x' }, { username: 1, password: 'x' }]) {
        problemOf(await client.send('POST', '/api/auth/sign-in', body), 400)
      }
    })

    test('when an account collects too many failures, then sign-in answers 429 with Retry-After, even with the right password', async (t) => {
      const { client } = await testApp(t, dialect.name, {
        signInLimits: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 100, windowSeconds: 60 },
      })
      await client.signUp({ username: 'dave' })
      for (let i = 0; i < 3; i++) problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'dave', password: 'nope-nope-1' }), 401)
      const blocked = await client.send('POST', '/api/auth/sign-in', { username: 'DAVE', password: GOOD_PASSWORD })
      problemOf(blocked, 429)
      assert.ok(Number(blocked.headers['retry-after']) > 0)
      const other = await client.signUp()
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: other.user.username, password: GOOD_PASSWORD })).statusCode, 200)
    })

    test('when one address fails across many accounts, then it is limited too', async (t) => {
      const { client } = await testApp(t, dialect.name, {
        signInLimits: { maxFailuresPerAccount: 100, maxFailuresPerAddress: 4, windowSeconds: 60 },
      })
      for (let i = 0; i < 4; i++) problemOf(await client.send('POST', '/api/auth/sign-in', { username: `ghost${i}`, password: 'nope-nope-1' }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'ghost9', password: 'nope-nope-1' }), 429)
    })

    test('when a refresh token is used again after the grace, then it rotates and the old one ends the whole session', async (t) => {
      // Grace 0: every repeat is past it.
      const { client } = await testApp(t, dialect.name, { refreshReuseGraceSeconds: 0 })
      const session = await client.signUp()
      const first = await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })
      assert.equal(first.statusCode, 200)
      const rotated = first.json()
      assert.notEqual(rotated.refresh, session.refresh)
      assert.equal((await client.get('/api/users/me', rotated.access)).statusCode, 200)
      // Reuse of the old token: theft assumed, the session ends for everyone holding it.
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: session.refresh }), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: rotated.refresh }), 401)
      problemOf(await client.get('/api/users/me', rotated.access), 401)
    })

    test('when parallel refreshes present one token within the grace, then all succeed with the same working successor', async (t) => {
      const { client } = await testApp(t, dialect.name, { refreshReuseGraceSeconds: 60 })
      const session = await client.signUp()
      const responses = await Promise.all(Array.from({ length: 6 }, () => client.send('POST', '/api/auth/refresh', { refresh: session.refresh })))
      assert.deepEqual(
        responses.map((r) => r.statusCode),
        [200, 200, 200, 200, 200, 200],
        responses.map((r) => r.body).join('\n'),
      )
      const successors = new Set(responses.map((r) => r.json().refresh))
      assert.equal(successors.size, 1, 'one successor for every repeat')
      const [successor] = successors as Set<string>
      assert.notEqual(successor, session.refresh)
      for (const response of responses) assert.equal((await client.get('/api/users/me', response.json().access)).statusCode, 200)
      // A repeat after the parallel burst, still within the grace, gets it once more; the successor rotates on.
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })).json().refresh, successor)
      const next = await client.send('POST', '/api/auth/refresh', { refresh: successor })
      assert.equal(next.statusCode, 200)
      assert.notEqual(next.json().refresh, successor)
      // Two generations back is no longer the previous secret: a plain 401, and the session goes on.
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: session.refresh }), 401)
      assert.equal((await client.get('/api/users/me', next.json().access)).statusCode, 200)
    })

    test('when parallel refreshes present one token and the grace is 0, then at most one succeeds and the session ends', async (t) => {
      const { client } = await testApp(t, dialect.name, { refreshReuseGraceSeconds: 0 })
      const session = await client.signUp()
      const responses = await Promise.all(Array.from({ length: 6 }, () => client.send('POST', '/api/auth/refresh', { refresh: session.refresh })))
      assert.ok(responses.filter((r) => r.statusCode === 200).length <= 1)
      for (const response of responses.filter((r) => r.statusCode !== 200)) problemOf(response, 401)
      problemOf(await client.get('/api/users/me', session.access), 401)
    })

    test('when a refresh token names a real session with a secret never issued for it, then 401 and the session goes on', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const session = await client.signUp()
      const sid = tokenParts(session.access).payload.sid as string
      for (const secret of ['b'.repeat(43), session.refresh.slice(23).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))]) {
        problemOf(await client.send('POST', '/api/auth/refresh', { refresh: `${sid}.${secret}` }), 401)
      }
      assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
      const refreshed = await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })
      assert.equal(refreshed.statusCode, 200, refreshed.body)
    })

    test('when a session nears SESSION_MAX_AGE, then a refresh renews it only up to that age, and past it the refresh token is refused', async (t) => {
      const day = 86_400
      const { client, config } = await testApp(t, dialect.name, { refreshTokenTtlSeconds: 7 * day, sessionMaxAgeSeconds: 30 * day })
      const session = await client.signUp()
      const db = sideDb(t, config)
      const sid = tokenParts(session.access).payload.sid as string
      const signedIn = Date.now() - 28 * day * 1000
      // Signed in 28 days ago and refreshed ever since: two days of its thirty are left.
      await db.updateTable('sessions').set({ created_at: new Date(signedIn).toISOString() }).where('id', '=', sid).execute()
      const refreshed = await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })
      assert.equal(refreshed.statusCode, 200, refreshed.body)
      const row = await db.selectFrom('sessions').select('expires_at').where('id', '=', sid).executeTakeFirstOrThrow()
      assert.equal(new Date(row.expires_at).getTime(), signedIn + 30 * day * 1000, 'renewed to the end of its thirty days, not for seven more')

      await db.updateTable('sessions').set({ created_at: new Date(Date.now() - 31 * day * 1000).toISOString() }).where('id', '=', sid).execute()
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: refreshed.json().refresh }), 401)
    })

    test('when a client signs out with the refresh token another tab just rotated, then the session ends', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const session = await client.signUp()
      const rotated = (await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })).json()
      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: session.refresh })).statusCode, 204)
      problemOf(await client.get('/api/users/me', rotated.access), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: rotated.refresh }), 401)
    })

    test('when a refresh token is garbage or missing, then 401', async (t) => {
      const { client } = await testApp(t, dialect.name)
      for (const body of [{ refresh: 'nope' }, { refresh: `${'a'.repeat(22)}.${'b'.repeat(43)}` }, {}]) {
        problemOf(await client.send('POST', '/api/auth/refresh', body), 401)
      }
    })

    test('when a user signs out one session, then its access token stops working at once and others keep working', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const one = await client.signUp({ username: 'erin' })
      const two = (await client.send('POST', '/api/auth/sign-in', { username: 'erin', password: GOOD_PASSWORD })).json()
      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: one.refresh })).statusCode, 204)
      problemOf(await client.get('/api/users/me', one.access), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: one.refresh }), 401)
      assert.equal((await client.get('/api/users/me', two.access)).statusCode, 200)
      // Idempotent: the same or an unknown token again is still 204.
      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: one.refresh })).statusCode, 204)
      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: 'unknown' })).statusCode, 204)
    })

    test('when a user signs out everywhere, then every session ends', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const one = await client.signUp({ username: 'frank' })
      const two = (await client.send('POST', '/api/auth/sign-in', { username: 'frank', password: GOOD_PASSWORD })).json()
      problemOf(await client.send('POST', '/api/auth/sign-out', { all: true }), 401)
      assert.equal((await client.send('POST', '/api/auth/sign-out', { all: true }, one.access)).statusCode, 204)
      for (const session of [one, two]) {
        problemOf(await client.get('/api/users/me', session.access), 401)
        problemOf(await client.send('POST', '/api/auth/refresh', { refresh: session.refresh }), 401)
      }
    })

    test('when an access token is tampered with, then every variant is refused with 401', async (t) => {
      const { client } = await testApp(t, dialect.name, { accessTokenTtlSeconds: 60 })
      const session = await client.signUp()
      const { payload } = tokenParts(session.access)
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
      const [, , signature] = session.access.split('.')
      const now = Math.floor(Date.now() / 1000)
      const variants: Record<string, string> = {
        'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`,
        'alg HS512': await new SignJWT(payload).setProtectedHeader({ alg: 'HS512' }).sign(new TextEncoder().encode(`${TEST_JWT_SECRET}${TEST_JWT_SECRET}`)),
        'wrong key': await new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another-secret-that-is-long-enough-000000')),
        'changed sub': `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...payload, sub: '999' })}.${signature}`,
        expired: await new SignJWT({ ...payload, exp: now - 10 }).setProtectedHeader({ alg: 'HS256' }).sign(key),
        'refresh token as access': session.refresh,
        'wrong typ': await new SignJWT({ ...payload, typ: 'refresh' }).setProtectedHeader({ alg: 'HS256' }).sign(key),
        'unknown session': await new SignJWT({ ...payload, sid: 'x'.repeat(22) }).setProtectedHeader({ alg: 'HS256' }).sign(key),
        'other user in sub': await new SignJWT({ ...payload, sub: String(session.user.id + 1) }).setProtectedHeader({ alg: 'HS256' }).sign(key),
      }
      for (const [name, token] of Object.entries(variants)) {
        const response = await client.get('/api/users/me', token)
        assert.equal(response.statusCode, 401, name)
        problemOf(response, 401)
      }
      problemOf(await client.request({ method: 'GET', url: '/api/users/me', headers: { authorization: `Basic ${session.access}` } }), 401)
      // The genuine token still works, so the 401s above are about the tampering.
      assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
    })

    test('when the web page signs in, then the refresh token travels only in an HttpOnly SameSite=Strict cookie', async (t) => {
      const { client } = await testApp(t, dialect.name)
      await client.signUp({ username: 'gina' })
      const web = { 'x-portrait-web': '1' }
      const signIn = await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: GOOD_PASSWORD }, undefined, web)
      assert.equal(signIn.statusCode, 200)
      assert.equal(signIn.json().refresh, undefined)
      const cookie = String(signIn.headers['set-cookie'])
      assert.match(cookie, /portrait_refresh=/)
      assert.match(cookie, /HttpOnly/)
      assert.match(cookie, /SameSite=Strict/)
      const jar = cookie.split(';')[0] as string
      // Without the web header (a cross-site form could send the cookie, never the header) the cookie is ignored.
      problemOf(await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: jar } }), 401)
      const refreshed = await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: jar, ...web } })
      assert.equal(refreshed.statusCode, 200)
      assert.ok(refreshed.json().access)
      const next = String(refreshed.headers['set-cookie']).split(';')[0] as string
      const signOut = await client.request({ method: 'POST', url: '/api/auth/sign-out', headers: { cookie: next, ...web } })
      assert.equal(signOut.statusCode, 204)
      problemOf(await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: next, ...web } }), 401)
    })
  })
}
