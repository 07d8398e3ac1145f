import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { sql } from 'kysely'
import { buildApp } from '../src/app.js'
import { type Config, loadConfig } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type Session, TestClient, testApp, testConfig, uniqueName } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { setFlags } from './helpers/db.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { recipients, type SmtpSink, startSmtp, tokenIn } from './helpers/smtp.js'
import { suite } from './helpers/suite.js'

const NEW_PASSWORD = 'another-Staple-kettle-42'
const RESET = '/api/auth/password-reset'
const CONFIRM = '/api/auth/password-reset/confirm'
const VERIFY = '/api/auth/verify-email'

/** The app with its mail going to a real SMTP server started by the test. */
async function appWithSmtp(t: TestContext, dialect: 'sqlite' | 'postgres', overrides: Partial<Config> = {}) {
  const smtp = await startSmtp(t)
  const built = await testApp(t, dialect, { mail: { ...loadConfig({}).mail, smtpUrl: smtp.url, retryBaseMs: 50 }, ...overrides })
  return { ...built, smtp }
}

/** A statement on the app's database through a connection of the test's own. */
async function onDb(t: TestContext, config: Config) {
  const db = createDb(config)
  deferCleanup(t, () => db.destroy())
  return db.kysely
}

const to = (address: string, subject: RegExp) => (mail: { subject?: string; to?: unknown }) =>
  recipients(mail as never).includes(address) && subject.test(mail.subject ?? '')

async function resetMailFor(client: TestClient, smtp: SmtpSink, email: string): Promise<string> {
  const before = smtp.messages.length
  const response = await client.send('POST', RESET, { email })
  assert.equal(response.statusCode, 202, response.body)
  const mail = await smtp.waitFor((m) => smtp.messages.indexOf(m) >= before && to(email, /reset your password/)(m))
  return tokenIn(mail, 'reset-password')
}

for (const dialect of DIALECTS) {
  suite(`password reset and verified email over SMTP (${dialect.name})`, dialect.skip, () => {
    test('when someone signs up, then a verification link arrives by SMTP, and following it verifies the address once', async (t) => {
      const { client, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      assert.equal(me.user.email_verified, false)
      const mail = await smtp.waitFor(to(me.user.email, /confirm your email/))
      assert.match(mail.messageId ?? '', /^<[0-9a-f-]{36}@portrait\.localhost>$/)
      assert.ok(mail.html && !/<img|<script|src=/i.test(mail.html), 'a simple HTML part, nothing remote')
      assert.match(mail.text ?? '', /Portrait/)
      const token = tokenIn(mail, 'verify-email')
      assert.match((mail.text ?? '').split('\n').find((line) => line.includes('#token=')) ?? '', /^http:\/\/127\.0\.0\.1:\d+\/verify-email#token=/)
      const verified = await client.send('POST', VERIFY, { token })
      assert.equal(verified.statusCode, 204, verified.body)
      assert.equal((await client.get('/api/users/me', me.access)).json().email_verified, true)
      const again = problemOf(await client.send('POST', VERIFY, { token }), 400)
      assert.deepEqual(Object.keys(again.errors ?? {}), ['token'])
      for (const wrong of ['', 'x', 'y'.repeat(43), token.slice(1)]) problemOf(await client.send('POST', VERIFY, { token: wrong }), 400)
    })

    test('when a reset is asked for, then the link in the mail sets a new password, ends every session and mails a notice', async (t) => {
      const { client, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      const other = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      const token = await resetMailFor(client, smtp, me.user.email)

      const weak = problemOf(await client.send('POST', CONFIRM, { token, new_password: me.user.username }), 400)
      assert.deepEqual(Object.keys(weak.errors ?? {}), ['new_password'])
      assert.match(weak.errors?.new_password?.join(' ') ?? '', /similar to the username/)
      // A refusal of the password used nothing up: the same link still works.
      const done = await client.send('POST', CONFIRM, { token, new_password: NEW_PASSWORD })
      assert.equal(done.statusCode, 204, done.body)

      problemOf(await client.get('/api/users/me', me.access), 401)
      problemOf(await client.get('/api/users/me', other.json().access), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: me.refresh }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }), 401)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: NEW_PASSWORD })).statusCode, 200)
      await smtp.waitFor(to(me.user.email, /your password was reset/))

      const reused = problemOf(await client.send('POST', CONFIRM, { token, new_password: 'a-third-Password-77' }), 400)
      assert.deepEqual(Object.keys(reused.errors ?? {}), ['token'])
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: NEW_PASSWORD })).statusCode, 200)
    })

    test('when a reset is asked for a known and an unknown address, then both get the same status and body, and only the known one a mail', async (t) => {
      const { app, client, config, smtp } = await appWithSmtp(t, dialect.name)
      const db = await onDb(t, config)
      const me = await client.signUp()
      await smtp.waitFor(to(me.user.email, /confirm/))
      const unknown = await client.send('POST', RESET, { email: `${uniqueName('nobody')}@example.com` })
      const known = await client.send('POST', RESET, { email: me.user.email.toUpperCase() })
      assert.equal(unknown.statusCode, 202)
      assert.equal(known.statusCode, 202)
      assert.equal(unknown.body, known.body)
      assert.equal(unknown.headers['content-type'], known.headers['content-type'])
      // Closing waits for the recording done after the replies.
      await app.close()
      const recorded = await db.selectFrom('mail_outbox').select(['to_address', 'subject']).orderBy('id').execute()
      assert.deepEqual(recorded, [
        { to_address: me.user.email, subject: 'Portrait: confirm your email address' },
        { to_address: me.user.email, subject: 'Portrait: reset your password' },
      ])
    })

    test('when a reset token expired, or the password changed after it was sent, then it is refused on token and nothing changes', async (t) => {
      const { client, config, smtp } = await appWithSmtp(t, dialect.name)
      const db = await onDb(t, config)
      const me = await client.signUp()
      const expired = await resetMailFor(client, smtp, me.user.email)
      await db.updateTable('account_tokens').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('purpose', '=', 'password_reset').execute()
      const late = problemOf(await client.send('POST', CONFIRM, { token: expired, new_password: NEW_PASSWORD }), 400)
      assert.deepEqual(Object.keys(late.errors ?? {}), ['token'])

      const token = await resetMailFor(client, smtp, me.user.email)
      const changed = await client.send('POST', `/api/users/${me.user.id}/password`, { current_password: GOOD_PASSWORD, new_password: 'changed-Meanwhile-31' }, me.access)
      assert.equal(changed.statusCode, 204)
      await smtp.waitFor(to(me.user.email, /your password was changed/))
      const voided = problemOf(await client.send('POST', CONFIRM, { token, new_password: NEW_PASSWORD }), 400)
      assert.deepEqual(Object.keys(voided.errors ?? {}), ['token'])
      // Nothing changed: the session goes on and the password is the one just set.
      assert.equal((await client.get('/api/users/me', me.access)).statusCode, 200)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: 'changed-Meanwhile-31' })).statusCode, 200)
    })

    test('when an account has no usable password or is locked by failures, then a reset still works and clears the failure count', async (t) => {
      const { client, config, smtp } = await appWithSmtp(t, dialect.name, {
        signInLimits: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 900 },
      })
      const db = await onDb(t, config)
      const me = await client.signUp()
      // As a Django import stores an account without a password.
      await db.updateTable('users').set({ password_hash: '!unusablePasswordFromDjango' }).where('id', '=', me.user.id).execute()
      for (let i = 0; i < 3; i++) problemOf(await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: `wrong-guess-${i}` }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }), 429)
      const token = await resetMailFor(client, smtp, me.user.email)
      assert.equal((await client.send('POST', CONFIRM, { token, new_password: NEW_PASSWORD })).statusCode, 204)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: NEW_PASSWORD })).statusCode, 200)
    })

    test('when a deactivated account asks for a reset, then the reply is the same and no mail is sent', async (t) => {
      const { app, client, config } = await appWithSmtp(t, dialect.name)
      const db = await onDb(t, config)
      const me = await client.signUp()
      await setFlags(config, me.user.id, { is_active: false })
      assert.equal((await client.send('POST', RESET, { email: me.user.email })).statusCode, 202)
      await app.close()
      assert.deepEqual(await db.selectFrom('mail_outbox').select('subject').execute(), [{ subject: 'Portrait: confirm your email address' }])
    })

    test('when resets are asked for too often, then 429 with Retry-After, per email and per client address', async (t) => {
      const { client } = await appWithSmtp(t, dialect.name, { mailRequestLimits: { maxPerEmail: 2, maxPerAddress: 4, windowSeconds: 600 } })
      const email = `${uniqueName('limited')}@example.com`
      for (let i = 0; i < 2; i++) assert.equal((await client.send('POST', RESET, { email })).statusCode, 202)
      const tooMany = problemOf(await client.send('POST', RESET, { email: email.toUpperCase() }), 429)
      assert.ok(tooMany)
      const limited = await client.send('POST', RESET, { email })
      assert.match(String(limited.headers['retry-after']), /^\d+$/)
      // Another address from the same client: two more, then the client's own limit.
      assert.equal((await client.send('POST', RESET, { email: `${uniqueName('a')}@example.com` })).statusCode, 202)
      assert.equal((await client.send('POST', RESET, { email: `${uniqueName('b')}@example.com` })).statusCode, 202)
      problemOf(await client.send('POST', RESET, { email: `${uniqueName('c')}@example.com` }), 429)
      // Another client is not held back by this one's count.
      const elsewhere = await client.request({ method: 'POST', url: RESET, payload: { email: `${uniqueName('d')}@example.com` }, remoteAddress: '10.9.8.7' })
      assert.equal(elsewhere.statusCode, 202)
    })

    test('when an account flips its email to someone else\'s address and back, then that address is mailed only up to the limit', async (t) => {
      const { client, config } = await appWithSmtp(t, dialect.name, { mailRequestLimits: { maxPerEmail: 2, maxPerAddress: 100, windowSeconds: 600 } })
      const me = await client.signUp()
      const victim = `${uniqueName('victim')}@example.org`
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) {
        statuses.push((await client.send('PATCH', '/api/users/me', { email: victim }, me.access)).statusCode)
        assert.equal((await client.send('PATCH', '/api/users/me', { email: me.user.email }, me.access)).statusCode, 200)
      }
      assert.deepEqual(statuses, [200, 200, 429])
      const db = await onDb(t, config)
      const mailed = await db.selectFrom('mail_outbox').select('subject').where('to_address', '=', victim).orderBy('id').execute()
      // A link per allowed change, and the notice of each change away from it: none for the refused one.
      assert.deepEqual(
        mailed.map((mail) => mail.subject),
        ['Portrait: confirm your email address', 'Portrait: your email address was changed', 'Portrait: confirm your email address', 'Portrait: your email address was changed'],
      )
      assert.equal((await client.get('/api/users/me', me.access)).json().email, me.user.email, 'the refused change was undone')
    })

    test('when strangers use up an address\'s reset requests, then its owner, signed in, can still ask for a verification link', async (t) => {
      const { client } = await appWithSmtp(t, dialect.name, { mailRequestLimits: { maxPerEmail: 2, maxPerAddress: 100, windowSeconds: 600 } })
      const me = await client.signUp()
      for (const remoteAddress of ['10.1.1.1', '10.2.2.2']) {
        assert.equal((await client.request({ method: 'POST', url: RESET, payload: { email: me.user.email }, remoteAddress })).statusCode, 202)
      }
      problemOf(await client.send('POST', RESET, { email: me.user.email }), 429)
      const resent = await client.send('POST', `/api/users/${me.user.id}/verify-email`, undefined, me.access)
      assert.equal(resent.statusCode, 202, resent.body)
    })

    test('when the email changes and changes back, then no link mailed before a change works after it', async (t) => {
      const { client, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      const original = me.user.email
      const verifyOriginal = tokenIn(await smtp.waitFor(to(original, /confirm/)), 'verify-email')
      const resetOriginal = await resetMailFor(client, smtp, original)
      const moved = `${uniqueName('moved')}@example.org`
      assert.equal((await client.send('PATCH', '/api/users/me', { email: moved }, me.access)).statusCode, 200)
      await smtp.waitFor(to(moved, /confirm your email/))
      const back = await client.send('PATCH', '/api/users/me', { email: original }, me.access)
      assert.equal(back.statusCode, 200, back.body)
      await smtp.waitFor((mail) => to(original, /confirm your email/)(mail) && tokenIn(mail, 'verify-email') !== verifyOriginal)

      // The address is the same string again, but both links were mailed before it changed.
      problemOf(await client.send('POST', VERIFY, { token: verifyOriginal }), 400)
      problemOf(await client.send('POST', CONFIRM, { token: resetOriginal, new_password: 'another-Horse-battery-7' }), 400)
      assert.equal((await client.get('/api/users/me', me.access)).json().email_verified, false)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })).statusCode, 200)
    })

    test('when the email changes, then it is unverified, a link goes to the new address and a notice to the old one; the old link is void', async (t) => {
      const { client, smtp } = await appWithSmtp(t, dialect.name)
      const me = await client.signUp()
      const first = tokenIn(await smtp.waitFor(to(me.user.email, /confirm/)), 'verify-email')
      const newAddress = `${uniqueName('moved')}@example.org`
      const patched = await client.send('PATCH', '/api/users/me', { email: newAddress }, me.access)
      assert.equal(patched.statusCode, 200, patched.body)
      assert.equal(patched.json().email_verified, false)
      const notice = await smtp.waitFor(to(me.user.email, /address was changed/))
      assert.match(notice.text ?? '', new RegExp(`changed to ${newAddress.replace(/\./g, '\\.')}`))
      assert.match(notice.text ?? '', /If this was not you/)
      const link = await smtp.waitFor(to(newAddress, /confirm your email/))
      problemOf(await client.send('POST', VERIFY, { token: first }), 400)
      assert.equal((await client.send('POST', VERIFY, { token: tokenIn(link, 'verify-email') })).statusCode, 204)
      assert.equal((await client.get('/api/users/me', me.access)).json().email_verified, true)
      // A new spelling of the same address is no change: it stays verified, no mail.
      const before = smtp.messages.length
      const recased = await client.send('PATCH', '/api/users/me', { email: newAddress.toUpperCase() }, me.access)
      assert.equal(recased.json().email_verified, true)
      const put = await client.send('PUT', '/api/users/me', recased.json(), me.access)
      assert.equal(put.statusCode, 200, 'email_verified read back is accepted and ignored')
      assert.equal(smtp.messages.length, before)
    })

    test('when an email change fails inside its transaction, then neither the change nor any mail is recorded', async (t) => {
      const { client, config, smtp } = await appWithSmtp(t, dialect.name)
      const db = await onDb(t, config)
      const me = await client.signUp()
      await smtp.waitFor(to(me.user.email, /confirm/))
      // The second mail of the change (the notice to the old address) fails after the first was recorded.
      if (dialect.name === 'sqlite') {
        await sql
          .raw(`create trigger fail_notice before insert on mail_outbox when new.subject like '%address was changed%' begin select raise(abort, 'notice refused'); end`)
          .execute(db)
      } else {
        await sql
          .raw(`create function fail_notice() returns trigger language plpgsql as $$ begin if new.subject like '%address was changed%' then raise exception 'notice refused'; end if; return new; end $$`)
          .execute(db)
        await sql.raw('create trigger fail_notice before insert on mail_outbox for each row execute function fail_notice()').execute(db)
      }
      const outboxBefore = await db.selectFrom('mail_outbox').select('id').execute()
      const failed = await client.send('PATCH', '/api/users/me', { email: `${uniqueName('lost')}@example.org` }, me.access)
      assert.equal(failed.statusCode, 500)
      assert.deepEqual(await db.selectFrom('mail_outbox').select('id').execute(), outboxBefore)
      const now = (await client.get('/api/users/me', me.access)).json()
      assert.equal(now.email, me.user.email)
      assert.equal(await db.selectFrom('account_tokens').select('token_hash').where('purpose', '=', 'email_verification').execute().then((rows) => rows.length), 1)
    })

    test('when a user asks for a new verification link, then it is mailed (self only, limited), and not once verified', async (t) => {
      const { app, client, config, smtp } = await appWithSmtp(t, dialect.name, { mailRequestLimits: { maxPerEmail: 2, maxPerAddress: 100, windowSeconds: 600 } })
      const db = await onDb(t, config)
      const me = await client.signUp()
      const other = await client.signUp()
      const url = `/api/users/${me.user.id}/verify-email`
      problemOf(await client.send('POST', url, undefined), 401)
      problemOf(await client.send('POST', '/api/users/999999/verify-email', undefined, me.access), 404)
      problemOf(await client.send('POST', url, undefined, other.access), 403)
      const resent = await client.send('POST', url, undefined, me.access)
      assert.equal(resent.statusCode, 202, resent.body)
      await smtp.waitFor((mail) => to(me.user.email, /confirm/)(mail) && smtp.messages.filter(to(me.user.email, /confirm/)).length === 2)
      assert.equal((await client.send('POST', url, undefined, me.access)).statusCode, 202)
      problemOf(await client.send('POST', url, undefined, me.access), 429)
      const latest = smtp.messages.filter(to(me.user.email, /confirm/)).at(-1)
      assert.ok(latest)
      assert.equal((await client.send('POST', VERIFY, { token: tokenIn(latest, 'verify-email') })).statusCode, 204)
      // Verified: 202 saying so, no mail (and no count against the limit used up above).
      const verified = await client.send('POST', url, undefined, me.access)
      assert.equal(verified.statusCode, 202)
      assert.match(verified.json().detail, /verified already/)
      const quiet = await client.send('POST', `/api/users/${other.user.id}/verify-email`, undefined, other.access)
      assert.equal(quiet.statusCode, 202)
      await app.close()
      // Sign-ups (2), resends (2) and other's resend (1).
      assert.equal((await db.selectFrom('mail_outbox').select('id').execute()).length, 5)
    })

    test('when a superuser sends another user a reset link, then it arrives; anyone else gets 401, 404 or 403 in that order', async (t) => {
      const { client, config, smtp } = await appWithSmtp(t, dialect.name)
      const admin = await client.signUp()
      await setFlags(config, admin.user.id, { is_superuser: true, is_staff: true })
      const user: Session = await client.signUp()
      const url = `/api/users/${user.user.id}/password-reset`
      problemOf(await client.send('POST', url, undefined), 401)
      problemOf(await client.send('POST', '/api/users/999999/password-reset', undefined, admin.access), 404)
      problemOf(await client.send('POST', url, undefined, user.access), 403)
      problemOf(await client.send('POST', `/api/users/${admin.user.id}/password-reset`, undefined, admin.access), 403)
      const sent = await client.send('POST', url, undefined, admin.access)
      assert.equal(sent.statusCode, 202, sent.body)
      const token = tokenIn(await smtp.waitFor(to(user.user.email, /reset your password/)), 'reset-password')
      assert.equal((await client.send('POST', CONFIRM, { token, new_password: NEW_PASSWORD })).statusCode, 204)
      await setFlags(config, user.user.id, { is_active: false })
      const inactive = problemOf(await client.send('POST', url, undefined, admin.access), 400)
      assert.match(inactive.detail + JSON.stringify(inactive.errors), /deactivated/)
    })
  })
}

suite('mail limits and a reset shared through Redis', REDIS_SKIP, () => {
  test('when two instances share Redis, then reset requests count together and a reset clears the shared failure count', async (t) => {
    const smtp = await startSmtp(t)
    const config = await testConfig(t, 'sqlite', {
      mail: { ...loadConfig({}).mail, smtpUrl: smtp.url },
      redisUrl: process.env.TEST_REDIS_URL,
      redisKeyPrefix: testRedisPrefix(t),
      mailRequestLimits: { maxPerEmail: 3, maxPerAddress: 100, windowSeconds: 600 },
      signInLimits: { maxFailuresPerAccount: 2, maxFailuresPerAddress: 1000, windowSeconds: 900 },
    })
    const a = await buildApp(config)
    deferCleanup(t, () => a.close())
    const b = await buildApp(config)
    deferCleanup(t, () => b.close())
    const [first, second] = [new TestClient(a), new TestClient(b)]
    const me = await first.signUp()
    for (let i = 0; i < 2; i++) problemOf(await second.send('POST', '/api/auth/sign-in', { username: me.user.username, password: `wrong-guess-${i}` }), 401)
    problemOf(await first.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }), 429)
    assert.equal((await first.send('POST', RESET, { email: me.user.email })).statusCode, 202)
    assert.equal((await second.send('POST', RESET, { email: me.user.email })).statusCode, 202)
    const token = tokenIn(await smtp.waitFor(to(me.user.email, /reset your password/)), 'reset-password')
    assert.equal((await first.send('POST', RESET, { email: me.user.email })).statusCode, 202)
    problemOf(await second.send('POST', RESET, { email: me.user.email }), 429)
    // A reset on one instance clears the failure count the other instance sees.
    assert.equal((await second.send('POST', CONFIRM, { token, new_password: NEW_PASSWORD })).statusCode, 204)
    assert.equal((await first.send('POST', '/api/auth/sign-in', { username: me.user.username, password: NEW_PASSWORD })).statusCode, 200)
  })
})

test('when the mail links open, then /reset-password and /verify-email serve the page with its headers', async (t) => {
  const { client } = await testApp(t)
  for (const path of ['/reset-password', '/verify-email']) {
    const response = await client.get(path)
    assert.equal(response.statusCode, 200)
    assert.match(String(response.headers['content-type']), /^text\/html/)
    assert.match(response.body, /<script type="module" src="\/app\.js">/)
    assert.match(String(response.headers['content-security-policy']), /frame-ancestors 'none'/)
    assert.equal(response.headers['referrer-policy'], 'no-referrer')
  }
})
