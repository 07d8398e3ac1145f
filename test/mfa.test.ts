import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DIALECTS, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { awayFromStepEdge, claimsOf, codeAt, enrolTotp, sideDb } from './helpers/mfa.js'
import { suite } from './helpers/suite.js'

const ME = '/api/users/me'
const MFA = '/api/users/me/mfa'
const NEW_PASSWORD = 'another-Staple-kettle-42'

type Challenge = { mfa_required: true; challenge: string; methods: string[] }

async function challenged(client: TestClient, username: string): Promise<Challenge> {
  const response = await client.send('POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD })
  assert.equal(response.statusCode, 200, response.body)
  const body = response.json()
  assert.equal(body.mfa_required, true, response.body)
  return body
}

const complete = (client: TestClient, challenge: string, proof: Record<string, string>) =>
  client.send('POST', '/api/auth/sign-in/mfa', { challenge, ...proof })

for (const dialect of DIALECTS) {
  suite(`second factor (${dialect.name})`, dialect.skip, () => {
    test('when a user enrols, then the secret is pending until a first code confirms it, and ten recovery codes come once', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      assert.deepEqual((await client.get(MFA, me.access)).json(), { totp: false, recovery_codes_left: 0, methods: [] })
      const first = (await client.send('POST', `${MFA}/totp`, undefined, me.access)).json()
      assert.match(first.secret, /^[A-Z2-7]{32}$/)
      assert.match(first.otpauth_uri, new RegExp(`^otpauth://totp/Portrait:${me.user.username}\\?.*secret=${first.secret}`))
      assert.match(first.otpauth_uri, /algorithm=SHA1&digits=6&period=30/)
      assert.match(first.qr_svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
      // Still pending: enrolling again replaces it, and the first secret's codes no longer confirm anything.
      const second = (await client.send('POST', `${MFA}/totp`, undefined, me.access)).json()
      assert.notEqual(second.secret, first.secret)
      const stale = problemOf(await client.send('POST', `${MFA}/totp/confirm`, { code: codeAt(first.secret) }, me.access), 400)
      assert.ok(stale.errors?.code)
      assert.equal((await client.get(MFA, me.access)).json().totp, false)
      // The secret is kept encrypted.
      const row = await sideDb(t, config).selectFrom('mfa_totp').selectAll().where('user_id', '=', me.user.id).executeTakeFirstOrThrow()
      assert.ok(!row.secret.includes(second.secret) && row.secret.startsWith('v1.'))

      const confirmed = await client.send('POST', `${MFA}/totp/confirm`, { code: codeAt(second.secret) }, me.access)
      assert.equal(confirmed.statusCode, 200, confirmed.body)
      const codes: string[] = confirmed.json().recovery_codes
      assert.equal(codes.length, 10)
      assert.equal(new Set(codes).size, 10)
      for (const code of codes) assert.match(code, /^[2-9a-hjkmnp-z]{5}-[2-9a-hjkmnp-z]{5}$/)
      const stored = await sideDb(t, config).selectFrom('mfa_recovery_codes').select('code_hash').where('user_id', '=', me.user.id).execute()
      assert.equal(stored.length, 10)
      assert.ok(stored.every(({ code_hash }) => /^[0-9a-f]{64}$/.test(code_hash) && !codes.some((code) => code_hash.includes(code.replace('-', '')))))
      assert.deepEqual((await client.get(MFA, me.access)).json(), { totp: true, recovery_codes_left: 10, methods: ['totp', 'recovery_code'] })
      assert.equal(problemOf(await client.send('POST', `${MFA}/totp`, undefined, me.access), 409).type, '/problems/mfa_already_enabled')
      problemOf(await client.send('POST', `${MFA}/totp/confirm`, { code: codeAt(second.secret, 1) }, me.access), 409)
    })

    test('when an account with a second factor signs in, then a challenge comes instead of tokens, and a code completes it with amr pwd+otp', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      assert.deepEqual(claimsOf(me.access).amr, ['pwd'])
      const { secret } = await enrolTotp(client, me)
      const before = (await client.get(ME, me.access)).json().last_login
      const answer = await challenged(client, me.user.username)
      assert.deepEqual(Object.keys(answer).sort(), ['challenge', 'methods', 'mfa_required'])
      assert.deepEqual(answer.methods, ['totp', 'recovery_code'])
      assert.equal((await client.get(ME, me.access)).json().last_login, before, 'no sign-in yet')

      const done = await complete(client, answer.challenge, { code: codeAt(secret) })
      assert.equal(done.statusCode, 200, done.body)
      const session = done.json() as Session & { device_token: string }
      assert.deepEqual(Object.keys(session).sort(), ['access', 'device_token', 'refresh', 'user'])
      assert.deepEqual(claimsOf(session.access).amr, ['pwd', 'otp'])
      assert.notEqual((await client.get(ME, session.access)).json().last_login, before)
      // A refresh re-issues the session's amr.
      const refreshed = await client.send('POST', '/api/auth/refresh', { refresh: session.refresh })
      assert.equal(refreshed.statusCode, 200, refreshed.body)
      assert.deepEqual(claimsOf(refreshed.json().access).amr, ['pwd', 'otp'])
      // The challenge worked once; unknown ones never.
      const used = problemOf(await complete(client, answer.challenge, { code: codeAt(secret, 1) }), 401)
      assert.equal(used.type, '/problems/invalid_mfa_challenge')
      problemOf(await complete(client, 'A'.repeat(43), { code: codeAt(secret, 1) }), 401)
      problemOf(await complete(client, answer.challenge, {}), 400)
      problemOf(await complete(client, answer.challenge, { code: '123456', recovery_code: 'x' }), 400)
    })

    test('when a code was accepted once, then it is refused again (replay), as are codes two steps away; one step either side passes', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      // Confirmation used the step before now: that code is spent, and so is any earlier one.
      const first = await challenged(client, me.user.username)
      const replay = problemOf(await complete(client, first.challenge, { code: codeAt(secret, -1) }), 401)
      assert.equal(replay.type, '/problems/invalid_second_factor')
      problemOf(await complete(client, first.challenge, { code: codeAt(secret, 2) }), 401)
      problemOf(await complete(client, first.challenge, { code: codeAt(secret, -2) }), 401)
      problemOf(await complete(client, first.challenge, { code: 'abcdef' }), 401)
      // A wrong code leaves the challenge usable: the step after now is within the window.
      assert.equal((await complete(client, first.challenge, { code: codeAt(secret, 1) })).statusCode, 200)
      // Now the current step is older than the last one accepted: refused too.
      const second = await challenged(client, me.user.username)
      problemOf(await complete(client, second.challenge, { code: codeAt(secret, 0) }), 401)
      problemOf(await complete(client, second.challenge, { code: codeAt(secret, 1) }), 401)
    })

    test('when two requests race with one code, then exactly one signs in', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      const [a, b] = [await challenged(client, me.user.username), await challenged(client, me.user.username)]
      const code = codeAt(secret)
      const statuses = (await Promise.all([complete(client, a.challenge, { code }), complete(client, b.challenge, { code })])).map((r) => r.statusCode)
      assert.deepEqual(statuses.sort(), [200, 401])
    })

    test('when the password is right again and again, then the user keeps at most 5 live challenges, the newest', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      const answers = []
      for (let i = 0; i < 7; i++) answers.push(await challenged(client, me.user.username))
      const rows = await sideDb(t, config).selectFrom('mfa_challenges').select('id_hash').where('user_id', '=', me.user.id).execute()
      assert.equal(rows.length, 5)
      problemOf(await complete(client, (answers[0] as Challenge).challenge, { code: codeAt(secret) }), 401)
      assert.equal((await complete(client, (answers[6] as Challenge).challenge, { code: codeAt(secret) })).statusCode, 200)
    })

    test('when the challenge has expired, then 401 invalid_mfa_challenge even with a right code', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      const answer = await challenged(client, me.user.username)
      await sideDb(t, config).updateTable('mfa_challenges').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('user_id', '=', me.user.id).execute()
      assert.equal(problemOf(await complete(client, answer.challenge, { code: codeAt(secret) }), 401).type, '/problems/invalid_mfa_challenge')
    })

    test('when a recovery code completes a sign-in, then it works once (any case and spacing) and one fewer is left', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { recoveryCodes } = await enrolTotp(client, me)
      const code = recoveryCodes[3] as string
      const first = await challenged(client, me.user.username)
      const done = await complete(client, first.challenge, { recovery_code: ` ${code.toUpperCase().replace('-', ' - ')} ` })
      assert.equal(done.statusCode, 200, done.body)
      assert.deepEqual(claimsOf(done.json().access).amr, ['pwd', 'otp'])
      const second = await challenged(client, me.user.username)
      assert.equal(problemOf(await complete(client, second.challenge, { recovery_code: code }), 401).type, '/problems/invalid_second_factor')
      problemOf(await complete(client, second.challenge, { recovery_code: 'not-a-code' }), 401)
      assert.equal((await client.get(MFA, me.access)).json().recovery_codes_left, 9)
    })

    test('when recovery codes are regenerated, then the old ones stop working and the new ones sign in', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { recoveryCodes } = await enrolTotp(client, me)
      // Confirmation just proved the factor in this session: no code needed within the window.
      const regenerated = await client.send('POST', `${MFA}/recovery-codes`, undefined, me.access)
      assert.equal(regenerated.statusCode, 200, regenerated.body)
      const fresh: string[] = regenerated.json().recovery_codes
      assert.equal(fresh.length, 10)
      assert.ok(fresh.every((code) => !recoveryCodes.includes(code)))
      const answer = await challenged(client, me.user.username)
      problemOf(await complete(client, answer.challenge, { recovery_code: recoveryCodes[0] as string }), 401)
      assert.equal((await complete(client, answer.challenge, { recovery_code: fresh[0] as string })).statusCode, 200)
    })

    test('when wrong codes pile up, then they count against the account’s sign-in limit: 401s, then 429 even for a right code', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name, { signInLimits: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 900 } })
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      const answer = await challenged(client, me.user.username)
      const wrong = codeAt(secret) === '000000' ? '111111' : '000000'
      for (let attempt = 0; attempt < 3; attempt++) problemOf(await complete(client, answer.challenge, { code: wrong }), 401)
      const limited = problemOf(await complete(client, answer.challenge, { code: codeAt(secret) }), 429)
      assert.equal(limited.type, '/problems/too_many_requests')
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }), 429)
    })

    test('when the factor is turned off with the password and a recovery code, then sign-in gives tokens directly again', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { recoveryCodes } = await enrolTotp(client, me)
      await ageSecondFactor(t, config, me.user.id)
      const refused = problemOf(await client.send('DELETE', `${MFA}/totp`, { password: GOOD_PASSWORD }, me.access), 403)
      assert.equal(refused.type, '/problems/step_up_required')
      assert.ok(refused.errors?.otp_code)
      const wrongPassword = problemOf(await client.send('DELETE', `${MFA}/totp`, { password: 'not-it-at-all-9', recovery_code: recoveryCodes[0] as string }, me.access), 400)
      assert.ok(wrongPassword.errors?.password)
      // The recovery code was right: the session now counts as stepped up, so the retry needs no code.
      assert.equal((await client.send('DELETE', `${MFA}/totp`, { password: GOOD_PASSWORD }, me.access)).statusCode, 204)
      assert.deepEqual((await client.get(MFA, me.access)).json(), { totp: false, recovery_codes_left: 0, methods: [] })
      const signedIn = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      assert.ok(signedIn.json().access, signedIn.body)
      problemOf(await client.send('DELETE', `${MFA}/totp`, { password: GOOD_PASSWORD }, me.access), 409)
    })

    test('when a session has not proven the factor lately, then password change, email change, deletion and disabling need a code (step-up)', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret, recoveryCodes } = await enrolTotp(client, me)
      await ageSecondFactor(t, config, me.user.id)
      const stepUp = (response: Awaited<ReturnType<TestClient['send']>>) => {
        const problem = problemOf(response, 403)
        assert.equal(problem.type, '/problems/step_up_required')
        assert.ok(problem.errors?.otp_code, JSON.stringify(problem))
      }
      const password = `/api/users/${me.user.id}/password`
      const body = { current_password: GOOD_PASSWORD, new_password: NEW_PASSWORD }
      stepUp(await client.send('POST', password, body, me.access))
      stepUp(await client.send('POST', password, { ...body, otp_code: codeAt(secret, -1) }, me.access))
      stepUp(await client.send('PATCH', `/api/users/${me.user.id}`, { email: `new-${me.user.email}` }, me.access))
      stepUp(await client.send('PUT', ME, { email: `new-${me.user.email}` }, me.access))
      stepUp(await client.send('DELETE', `/api/users/${me.user.id}`, { current_password: GOOD_PASSWORD }, me.access))
      stepUp(await client.send('POST', `${MFA}/recovery-codes`, {}, me.access))
      // Changes that need no step-up go on: other fields, and the same email in another case.
      assert.equal((await client.send('PATCH', ME, { first_name: 'Ada', email: me.user.email.toUpperCase() }, me.access)).statusCode, 200)

      // A code in the request itself passes, and the session counts as stepped up for the next five minutes.
      assert.equal((await client.send('POST', password, { ...body, otp_code: codeAt(secret) }, me.access)).statusCode, 204)
      const patched = await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access)
      assert.equal(patched.statusCode, 200, patched.body)

      await ageSecondFactor(t, config, me.user.id)
      const viaForm = await client.request({
        method: 'PATCH',
        url: ME,
        headers: { authorization: `Bearer ${me.access}`, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ email: `newer-${me.user.email}`, recovery_code: recoveryCodes[0] as string }).toString(),
      })
      assert.equal(viaForm.statusCode, 200, viaForm.body)

      await ageSecondFactor(t, config, me.user.id)
      // POST …/mfa/verify steps the session up on its own.
      problemOf(await client.send('POST', `${MFA}/verify`, { code: codeAt(secret) }, me.access), 400)
      assert.equal((await client.send('POST', `${MFA}/verify`, { code: codeAt(secret, 1) }, me.access)).statusCode, 204)
      assert.equal((await client.send('POST', `${MFA}/recovery-codes`, {}, me.access)).statusCode, 200)
      const deleted = await client.send('DELETE', `/api/users/${me.user.id}`, { current_password: NEW_PASSWORD }, me.access)
      assert.equal(deleted.statusCode, 204, deleted.body)
    })

    test('when deletion comes with a right code, then it passes; with a wrong one it is 403 and counted', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name, { signInLimits: { maxFailuresPerAccount: 2, maxFailuresPerAddress: 1000, windowSeconds: 900 } })
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)
      await ageSecondFactor(t, config, me.user.id)
      const url = `/api/users/${me.user.id}`
      const wrong = codeAt(secret) === '000000' ? '111111' : '000000'
      problemOf(await client.send('DELETE', url, { current_password: GOOD_PASSWORD, otp_code: wrong }, me.access), 403)
      problemOf(await client.send('DELETE', url, { current_password: GOOD_PASSWORD, otp_code: wrong }, me.access), 403)
      problemOf(await client.send('DELETE', url, { current_password: GOOD_PASSWORD, otp_code: codeAt(secret) }, me.access), 429)
    })

    test('when the account has no second factor, then nothing asks for one', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const signedIn = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      assert.deepEqual(Object.keys(signedIn.json()).sort(), ['access', 'device_token', 'refresh', 'user'])
      assert.deepEqual(claimsOf(signedIn.json().access).amr, ['pwd'])
      assert.equal((await client.send('PATCH', ME, { email: `x-${me.user.email}` }, me.access)).statusCode, 200)
      problemOf(await client.send('POST', `${MFA}/recovery-codes`, {}, me.access), 409)
      problemOf(await client.send('POST', `${MFA}/verify`, { code: '123456' }, me.access), 409)
      const changed = await client.send('POST', `/api/users/${me.user.id}/password`, { current_password: GOOD_PASSWORD, new_password: NEW_PASSWORD }, me.access)
      assert.equal(changed.statusCode, 204)
    })
  })
}

/** Moves the user's sessions' last second factor back past the step-up window. */
async function ageSecondFactor(t: import('node:test').TestContext, config: import('../src/config.js').Config, userId: number) {
  await sideDb(t, config).updateTable('sessions').set({ second_factor_at: new Date(Date.now() - 3600_000).toISOString() }).where('user_id', '=', userId).execute()
}
