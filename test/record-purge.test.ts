import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { AccountMail, type AccountMailDeps } from '../src/account-tokens/account-mail.service.js'
import { AccountTokensRepository } from '../src/account-tokens/account-tokens.repository.js'
import type { Config } from '../src/config.js'
import { createDb, type Db } from '../src/db/database.js'
import { createMail } from '../src/mail/mail-setup.js'
import { MfaRepository } from '../src/mfa/mfa.repository.js'
import { MfaService, type MfaServiceDeps } from '../src/mfa/mfa.service.js'
import { PasskeysRepository } from '../src/passkeys/passkeys.repository.js'
import { PasskeysService, type PasskeysServiceDeps } from '../src/passkeys/passkeys.service.js'
import { DIALECTS, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { query } from './helpers/db.js'
import { suite } from './helpers/suite.js'

// Used or expired account tokens, delivered or given-up mail and expired sign-in challenges are of no use after
// a while: periodic batched purges delete them, so these tables do not grow with every request for ever.

const HOUR = 3_600_000
const DAY = 24 * HOUR
const at = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString()

type Row = Record<string, string | number | null>

/** Inserts `rows` (all with the same columns) into `table`: one transaction on SQLite, 200-row statements on PostgreSQL. */
async function insertRows(config: Config, table: string, rows: Row[]): Promise<void> {
  const columns = Object.keys(rows[0] ?? {})
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length))
    try {
      const insert = db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`)
      db.transaction(() => {
        for (const row of rows) insert.run(...columns.map((column) => row[column]))
      })()
    } finally {
      db.close()
    }
    return
  }
  for (let start = 0; start < rows.length; start += 200) {
    const chunk = rows.slice(start, start + 200)
    const tuples = chunk.map(() => `(${columns.map(() => '?').join(', ')})`).join(', ')
    await query(
      config,
      `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples}`,
      chunk.flatMap((row) => columns.map((column) => row[column])),
    )
  }
}

async function keys(config: Config, table: string, key: string, prefix: string): Promise<string[]> {
  const rows = await query<{ key: string }>(config, `SELECT ${key} AS key FROM ${table} WHERE ${key} LIKE ?`, [`${prefix}%`])
  return rows.map((row) => row.key).sort()
}

const token = (hash: string, userId: number, expiresAt: string, usedAt: string | null): Row => ({
  token_hash: hash,
  purpose: 'password_reset',
  user_id: userId,
  binding: 'b',
  created_at: at(-3 * DAY),
  expires_at: expiresAt,
  used_at: usedAt,
})

const outboxRow = (messageId: string, fields: { sent_at?: string; gave_up_at?: string; next_attempt_at?: string }): Row => ({
  message_id: messageId,
  to_address: 'someone@example.com',
  subject: 'Subject',
  text_body: '',
  html_body: '',
  created_at: at(-40 * DAY),
  next_attempt_at: fields.next_attempt_at ?? at(-40 * DAY),
  attempts: 1,
  sent_at: fields.sent_at ?? null,
  gave_up_at: fields.gave_up_at ?? null,
})

const mfaChallenge = (hash: string, userId: number, expiresAt: string): Row => ({ id_hash: hash, user_id: userId, created_at: at(-DAY), expires_at: expiresAt })

const passkeyChallenge = (id: string, userId: number | null, expiresAt: string): Row => ({
  id,
  challenge_hash: `hash-${id}`,
  purpose: 'sign-in',
  user_id: userId,
  user_handle: null,
  created_at: at(-DAY),
  expires_at: expiresAt,
})

/** The services as the app builds them, with what their purges use: the database and the repositories. */
function purgers(t: TestContext, db: Db, config: Config, log: Parameters<typeof createMail>[2]) {
  const accountMail = new AccountMail({ db, tokens: new AccountTokensRepository() } as Partial<AccountMailDeps> as AccountMailDeps)
  const mfa = new MfaService({ db, mfa: new MfaRepository(db.dialect) } as Partial<MfaServiceDeps> as MfaServiceDeps)
  const passkeys = new PasskeysService({ db, passkeys: new PasskeysRepository(db.dialect) } as Partial<PasskeysServiceDeps> as PasskeysServiceDeps)
  const mail = createMail(config, db, log)
  deferCleanup(t, () => mail.transport.close())
  return { accountMail, mfa, passkeys, sender: mail.sender }
}

for (const dialect of DIALECTS) {
  suite(`purge of used tokens, old mail and expired challenges (${dialect.name})`, dialect.skip, () => {
    test('when tokens, mail and challenges are past their time, then the running app purges them and keeps the useful ones', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { activityPurgeIntervalMs: 50 })
      const owner = await client.signUp()
      const id = owner.user.id
      await insertRows(config, 'account_tokens', [
        token('t-gone-expired', id, at(-2 * DAY), null),
        token('t-gone-used', id, at(2 * DAY), at(-2 * DAY)),
        token('t-kept-expired-recently', id, at(-HOUR), null),
        token('t-kept-used-recently', id, at(HOUR), at(-HOUR)),
        token('t-kept-pending', id, at(HOUR), null),
      ])
      await insertRows(config, 'mail_outbox', [
        outboxRow('m-gone-sent', { sent_at: at(-8 * DAY) }),
        outboxRow('m-kept-sent-recently', { sent_at: at(-DAY) }),
        // Due later, so the app's sender leaves it pending.
        outboxRow('m-kept-pending', { next_attempt_at: at(HOUR) }),
        outboxRow('m-kept-given-up-recently', { gave_up_at: at(-8 * DAY) }),
        outboxRow('m-gone-given-up', { gave_up_at: at(-31 * DAY) }),
      ])
      await insertRows(config, 'mfa_challenges', [mfaChallenge('c-gone', id, at(-1000)), mfaChallenge('c-kept', id, at(5 * 60_000))])
      await insertRows(config, 'passkey_challenges', [
        passkeyChallenge('p-gone-user', id, at(-1000)),
        passkeyChallenge('p-gone-anonymous', null, at(-1000)),
        passkeyChallenge('p-kept', null, at(5 * 60_000)),
      ])

      const gone = async () =>
        [
          ...(await keys(config, 'account_tokens', 'token_hash', 't-gone')),
          ...(await keys(config, 'mail_outbox', 'message_id', 'm-gone')),
          ...(await keys(config, 'mfa_challenges', 'id_hash', 'c-gone')),
          ...(await keys(config, 'passkey_challenges', 'id', 'p-gone')),
        ].length
      const deadline = Date.now() + 10_000
      while ((await gone()) > 0) {
        if (Date.now() > deadline) throw new Error('rows past their time were never purged')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }

      assert.deepEqual(await keys(config, 'account_tokens', 'token_hash', 't-'), ['t-kept-expired-recently', 't-kept-pending', 't-kept-used-recently'])
      assert.deepEqual(await keys(config, 'mail_outbox', 'message_id', 'm-'), ['m-kept-given-up-recently', 'm-kept-pending', 'm-kept-sent-recently'])
      assert.deepEqual(await keys(config, 'mfa_challenges', 'id_hash', 'c-'), ['c-kept'])
      assert.deepEqual(await keys(config, 'passkey_challenges', 'id', 'p-'), ['p-kept'])
      // The account's own verification token (live) and its sign-up mail are still there.
      const own = await query<{ n: number }>(config, 'SELECT COUNT(*) AS n FROM account_tokens WHERE user_id = ? AND token_hash NOT LIKE ?', [id, 't-%'])
      assert.equal(Number(own[0]?.n), 1)
    })

    test('when thousands of rows are past their time, then one purge of each removes them all in batches and no useful one', async (t) => {
      const { app, client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const id = owner.user.id
      const n = 1234
      const many = <T>(make: (i: number) => T) => Array.from({ length: n }, (_, i) => make(i + 1))
      await insertRows(config, 'account_tokens', [
        ...many((i) => token(`t-gone-expired-${i}`, id, at(-2 * DAY - i * 1000), null)),
        ...many((i) => token(`t-gone-used-${i}`, id, at(2 * DAY), at(-2 * DAY - i * 1000))),
        token('t-kept-pending', id, at(HOUR), null),
        token('t-kept-used-recently', id, at(HOUR), at(-HOUR)),
      ])
      await insertRows(config, 'mail_outbox', [
        ...many((i) => outboxRow(`m-gone-sent-${i}`, { sent_at: at(-8 * DAY - i * 1000) })),
        ...many((i) => outboxRow(`m-gone-given-up-${i}`, { gave_up_at: at(-31 * DAY - i * 1000) })),
        outboxRow('m-kept-pending', { next_attempt_at: at(HOUR) }),
        outboxRow('m-kept-sent-recently', { sent_at: at(-DAY) }),
        outboxRow('m-kept-given-up-recently', { gave_up_at: at(-8 * DAY) }),
      ])
      await insertRows(config, 'mfa_challenges', [...many((i) => mfaChallenge(`c-gone-${i}`, id, at(-1000 - i))), mfaChallenge('c-kept', id, at(5 * 60_000))])
      await insertRows(config, 'passkey_challenges', [...many((i) => passkeyChallenge(`p-gone-${i}`, null, at(-1000 - i))), passkeyChallenge('p-kept', id, at(5 * 60_000))])

      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      const { accountMail, mfa, passkeys, sender } = purgers(t, db, config, app.log)
      assert.equal(await accountMail.purgeTokens(new Date(), 500), 2 * n)
      assert.equal(await sender.purge(new Date(), 500), 2 * n)
      assert.equal(await mfa.purgeExpiredChallenges(new Date(), 500), n)
      assert.equal(await passkeys.purgeExpiredChallenges(new Date(), 500), n)

      assert.deepEqual(await keys(config, 'account_tokens', 'token_hash', 't-'), ['t-kept-pending', 't-kept-used-recently'])
      assert.deepEqual(await keys(config, 'mail_outbox', 'message_id', 'm-'), ['m-kept-given-up-recently', 'm-kept-pending', 'm-kept-sent-recently'])
      assert.deepEqual(await keys(config, 'mfa_challenges', 'id_hash', 'c-'), ['c-kept'])
      assert.deepEqual(await keys(config, 'passkey_challenges', 'id', 'p-'), ['p-kept'])
      // Nothing left to do: a second run removes nothing.
      assert.equal(await accountMail.purgeTokens(new Date(), 500), 0)
      assert.equal(await sender.purge(new Date(), 500), 0)
      assert.equal(await mfa.purgeExpiredChallenges(new Date(), 500), 0)
      assert.equal(await passkeys.purgeExpiredChallenges(new Date(), 500), 0)
    })

    test('when the schema is migrated, then each purge finds its rows by an index, not by scanning the table', async (t) => {
      const { config } = await testApp(t, dialect.name)
      // The statements the repositories run, one batch each.
      const purges: { table: string; key: string; condition: string; index: string }[] = [
        { table: 'account_tokens', key: 'token_hash', condition: 'expires_at < ?', index: 'account_tokens_expires_at_idx' },
        { table: 'account_tokens', key: 'token_hash', condition: 'used_at < ?', index: 'account_tokens_used_at_idx' },
        { table: 'mail_outbox', key: 'id', condition: 'sent_at < ?', index: 'mail_outbox_sent_at_idx' },
        { table: 'mail_outbox', key: 'id', condition: 'gave_up_at < ?', index: 'mail_outbox_gave_up_at_idx' },
        { table: 'mfa_challenges', key: 'id_hash', condition: 'expires_at <= ?', index: 'mfa_challenges_expires_at_idx' },
        { table: 'passkey_challenges', key: 'id', condition: 'expires_at <= ?', index: 'passkey_challenges_expires_at_idx' },
      ]
      for (const { table, key, condition, index } of purges) {
        const statement = `DELETE FROM ${table} WHERE ${key} IN (SELECT ${key} FROM ${table} WHERE ${condition} LIMIT 500)`
        const plan = await explain(config, statement, [at(0)])
        assert.ok(plan.includes(index), `${table} ${condition}: ${plan}`)
      }
    })
  })
}

/** The query plan of `statement` as text; on PostgreSQL with sequential scans priced out, so a usable index is used however small the table. */
async function explain(config: Config, statement: string, values: unknown[]): Promise<string> {
  if (config.databaseUrl.startsWith('sqlite:')) {
    const rows = await query<{ detail: string }>(config, `EXPLAIN QUERY PLAN ${statement}`, values)
    return rows.map((row) => row.detail).join('\n')
  }
  const client = new pg.Client({ connectionString: config.databaseUrl, options: `-c search_path=${config.databaseSchema}` })
  await client.connect()
  try {
    await client.query('SET enable_seqscan = off')
    let n = 0
    const result = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN ${statement.replace(/\?/g, () => `$${++n}::timestamptz`)}`,
      values,
    )
    return result.rows.map((row) => row['QUERY PLAN']).join('\n')
  } finally {
    await client.end()
  }
}
