import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { test } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import type { Config } from '../src/config.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { setFlags } from './helpers/db.js'
import { multipart } from './helpers/images.js'
import { awayFromStepEdge, enrolTotp, sideDb } from './helpers/mfa.js'
import { suite } from './helpers/suite.js'
import { type CreationOptions, type RequestOptions, SoftAuthenticator } from './helpers/webauthn.js'

// Step-up for an account WITHOUT a second factor (src/mfa/step-up.ts): what adds a way into the account or
// redirects its recovery needs a recently proven password, so a stolen access token alone cannot take it over.

const ORIGIN = 'https://portrait.example'
const ME = '/api/users/me'
const REAUTH = '/api/users/me/reauthenticate'
const OPTIONS = '/api/users/me/passkeys/registration-options'
const PASSKEYS = '/api/users/me/passkeys'
const TOTP = '/api/users/me/mfa/totp'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

/** Moves the user's sessions' sign-in (and any re-authentication or second factor) back past the window. */
async function ageSessions(t: TestContext, config: Config, userId: number) {
  const hourAgo = new Date(Date.now() - 3600_000).toISOString()
  await sideDb(t, config)
    .updateTable('sessions')
    .set({ created_at: hourAgo, reauthenticated_at: null, second_factor_at: null })
    .where('user_id', '=', userId)
    .execute()
}

function reauthenticationRequired(response: LightMyRequestResponse) {
  const problem = problemOf(response, 403)
  assert.equal(problem.type, '/problems/reauthentication_required')
  assert.ok(problem.errors?.current_password, JSON.stringify(problem))
  return problem
}

/** Registration options on a session that may ask for them, and the authenticator's answer to them. */
async function passkeyCreation(client: TestClient, access: string, authenticator: SoftAuthenticator) {
  const options = await client.send('POST', OPTIONS, undefined, access)
  assert.equal(options.statusCode, 200, options.body)
  return authenticator.create(options.json() as CreationOptions)
}

async function emailOf(client: TestClient, me: Session): Promise<string> {
  return (await client.get(ME, me.access)).json().email
}

for (const dialect of DIALECTS) {
  suite(`re-authentication without a second factor (${dialect.name})`, dialect.skip, () => {
    test('when a no-factor session signed in longer ago than the window, then a new email, a passkey and an authenticator app need the password (403)', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { publicUrl: ORIGIN })
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      // Asked for while fresh, so the registration itself can be tried on the aged session.
      const response = await passkeyCreation(client, me.access, authenticator)
      await ageSessions(t, config, me.user.id)

      const patched = reauthenticationRequired(await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access))
      assert.match(patched.detail, /current_password|reauthenticate/)
      reauthenticationRequired(await client.send('PUT', `/api/users/${me.user.id}`, { email: `new-${me.user.email}` }, me.access))
      reauthenticationRequired(await client.send('POST', OPTIONS, undefined, me.access))
      reauthenticationRequired(await client.send('POST', PASSKEYS, { name: 'Attacker', response }, me.access))
      reauthenticationRequired(await client.send('POST', TOTP, undefined, me.access))
      assert.equal(await emailOf(client, me), me.user.email)
      assert.deepEqual((await client.get(PASSKEYS, me.access)).json().results, [])
      assert.deepEqual((await client.get('/api/users/me/mfa', me.access)).json().totp, false)
      // Nothing else is held back: other fields, the same address in another case, the passkey list.
      const other = await client.send('PATCH', ME, { first_name: 'Ada', email: me.user.email.toUpperCase() }, me.access)
      assert.equal(other.statusCode, 200, other.body)

      // After POST …/reauthenticate, all of them pass for the window.
      const reauthenticated = await client.send('POST', REAUTH, { password: GOOD_PASSWORD }, me.access)
      assert.equal(reauthenticated.statusCode, 204, reauthenticated.body)
      assert.equal((await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access)).statusCode, 200)
      const created = await client.send('POST', PASSKEYS, { name: 'Laptop', response }, me.access)
      assert.equal(created.statusCode, 201, created.body)
      await passkeyCreation(client, me.access, new SoftAuthenticator(ORIGIN))
      assert.equal((await client.send('POST', TOTP, undefined, me.access)).statusCode, 200)
    })

    test('when current_password comes with the email change (JSON, form or multipart), then it passes and the session counts as re-authenticated', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      await ageSessions(t, config, me.user.id)
      const json = await client.send('PATCH', ME, { email: `json-${me.user.email}`, current_password: GOOD_PASSWORD }, me.access)
      assert.equal(json.statusCode, 200, json.body)
      assert.equal(json.json().email, `json-${me.user.email}`)
      assert.equal('current_password' in json.json(), false)
      // Marked: the next operation of the window needs nothing.
      assert.equal((await client.send('POST', TOTP, undefined, me.access)).statusCode, 200)

      await ageSessions(t, config, me.user.id)
      const form = new URLSearchParams({ email: `form-${me.user.email}`, current_password: GOOD_PASSWORD }).toString()
      const viaForm = await client.send('PUT', `/api/users/${me.user.id}`, form, me.access, FORM)
      assert.equal(viaForm.statusCode, 200, viaForm.body)
      assert.equal(viaForm.json().email, `form-${me.user.email}`)

      await ageSessions(t, config, me.user.id)
      const { payload, headers } = multipart([
        { name: 'email', value: `multi-${me.user.email}` },
        { name: 'current_password', value: GOOD_PASSWORD },
      ])
      const viaMultipart = await client.send('PATCH', ME, payload, me.access, headers)
      assert.equal(viaMultipart.statusCode, 200, viaMultipart.body)
      assert.equal(viaMultipart.json().email, `multi-${me.user.email}`)

      // A wrong one is a 400 on the field, and the address stays.
      await ageSessions(t, config, me.user.id)
      const wrong = problemOf(await client.send('PATCH', ME, { email: `wrong-${me.user.email}`, current_password: 'not-my-password-1' }, me.access), 400)
      assert.deepEqual(Object.keys(wrong.errors ?? {}), ['current_password'])
      assert.equal(await emailOf(client, me), `multi-${me.user.email}`)
    })

    test('when wrong passwords are sent to re-authenticate, then each is a 400 that counts against the sign-in limit: the 11th attempt is 429', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      await ageSessions(t, config, me.user.id)
      for (let i = 0; i < 9; i++) {
        const wrong = problemOf(await client.send('POST', REAUTH, { password: `wrong-guess-${i}` }, me.access), 400)
        assert.deepEqual(Object.keys(wrong.errors ?? {}), ['password'])
      }
      // The one in the profile update counts the same: the tenth failure.
      problemOf(await client.send('PATCH', ME, { email: `x-${me.user.email}`, current_password: 'wrong-guess-9' }, me.access), 400)
      problemOf(await client.send('POST', REAUTH, { password: GOOD_PASSWORD }, me.access), 429)
      problemOf(await client.send('PATCH', ME, { email: `x-${me.user.email}`, current_password: GOOD_PASSWORD }, me.access), 429)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }), 429)
      reauthenticationRequired(await client.send('POST', TOTP, undefined, me.access))
    })

    test('when the person signs in again, then the fresh session passes without anything, and the old one still does not', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      await ageSessions(t, config, me.user.id)
      const signedIn = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      const fresh = signedIn.json().access as string
      assert.ok(fresh, signedIn.body)
      assert.equal((await client.send('PATCH', ME, { email: `fresh-${me.user.email}` }, fresh)).statusCode, 200)
      assert.equal((await client.send('POST', OPTIONS, undefined, fresh)).statusCode, 200)
      assert.equal((await client.send('POST', TOTP, undefined, fresh)).statusCode, 200)
      reauthenticationRequired(await client.send('PATCH', ME, { email: `stolen-${me.user.email}` }, me.access))
    })

    test('when the account has no usable password, then it cannot re-authenticate with one (400 saying so, uncounted) but a passkey proves it', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { publicUrl: ORIGIN, signInLimits: { maxFailuresPerAccount: 2, maxFailuresPerAddress: 1000, windowSeconds: 900 } })
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      const created = await client.send('POST', PASSKEYS, { name: 'Phone', response: await passkeyCreation(client, me.access, authenticator) }, me.access)
      assert.equal(created.statusCode, 201, created.body)
      // As a Django import stores an account without a password (set_unusable_password).
      await sideDb(t, config).updateTable('users').set({ password_hash: '!unusablePasswordFromDjango' }).where('id', '=', me.user.id).execute()
      await ageSessions(t, config, me.user.id)

      const refused = reauthenticationRequired(await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access))
      assert.match(refused.detail, /no password/)
      for (let i = 0; i < 3; i++) {
        const answer = problemOf(await client.send('POST', REAUTH, { password: GOOD_PASSWORD }, me.access), 400)
        assert.match(answer.errors?.password?.[0] ?? '', /no password/)
      }
      const inBody = problemOf(await client.send('PATCH', ME, { email: `new-${me.user.email}`, current_password: GOOD_PASSWORD }, me.access), 400)
      assert.match(inBody.errors?.current_password?.[0] ?? '', /no password/)

      // A passkey proven in the session (step-up) counts instead; so does a passkey sign-in.
      const options = await client.send('POST', '/api/users/me/passkeys/step-up-options', undefined, me.access)
      const verified = await client.send('POST', '/api/users/me/passkeys/verify', { response: authenticator.get(options.json() as RequestOptions) }, me.access)
      assert.equal(verified.statusCode, 204, verified.body)
      assert.equal((await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access)).statusCode, 200)
      await ageSessions(t, config, me.user.id)
      const challenge = (await client.send('POST', '/api/auth/passkey/options', undefined)).json()
      const signedIn = await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id: challenge.challenge_id, response: authenticator.get(challenge.options) })
      assert.equal(signedIn.statusCode, 200, signedIn.body)
      assert.equal((await client.send('POST', TOTP, undefined, signedIn.json().access)).statusCode, 200)
    })

    test('when the account has a second factor, then its step-up rule is unchanged: a code, not the password', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      await enrolTotp(client, me)
      await ageSessions(t, config, me.user.id)
      for (const response of [
        await client.send('PATCH', ME, { email: `new-${me.user.email}`, current_password: GOOD_PASSWORD }, me.access),
        await client.send('POST', TOTP, undefined, me.access),
      ]) {
        const problem = problemOf(response, 403)
        assert.equal(problem.type, '/problems/step_up_required')
        assert.ok(problem.errors?.otp_code)
      }
      // Re-authenticating with the password does not stand in for the second factor.
      assert.equal((await client.send('POST', REAUTH, { password: GOOD_PASSWORD }, me.access)).statusCode, 204)
      problemOf(await client.send('PATCH', ME, { email: `new-${me.user.email}` }, me.access), 403)
    })

    test('when a no-factor session older than the window deletes a passkey, then the password is asked for first', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { publicUrl: ORIGIN })
      const me = await client.signUp()
      const created = await client.send('POST', PASSKEYS, { name: 'Laptop', response: await passkeyCreation(client, me.access, new SoftAuthenticator(ORIGIN)) }, me.access)
      assert.equal(created.statusCode, 201, created.body)
      await ageSessions(t, config, me.user.id)
      reauthenticationRequired(await client.send('DELETE', `${PASSKEYS}/${created.json().id}`, undefined, me.access))
      assert.equal((await client.get(PASSKEYS, me.access)).json().results.length, 1)
      assert.equal((await client.send('POST', '/api/users/me/reauthenticate', { password: GOOD_PASSWORD }, me.access)).statusCode, 204)
      assert.equal((await client.send('DELETE', `${PASSKEYS}/${created.json().id}`, undefined, me.access)).statusCode, 204)
    })

    test('when a stale superuser token grants privileges or deletes an account, then the password (or, with a factor, a code) is asked for first', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const root = await client.signUp()
      await setFlags(config, root.user.id, { is_superuser: true, is_staff: true })
      const intruder = await client.signUp()
      const victim = await client.signUp()
      await ageSessions(t, config, root.user.id)

      const grant = problemOf(await client.send('PATCH', `/api/users/${intruder.user.id}`, { is_superuser: true, is_staff: true }, root.access), 403)
      assert.equal(grant.type, '/problems/reauthentication_required')
      problemOf(await client.send('DELETE', `/api/users/${victim.user.id}`, {}, root.access), 403)
      const flags = (await client.get(`/api/users/${intruder.user.id}`, root.access)).json()
      assert.deepEqual([flags.is_superuser, flags.is_staff], [false, false])
      assert.equal((await client.get(`/api/users/${victim.user.id}`, root.access)).statusCode, 200, 'not deleted')
      // Unchanged flags sent back (a PUT of what was read) ask for nothing.
      assert.equal((await client.send('PATCH', `/api/users/${intruder.user.id}`, { is_staff: false, first_name: 'Ivy' }, root.access)).statusCode, 200)

      const granted = await client.send('PATCH', `/api/users/${intruder.user.id}`, { is_staff: true, current_password: GOOD_PASSWORD }, root.access)
      assert.equal(granted.statusCode, 200, granted.body)
      assert.equal(granted.json().is_staff, true)
      // Proven just now: the deletion goes through within the window.
      assert.equal((await client.send('DELETE', `/api/users/${victim.user.id}`, {}, root.access)).statusCode, 204)

      // With a second factor, a code.
      const guarded = await client.signUp()
      await setFlags(config, guarded.user.id, { is_superuser: true, is_staff: true })
      await enrolTotp(client, guarded)
      await sideDb(t, config).updateTable('sessions').set({ second_factor_at: null }).where('user_id', '=', guarded.user.id).execute()
      const stepUp = problemOf(await client.send('PATCH', `/api/users/${intruder.user.id}`, { is_superuser: true }, guarded.access), 403)
      assert.equal(stepUp.type, '/problems/step_up_required')
    })

    test('when the email becomes an NFKC twin of itself, then it is a new address: step-up with a factor, unverified and mailed without', async (t) => {
      await awayFromStepEdge()
      const { app, client, config } = await testApp(t, dialect.name)
      const db = sideDb(t, config)
      const twinOf = (email: string) => `\uFF53${email.slice(1)}`

      const guarded = await client.signUp({ username: `s${Date.now().toString(36)}` })
      await enrolTotp(client, guarded)
      await db.updateTable('sessions').set({ second_factor_at: null }).where('user_id', '=', guarded.user.id).execute()
      assert.ok(guarded.user.email.startsWith('s'))
      const stepUp = problemOf(await client.send('PATCH', ME, { email: twinOf(guarded.user.email) }, guarded.access), 403)
      assert.equal(stepUp.type, '/problems/step_up_required')
      assert.equal(await emailOf(client, guarded), guarded.user.email)
      // Twins that JavaScript's toLowerCase folds onto ASCII (the Kelvin sign to k, the Ångström sign to å) too.
      const kim = await client.signUp({ username: `k${Date.now().toString(36)}` })
      await enrolTotp(client, kim)
      await db.updateTable('sessions').set({ second_factor_at: null }).where('user_id', '=', kim.user.id).execute()
      const kelvin = problemOf(await client.send('PATCH', ME, { email: `\u212A${kim.user.email.slice(1)}` }, kim.access), 403)
      assert.equal(kelvin.type, '/problems/step_up_required')
      assert.equal(await emailOf(client, kim), kim.user.email)

      const plain = await client.signUp({ username: `s${Date.now().toString(36)}x` })
      await db.updateTable('users').set({ email_verified: 1 }).where('id', '=', plain.user.id).execute()
      // Letter case alone is the same mailbox: still verified, no mail.
      const recased = await client.send('PATCH', ME, { email: plain.user.email.toUpperCase() }, plain.access)
      assert.equal(recased.statusCode, 200, recased.body)
      assert.equal(recased.json().email_verified, true)
      const twin = twinOf(plain.user.email)
      const changed = await client.send('PATCH', ME, { email: twin }, plain.access)
      assert.equal(changed.statusCode, 200, changed.body)
      assert.equal(changed.json().email, twin)
      assert.equal(changed.json().email_verified, false)
      await app.close()
      const mail = await db.selectFrom('mail_outbox').select(['to_address', 'subject']).where('to_address', 'in', [twin, plain.user.email.toUpperCase()]).orderBy('id').execute()
      assert.deepEqual(mail, [
        { to_address: twin, subject: 'Portrait: confirm your email address' },
        { to_address: plain.user.email.toUpperCase(), subject: 'Portrait: your email address was changed' },
      ])
    })
  })
}
