import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createDb } from '../src/db/database.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type TestClient, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { awayFromStepEdge, claimsOf, codeAt, enrolTotp, sideDb } from './helpers/mfa.js'
import { suite } from './helpers/suite.js'
import { type CreationOptions, type Lies, type RequestOptions, SoftAuthenticator } from './helpers/webauthn.js'

const ORIGIN = 'https://portrait.example'
const PUBLIC = { publicUrl: ORIGIN }

/** Registration options, then the authenticator's answer, then POST /api/users/me/passkeys. */
async function register(client: TestClient, access: string, authenticator: SoftAuthenticator, name = 'Laptop', lies: Lies = {}) {
  const options = await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, access)
  assert.equal(options.statusCode, 200, options.body)
  const response = authenticator.create(options.json() as CreationOptions, lies)
  return client.send('POST', '/api/users/me/passkeys', { name, response }, access)
}

async function signInOptions(client: TestClient) {
  const reply = await client.send('POST', '/api/auth/passkey/options', undefined)
  assert.equal(reply.statusCode, 200, reply.body)
  return reply.json() as { challenge_id: string; options: RequestOptions & { userVerification: string; allowCredentials?: unknown[] } }
}

async function passkeySignIn(client: TestClient, authenticator: SoftAuthenticator, lies: Lies = {}) {
  const { challenge_id, options } = await signInOptions(client)
  return client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: authenticator.get(options, lies) })
}

for (const dialect of DIALECTS) {
  suite(`passkeys (${dialect.name})`, dialect.skip, () => {
    test('when a user registers a passkey, then it signs them in without a password, and once deleted it no longer does', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const alice = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)

      const options = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, alice.access)).json()
      assert.equal(options.rp.id, 'portrait.example')
      assert.deepEqual(options.authenticatorSelection, { residentKey: 'required', requireResidentKey: true, userVerification: 'required' })
      const created = await client.send('POST', '/api/users/me/passkeys', { name: '  Laptop ', response: authenticator.create(options) }, alice.access)
      assert.equal(created.statusCode, 201, created.body)
      const passkey = created.json()
      assert.deepEqual(Object.keys(passkey).sort(), ['backed_up', 'created_at', 'id', 'last_used_at', 'name', 'transports'])
      assert.equal(passkey.name, 'Laptop')
      assert.equal(passkey.last_used_at, null)
      assert.deepEqual(passkey.transports, ['internal'])

      const { options: request } = await signInOptions(client)
      assert.equal(request.userVerification, 'required')
      assert.deepEqual(request.allowCredentials ?? [], [], 'discoverable: no credential list')
      const signedIn = await passkeySignIn(client, authenticator)
      assert.equal(signedIn.statusCode, 200, signedIn.body)
      const session = signedIn.json()
      assert.deepEqual(Object.keys(session).sort(), ['access', 'device_token', 'refresh', 'user'])
      assert.equal(session.user.id, alice.user.id)
      assert.ok(session.user.last_login > (alice.user.last_login as string), 'last_login moves')
      assert.equal((await client.get('/api/users/me', session.access)).json().id, alice.user.id)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })).statusCode, 200)

      const listed = (await client.get('/api/users/me/passkeys', alice.access)).json().results
      assert.equal(listed.length, 1)
      assert.ok(listed[0].last_used_at, 'the sign-in is recorded')

      const renamed = await client.send('PATCH', `/api/users/me/passkeys/${passkey.id}`, { name: 'Work laptop' }, alice.access)
      assert.equal(renamed.json().name, 'Work laptop')
      problemOf(await client.send('PATCH', `/api/users/me/passkeys/${passkey.id}`, { name: '   ' }, alice.access), 400)
      // Control characters, a lone surrogate, a line separator: 400 on both dialects (PostgreSQL refused the NUL with a 500).
      for (const name of ['evil\u0000\r\nBcc: x@evil.example\u001b[31m', 'half \ud800', 'two\u2028lines']) {
        const refused = problemOf(await client.send('PATCH', `/api/users/me/passkeys/${passkey.id}`, { name }, alice.access), 400)
        assert.ok(refused.errors?.name, JSON.stringify(name))
      }
      assert.equal((await client.get('/api/users/me/passkeys', alice.access)).json().results[0].name, 'Work laptop')

      assert.equal((await client.send('DELETE', `/api/users/me/passkeys/${passkey.id}`, undefined, alice.access)).statusCode, 204)
      assert.deepEqual((await client.get('/api/users/me/passkeys', alice.access)).json().results, [])
      problemOf(await client.send('DELETE', `/api/users/me/passkeys/${passkey.id}`, undefined, alice.access), 404)
      const after = problemOf(await passkeySignIn(client, authenticator), 401)
      assert.equal(after.type, '/problems/invalid_credentials')
    })

    test('when a challenge is used a second time, then it is refused, for sign-in and registration alike', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const bob = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      const options = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, bob.access)).json()
      const response = authenticator.create(options)
      assert.equal((await client.send('POST', '/api/users/me/passkeys', { name: 'Key', response }, bob.access)).statusCode, 201)
      const again = problemOf(await client.send('POST', '/api/users/me/passkeys', { name: 'Key again', response }, bob.access), 400)
      assert.match(again.errors?.response?.join(' ') ?? '', /already used/)

      const { challenge_id, options: request } = await signInOptions(client)
      const assertion = authenticator.get(request)
      assert.equal((await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: assertion })).statusCode, 200)
      problemOf(await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: assertion }), 401)
      // The same signed assertion under a fresh challenge id: its signature covers the old challenge.
      const fresh = await signInOptions(client)
      problemOf(await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id: fresh.challenge_id, response: assertion }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id: 'never-issued', response: authenticator.get(request) }), 401)
    })

    test('when the signature counter does not increase, then the assertion is refused and the next real one works', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const carol = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, carol.access, authenticator)).statusCode, 201)
      assert.equal((await passkeySignIn(client, authenticator)).statusCode, 200) // counter 1
      assert.equal((await passkeySignIn(client, authenticator)).statusCode, 200) // counter 2
      problemOf(await passkeySignIn(client, authenticator, { counter: 2 }), 401)
      problemOf(await passkeySignIn(client, authenticator, { counter: 1 }), 401)
      problemOf(await passkeySignIn(client, authenticator, { counter: 0 }), 401)
      assert.equal((await passkeySignIn(client, authenticator)).statusCode, 200) // counter 3
    })

    test('when two assertions with the same counter race, then only one signs in', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const racer = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, racer.access, authenticator)).statusCode, 201)
      const [first, second] = await Promise.all([signInOptions(client), signInOptions(client)])
      const replies = await Promise.all(
        [first, second].map(({ challenge_id, options }) =>
          client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: authenticator.get(options, { counter: 5 }) }),
        ),
      )
      assert.deepEqual(replies.map((reply) => reply.statusCode).sort(), [200, 401])
    })

    test('when an authenticator keeps no counter, then every sign-in with it works', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const dan = await client.signUp()
      const synced = new SoftAuthenticator(ORIGIN, 0)
      assert.equal((await register(client, dan.access, synced)).statusCode, 201)
      for (let i = 0; i < 3; i++) assert.equal((await passkeySignIn(client, synced)).statusCode, 200)
    })

    test('when a response comes from another origin or RP ID, or without user verification, then it is refused', async (t) => {
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const erin = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      for (const lies of [{ origin: 'https://portrait.example.evil' }, { rpId: 'evil.example' }, { userVerified: false }, { type: 'webauthn.get' }]) {
        const refused = problemOf(await register(client, erin.access, authenticator, 'Phished', lies), 400)
        assert.ok(refused.errors?.response, JSON.stringify(lies))
      }
      assert.deepEqual((await client.get('/api/users/me/passkeys', erin.access)).json().results, [])
      assert.equal((await register(client, erin.access, authenticator)).statusCode, 201)
      const last = authenticator.credentials.length - 1
      authenticator.credentials.splice(0, last)
      for (const lies of [{ origin: 'http://portrait.example' }, { rpId: 'elsewhere.example' }, { userVerified: false }, { type: 'webauthn.create' }]) {
        problemOf(await passkeySignIn(client, authenticator, lies), 401)
      }
      assert.equal((await passkeySignIn(client, authenticator)).statusCode, 200)
    })

    test("when someone else's passkey is named, or the account is inactive, then nothing is found or signed in", async (t) => {
      const { client, config } = await testApp(t, dialect.name, PUBLIC)
      const owner = await client.signUp()
      const other = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      const { id } = (await register(client, owner.access, authenticator)).json()
      problemOf(await client.send('PATCH', `/api/users/me/passkeys/${id}`, { name: 'Mine now' }, other.access), 404)
      problemOf(await client.send('DELETE', `/api/users/me/passkeys/${id}`, undefined, other.access), 404)
      problemOf(await client.send('DELETE', '/api/users/me/passkeys/abc', undefined, other.access), 404)
      assert.deepEqual((await client.get('/api/users/me/passkeys', other.access)).json().results, [])

      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      await db.kysely.updateTable('users').set({ is_active: 0 }).where('id', '=', owner.user.id).execute()
      problemOf(await passkeySignIn(client, authenticator), 401)
    })

    test('when an account with a second factor has a passkey, then the passkey completes a password sign-in, once', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name, PUBLIC)
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, me.access, authenticator)).statusCode, 201)
      const passwordOnly = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      assert.ok(passwordOnly.json().access, 'a passkey alone does not make the password sign-in two-step')
      await enrolTotp(client, me)

      const answer = (await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })).json()
      assert.deepEqual(answer.methods, ['totp', 'recovery_code', 'passkey'])
      const options = await client.send('POST', '/api/auth/sign-in/mfa/passkey-options', { challenge: answer.challenge })
      assert.equal(options.statusCode, 200, options.body)
      assert.equal(options.json().allowCredentials.length, 1)
      const wrong = authenticator.get(options.json(), { origin: 'https://evil.example' })
      problemOf(await client.send('POST', '/api/auth/sign-in/mfa', { challenge: answer.challenge, passkey: wrong }), 401)
      const again = (await client.send('POST', '/api/auth/sign-in/mfa/passkey-options', { challenge: answer.challenge })).json()
      const passkey = authenticator.get(again)
      const done = await client.send('POST', '/api/auth/sign-in/mfa', { challenge: answer.challenge, passkey })
      assert.equal(done.statusCode, 200, done.body)
      assert.deepEqual(claimsOf(done.json().access).amr, ['pwd', 'hwk'])
      problemOf(await client.send('POST', '/api/auth/sign-in/mfa', { challenge: answer.challenge, passkey }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in/mfa/passkey-options', { challenge: 'x'.repeat(43) }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in/mfa', { challenge: answer.challenge, code: '123456', passkey }), 400)
    })

    test('when a session signs in with a passkey or verifies one, then it passes step-up; an old session without does not', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name, PUBLIC)
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, me.access, authenticator)).statusCode, 201)
      await enrolTotp(client, me)

      const passwordless = (await passkeySignIn(client, authenticator)).json()
      assert.deepEqual(claimsOf(passwordless.access).amr, ['hwk', 'user'])
      await sideDb(t, config).updateTable('sessions').set({ second_factor_at: new Date(Date.now() - 3600_000).toISOString() }).where('user_id', '=', me.user.id).execute()
      const change = (access: string, password: string, current = GOOD_PASSWORD) =>
        client.send('POST', `/api/users/${me.user.id}/password`, { current_password: current, new_password: password }, access)
      assert.equal(problemOf(await change(passwordless.access, 'another-Horse-battery-7'), 403).type, '/problems/step_up_required')

      const options = (await client.send('POST', '/api/users/me/passkeys/step-up-options', undefined, passwordless.access)).json()
      problemOf(await client.send('POST', '/api/users/me/passkeys/verify', { response: authenticator.get(options, { userVerified: false }) }, passwordless.access), 400)
      const fresh = (await client.send('POST', '/api/users/me/passkeys/step-up-options', undefined, passwordless.access)).json()
      assert.equal((await client.send('POST', '/api/users/me/passkeys/verify', { response: authenticator.get(fresh) }, passwordless.access)).statusCode, 204)
      assert.equal((await change(passwordless.access, 'another-Horse-battery-7')).statusCode, 204)

      // A fresh passwordless sign-in counts as the second factor by itself.
      const next = (await passkeySignIn(client, authenticator)).json()
      assert.equal((await change(next.access, 'third-Horse-battery-5', 'another-Horse-battery-7')).statusCode, 204, 'a passkey sign-in is a recent second factor')
    })

    test('when an account with a second factor adds or deletes a passkey, then only a session that proved one recently may', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name, PUBLIC)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      const own = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, me.access, own)).statusCode, 201, 'confirming the app just now counts as a recent second factor')
      const [passkey] = (await client.get('/api/users/me/passkeys', me.access)).json().results
      const intruder = new SoftAuthenticator(ORIGIN)
      const fetchedWhileFresh = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, me.access)).json() as CreationOptions

      // A session whose second factor is an hour old: what a stolen access token is.
      await sideDb(t, config).updateTable('sessions').set({ second_factor_at: new Date(Date.now() - 3600_000).toISOString() }).where('user_id', '=', me.user.id).execute()
      const refused = problemOf(await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, me.access), 403)
      assert.equal(refused.type, '/problems/step_up_required')
      assert.match(refused.detail, /passkeys\/verify/)
      const late = await client.send('POST', '/api/users/me/passkeys', { name: 'Intruder', response: intruder.create(fetchedWhileFresh) }, me.access)
      assert.equal(problemOf(late, 403).type, '/problems/step_up_required', 'options fetched while fresh do not carry over')
      assert.equal(problemOf(await client.send('DELETE', `/api/users/me/passkeys/${passkey.id}`, undefined, me.access), 403).type, '/problems/step_up_required')
      assert.equal((await client.get('/api/users/me/passkeys', me.access)).json().results.length, 1, 'nothing added, nothing deleted')
      problemOf(await passkeySignIn(client, intruder), 401)

      const proved = await client.send('POST', '/api/users/me/mfa/verify', { code: codeAt(secret) }, me.access)
      assert.equal(proved.statusCode, 204, proved.body)
      assert.equal((await client.send('DELETE', `/api/users/me/passkeys/${passkey.id}`, undefined, me.access)).statusCode, 204)
      assert.equal((await register(client, me.access, new SoftAuthenticator(ORIGIN), 'Phone')).statusCode, 201)
    })

    test('when passkey sign-ins keep failing from one address, then that address gets 429', async (t) => {
      const { client } = await testApp(t, dialect.name, { ...PUBLIC, signInLimits: { maxFailuresPerAccount: 50, maxFailuresPerAddress: 3, windowSeconds: 900 } })
      const frank = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      assert.equal((await register(client, frank.access, authenticator)).statusCode, 201)
      assert.equal((await passkeySignIn(client, authenticator)).statusCode, 200, 'a success gives its attempt back')
      for (let i = 0; i < 3; i++) problemOf(await passkeySignIn(client, authenticator, { origin: 'https://evil.example' }), 401)
      const limited = await passkeySignIn(client, authenticator)
      problemOf(limited, 429)
      assert.ok(limited.headers['retry-after'])
    })
  })
}

test('when PUBLIC_URL is unset, then passkeys work only for a page on http://localhost and say so elsewhere', async (t) => {
  const { client } = await testApp(t)
  const on = (host: string) => ({ host })
  const ip = await client.request({ method: 'GET', url: '/api/auth/passkey', headers: on('127.0.0.1:8000') })
  assert.equal(ip.json().available, false)
  assert.match(ip.json().reason, /PUBLIC_URL/)
  const refused = problemOf(await client.request({ method: 'POST', url: '/api/auth/passkey/options', headers: on('127.0.0.1:8000') }), 404)
  assert.equal(refused.type, '/problems/passkeys_unavailable')
  const local = await client.request({ method: 'GET', url: '/api/auth/passkey', headers: on('localhost:8000') })
  assert.deepEqual(local.json(), { available: true, rp_id: 'localhost', reason: null })
  const options = await client.request({ method: 'POST', url: '/api/auth/passkey/options', headers: on('localhost:8000') })
  assert.equal(options.json().options.rpId, 'localhost')

  // Registered on http://localhost:8000, the passkey signs in there and nowhere else.
  const grace = await client.signUp()
  const authenticator = new SoftAuthenticator('http://localhost:8000')
  const regOptions = await client.request({ method: 'POST', url: '/api/users/me/passkeys/registration-options', headers: { ...on('localhost:8000'), authorization: `Bearer ${grace.access}` } })
  const created = await client.request({
    method: 'POST',
    url: '/api/users/me/passkeys',
    headers: { ...on('localhost:8000'), authorization: `Bearer ${grace.access}` },
    payload: { name: 'Dev', response: authenticator.create(regOptions.json()) },
  })
  assert.equal(created.statusCode, 201, created.body)
  const signIn = async (host: string) => {
    const { challenge_id, options: request } = (await client.request({ method: 'POST', url: '/api/auth/passkey/options', headers: on('localhost:8000') })).json()
    return client.request({ method: 'POST', url: '/api/auth/sign-in/passkey', headers: on(host), payload: { challenge_id, response: authenticator.get(request) } })
  }
  problemOf(await signIn('localhost:9000'), 401)
  assert.equal((await signIn('localhost:8000')).statusCode, 200)
})

test('when PUBLIC_URL is an IP address or plain http elsewhere than localhost, then passkeys are unavailable', async (t) => {
  for (const publicUrl of ['https://192.0.2.7', 'http://portrait.example', 'https://[2001:db8::1]']) {
    const { client } = await testApp(t, 'sqlite', { publicUrl })
    const answer = (await client.get('/api/auth/passkey')).json()
    assert.equal(answer.available, false, publicUrl)
  }
  const { client } = await testApp(t, 'sqlite', { publicUrl: 'http://localhost:8080' })
  assert.equal((await client.get('/api/auth/passkey')).json().rp_id, 'localhost')
})
