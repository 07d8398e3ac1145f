import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { type Config, loadConfig } from '../src/config.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { awayFromStepEdge, codeAt, sideDb } from './helpers/mfa.js'
import { recipients, type SmtpSink, startSmtp, tokenIn } from './helpers/smtp.js'
import { suite } from './helpers/suite.js'
import { type CreationOptions, SoftAuthenticator } from './helpers/webauthn.js'

// Issue 18: a second factor or passkey added, removed or renewed, and a password reset, are recorded in the
// person's security activity, and the factor changes mailed to the account's address, both in the change's
// transaction: a refused change records neither. Over HTTP, mail to a real SMTP server, on both dialects.

const ORIGIN = 'https://portrait.example'
const MFA = '/api/users/me/mfa'
const FIREFOX_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:131.0) Gecko/20100101 Firefox/131.0'
const UA = { 'user-agent': FIREFOX_MAC }

async function appWithSmtp(t: TestContext, dialect: 'sqlite' | 'postgres') {
  const smtp = await startSmtp(t)
  const built = await testApp(t, dialect, { mail: { ...loadConfig({}).mail, smtpUrl: smtp.url, retryBaseMs: 50 }, publicUrl: ORIGIN })
  return { ...built, smtp }
}

async function typesOf(client: TestClient, access: string): Promise<string[]> {
  const response = await client.get('/api/users/me/activity?limit=100', access)
  assert.equal(response.statusCode, 200, response.body)
  return (response.json().results as { type: string }[]).map((entry) => entry.type).reverse()
}

async function entryOf(client: TestClient, access: string, type: string) {
  const results = (await client.get('/api/users/me/activity?limit=100', access)).json().results as { type: string; device: string; details: Record<string, unknown> }[]
  return results.find((entry) => entry.type === type)
}

/** The subjects of the account's security notices in the outbox, oldest first (sign-up's verification left out). */
async function noticesOf(t: TestContext, config: Config, email: string): Promise<string[]> {
  const rows = await sideDb(t, config).selectFrom('mail_outbox').select('subject').where('to_address', '=', email).orderBy('id').execute()
  return rows.map((row) => row.subject).filter((subject) => !/confirm your email/.test(subject))
}

/** The notice with this subject arrives by SMTP: no link, the device named, a simple HTML part. */
async function noticeArrives(smtp: SmtpSink, me: Session, subject: RegExp) {
  const mail = await smtp.waitFor((m) => recipients(m).includes(me.user.email) && subject.test(m.subject ?? ''))
  assert.match(mail.text ?? '', new RegExp(`Hello ${me.user.username}`))
  assert.match(mail.text ?? '', /Firefox 131 on macOS/)
  assert.doesNotMatch(mail.text ?? '', /https?:|token/i)
  assert.ok(mail.html && !/<img|<script|src=|href=/i.test(mail.html), 'a simple HTML part, no link')
  return mail
}

for (const dialect of DIALECTS) {
  suite(`second-factor and passkey changes in activity and mail (${dialect.name})`, dialect.skip, () => {
    test('when TOTP is turned on, its recovery codes renewed and it is turned off, then each is in the activity and mailed; refusals record neither', async (t) => {
      await awayFromStepEdge()
      const { client, config, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = (await client.send('POST', `${MFA}/totp`, undefined, me.access)).json() as { secret: string }
      const wrong = codeAt(secret, -1) === '000000' ? '111111' : '000000'
      problemOf(await client.send('POST', `${MFA}/totp/confirm`, { code: wrong }, me.access, UA), 400)
      assert.deepEqual(await noticesOf(t, config, me.user.email), [])

      assert.equal((await client.send('POST', `${MFA}/totp/confirm`, { code: codeAt(secret, -1) }, me.access, UA)).statusCode, 200)
      await noticeArrives(smtp, me, /two-step verification was turned on/)
      const enabled = await entryOf(client, me.access, 'mfa_enabled')
      assert.equal(enabled?.device, 'Firefox 131 on macOS')

      assert.equal((await client.send('POST', `${MFA}/recovery-codes`, {}, me.access, UA)).statusCode, 200)
      await noticeArrives(smtp, me, /new recovery codes were made/)

      problemOf(await client.send('DELETE', `${MFA}/totp`, { password: 'not-it-at-all-9' }, me.access, UA), 400)
      assert.equal((await client.send('DELETE', `${MFA}/totp`, { password: GOOD_PASSWORD }, me.access, UA)).statusCode, 204)
      await noticeArrives(smtp, me, /two-step verification was turned off/)
      // Already off: refused, and nothing more recorded.
      problemOf(await client.send('DELETE', `${MFA}/totp`, { password: GOOD_PASSWORD }, me.access, UA), 409)
      problemOf(await client.send('POST', `${MFA}/recovery-codes`, {}, me.access, UA), 409)

      assert.deepEqual(
        (await typesOf(client, me.access)).filter((type) => type !== 'sign_in'),
        ['mfa_enabled', 'recovery_codes_regenerated', 'mfa_disabled'],
      )
      assert.deepEqual(await noticesOf(t, config, me.user.email), [
        'Portrait: two-step verification was turned on',
        'Portrait: new recovery codes were made',
        'Portrait: two-step verification was turned off',
      ])
    })

    test('when a passkey is added and removed, then each is in the activity with its name and mailed; refusals record neither', async (t) => {
      const { client, config, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      const register = async (lies = {}) => {
        const options = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, me.access)).json() as CreationOptions
        return client.send('POST', '/api/users/me/passkeys', { name: 'Laptop', response: authenticator.create(options, lies) }, me.access, UA)
      }
      problemOf(await register({ origin: 'https://portrait.example.evil' }), 400)
      const added = await register()
      assert.equal(added.statusCode, 201, added.body)
      await noticeArrives(smtp, me, /a passkey was added/)
      assert.deepEqual((await entryOf(client, me.access, 'passkey_added'))?.details, { passkey: 'Laptop' })

      const other = await client.signUp()
      problemOf(await client.send('DELETE', `/api/users/me/passkeys/${added.json().id}`, undefined, other.access, UA), 404)
      assert.equal((await client.send('DELETE', `/api/users/me/passkeys/${added.json().id}`, undefined, me.access, UA)).statusCode, 204)
      await noticeArrives(smtp, me, /a passkey was removed/)
      problemOf(await client.send('DELETE', `/api/users/me/passkeys/${added.json().id}`, undefined, me.access, UA), 404)

      assert.deepEqual((await typesOf(client, me.access)).filter((type) => type !== 'sign_in'), ['passkey_added', 'passkey_removed'])
      assert.deepEqual(await noticesOf(t, config, me.user.email), ['Portrait: a passkey was added', 'Portrait: a passkey was removed'])
      assert.deepEqual(await typesOf(client, other.access), [])
      assert.deepEqual(await noticesOf(t, config, other.user.email), [])
    })

    test('when a password reset is confirmed, then password_reset is in the activity with the client; a refused one records nothing', async (t) => {
      const { client, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      assert.equal((await client.send('POST', '/api/auth/password-reset', { email: me.user.email })).statusCode, 202)
      const token = tokenIn(await smtp.waitFor((m) => recipients(m).includes(me.user.email) && /reset your password/.test(m.subject ?? '')), 'reset-password')
      problemOf(await client.send('POST', '/api/auth/password-reset/confirm', { token, new_password: me.user.username }, undefined, UA), 400)
      const NEW = 'another-Staple-kettle-42'
      assert.equal((await client.send('POST', '/api/auth/password-reset/confirm', { token, new_password: NEW }, undefined, UA)).statusCode, 204)
      const signedIn = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: NEW })
      const access = signedIn.json().access as string
      const types = await typesOf(client, access)
      assert.deepEqual(types.filter((type) => type === 'password_reset'), ['password_reset'])
      assert.equal((await entryOf(client, access, 'password_reset'))?.device, 'Firefox 131 on macOS')
    })
  })
}
