import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { simpleParser } from 'mailparser'
import { buildApp } from '../src/app.js'
import { type Config, loadConfig } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { maskAddress } from '../src/mail/mask.js'
import { backoffMs } from '../src/mail/sender.js'
import { DIALECTS, GOOD_PASSWORD, TestClient, testApp, testConfig, uniqueName } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { POSTGRES_SKIP } from './helpers/postgres.js'
import { callServer, startServer } from './helpers/processes.js'
import { freePort, recipients, startSmtp, tokenIn } from './helpers/smtp.js'
import { suite } from './helpers/suite.js'

const smtpMail = (url: string, settings: Partial<Config['mail']> = {}) => ({ mail: { ...loadConfig({}).mail, smtpUrl: url, retryBaseMs: 50, ...settings } })

/** Polls until `check` returns a value (a hang guard of 20 s, not a timing assertion). */
async function until<T>(what: string, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function outboxOf(t: TestContext, config: Config) {
  const db = createDb(config)
  deferCleanup(t, () => db.destroy())
  return () => db.kysely.selectFrom('mail_outbox').selectAll().orderBy('id').execute()
}

test('when addresses are logged, then they are masked', () => {
  assert.equal(maskAddress('zoe.martin@example.com'), 'z***@example.com')
  assert.equal(maskAddress('Ünal@example.com'), 'Ü***@example.com')
  assert.equal(maskAddress('no-at-sign'), '***')
})

test('when a message keeps failing, then each retry waits twice as long as the one before, at most an hour', () => {
  assert.deepEqual([1, 2, 3, 4].map((attempts) => backoffMs(attempts, 10_000)), [10_000, 20_000, 40_000, 80_000])
  assert.equal(backoffMs(30, 10_000), 3_600_000)
})

for (const dialect of DIALECTS) {
  suite(`mail outbox and sender (${dialect.name})`, dialect.skip, () => {
    test('when SMTP_URL is unset, then each message is an .eml file (0600) in DATA_DIR/outbox, written whole', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const rows = await outboxOf(t, config)
      const me = await client.signUp()
      const directory = join(config.dataDir, 'outbox')
      const [sent] = await until('the row is sent', async () => (await rows()).filter((row) => row.sent_at !== null).length === 1 && rows())
      const files = readdirSync(directory)
      assert.equal(files.length, 1, 'no temporary file left behind')
      const file = join(directory, files[0] as string)
      assert.match(files[0] as string, /^\d{8}T\d{6}Z-[0-9a-f-]{36}\.eml$/)
      assert.equal(statSync(file).mode & 0o777, 0o600)
      const mail = await simpleParser(readFileSync(file))
      assert.equal(recipients(mail), me.user.email)
      assert.equal(mail.messageId, sent?.message_id)
      assert.match(mail.from?.text ?? '', /^"?Portrait"? <no-reply@portrait\.localhost>$/)
      assert.ok(mail.text && mail.html, 'a plain-text and an HTML part')
      assert.ok(tokenIn(mail, 'verify-email'))
      // Sent: the row stays as a record, without the link.
      assert.equal(sent?.text_body, '')
      assert.equal(sent?.html_body, '')
    })

    test('when the SMTP server is down and comes back, then the mail arrives later, exactly once', async (t) => {
      const port = await freePort()
      const { client, config } = await testApp(t, dialect.name, smtpMail(`smtp://127.0.0.1:${port}`))
      const rows = await outboxOf(t, config)
      const me = await client.signUp()
      const failed = await until('two failed attempts', async () => {
        const [row] = await rows()
        return row && row.attempts >= 2 && row.sent_at === null && row.last_error ? row : undefined
      })
      assert.match(failed.last_error ?? '', /ECONNREFUSED|connect/i)
      const smtp = await startSmtp(t, port)
      const mail = await smtp.waitFor((m) => recipients(m) === me.user.email)
      const sent = await until('the row is marked sent', async () => {
        const [row] = await rows()
        return row?.sent_at ? row : undefined
      })
      assert.equal(mail.messageId, sent?.message_id)
      // More sign-ups go out too, and the first message never again.
      await client.signUp()
      await until('the second mail', async () => smtp.messages.length === 2)
      assert.equal(smtp.messages.filter((m) => m.messageId === sent?.message_id).length, 1)
    })

    test('when every attempt fails, then the sender gives up after MAIL_MAX_ATTEMPTS and keeps the row', async (t) => {
      const port = await freePort()
      const { client, config } = await testApp(t, dialect.name, smtpMail(`smtp://127.0.0.1:${port}`, { maxAttempts: 2 }))
      const rows = await outboxOf(t, config)
      await client.signUp()
      const row = await until('given up', async () => {
        const [first] = await rows()
        return first?.gave_up_at ? first : undefined
      })
      assert.equal(row.attempts, 2)
      assert.equal(row.sent_at, null)
      assert.match(row.text_body, /verify-email#token=/)
    })
  })
}

suite('two app instances on one PostgreSQL schema', POSTGRES_SKIP, () => {
  test('when both send from one outbox, then each message arrives once', async (t) => {
    const smtp = await startSmtp(t)
    // Polling often, so that the two senders really compete for the same rows.
    const config = await testConfig(t, 'postgres', smtpMail(smtp.url, { pollIntervalMs: 20 }))
    const a = await buildApp(config)
    deferCleanup(t, () => a.close())
    const b = await buildApp(config)
    deferCleanup(t, () => b.close())
    const clients = [new TestClient(a), new TestClient(b)]
    const count = 24
    const users = await Promise.all(Array.from({ length: count }, (_, i) => (clients[i % 2] as TestClient).signUp({ username: uniqueName('pair') })))
    await until(`${count} mails`, async () => smtp.messages.length >= count)
    await a.close()
    await b.close()
    const ids = smtp.messages.map((mail) => mail.messageId)
    assert.equal(new Set(ids).size, ids.length, 'no message twice')
    assert.deepEqual(smtp.messages.map(recipients).sort(), users.map((user) => user.user.email).sort())
    const rows = await (await outboxOf(t, config))()
    assert.equal(rows.length, count)
    // One attempt each: no row was ever claimed by both instances.
    assert.deepEqual([...new Set(rows.map((row) => [row.attempts, row.sent_at !== null].join()))], ['1,true'])
  })
})

test('when a newcomer runs the server without SMTP_URL, then a reset link lands in data/outbox and the log names the file, not the address', async (t) => {
  const server = await startServer(t)
  const username = uniqueName('newcomer')
  const email = `${username}@example.com`
  assert.equal((await callServer(server, 'POST', '/api/auth/sign-up', { username, email, password: GOOD_PASSWORD })).status, 201)
  assert.equal((await callServer(server, 'POST', '/api/auth/password-reset', { email })).status, 202)
  const written = await until('two files named in the log', async () => {
    const files = [...server.output().matchAll(/"file":"([^"]+\.eml)"/g)].map((match) => match[1] as string)
    return files.length === 2 && files
  })
  const reset = await simpleParser(readFileSync(written[1] as string))
  assert.equal(reset.subject, 'Portrait: reset your password')
  const token = tokenIn(reset, 'reset-password')
  assert.match(reset.text ?? '', new RegExp(`${server.url}/reset-password#token=`))
  const confirmed = await fetch(`${server.url}/api/auth/password-reset/confirm`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token, new_password: 'newcomer-Kettle-77' }),
  })
  assert.equal(confirmed.status, 204)
  assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', { username, password: 'newcomer-Kettle-77' })).status, 200)
  assert.match(server.output(), /"to":"n\*\*\*@example\.com"/)
  assert.ok(!server.output().includes(email), 'the full address is never logged')
  assert.ok(!server.output().includes(token), 'nor the token')
})
