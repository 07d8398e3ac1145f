import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { sql } from 'kysely'
import { simpleParser } from 'mailparser'
import { type Config, loadConfig } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { maskAddress } from '../src/mail/mask.js'
import { DIALECTS, type DialectName, GOOD_PASSWORD, type Session, testApp, uniqueName } from './helpers/app.js'
import { deferCleanup, removeWhenDone } from './helpers/cleanup.js'
import { awayFromStepEdge, enrolTotp } from './helpers/mfa.js'
import { freshSchema } from './helpers/postgres.js'
import { callServer, startServer } from './helpers/processes.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { suite } from './helpers/suite.js'
import { SoftAuthenticator } from './helpers/webauthn.js'

const CLI = join(import.meta.dirname, '..', 'bin', 'portrait.js')
const ORIGIN = 'https://portrait.example'
const NEW_PASSWORD = 'Quartz-lantern-4f9c2e'

/** The real CLI as a process, with stdin closed (no terminal). */
function portrait(args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, REDIS_URL: '', ...env }, encoding: 'utf8', input: '' })
  return { code: result.status, out: result.stdout, err: result.stderr }
}

/** What the CLI needs to reach the database of this app's config. */
function cliEnv(config: Config): Record<string, string> {
  return {
    DATABASE_URL: config.databaseUrl,
    ...(config.databaseSchema ? { DATABASE_SCHEMA: config.databaseSchema } : {}),
    DATA_DIR: config.dataDir,
    MEDIA_ROOT: config.mediaRoot,
  }
}

/** Rows of one statement on the app's database, through a connection of the test's own. */
async function query<R>(config: Config, run: (db: ReturnType<typeof createDb>) => Promise<R>): Promise<R> {
  const db = createDb(config)
  try {
    return await run(db)
  } finally {
    await db.destroy()
  }
}

const sessionsOf = (config: Config, userId: number) =>
  query(config, (db) => db.kysely.selectFrom('sessions').select('id').where('user_id', '=', userId).execute()).then((rows) => rows.length)

/**
 * The notices of what reset-mfa removes mailed to `address`, oldest first, as delivered (an .eml in DATA_DIR/outbox
 * without SMTP_URL, read back whole). The API's own notices (sign-up, enrolment) are left out: the app's sender
 * delivers those in its own time.
 */
async function noticesTo(config: Config, address: string): Promise<{ subject: string; text: string }[]> {
  const rows = await query(config, (db) => db.kysely.selectFrom('mail_outbox').select(['message_id', 'subject', 'sent_at']).where('to_address', '=', address).orderBy('id').execute())
  const notices = rows.filter((row) => /turned off|passkey was removed/.test(row.subject))
  assert.ok(notices.every((row) => row.sent_at !== null), 'delivered')
  const directory = join(config.dataDir, 'outbox')
  const files = existsSync(directory) ? readdirSync(directory) : []
  const mails = await Promise.all(files.map((file) => simpleParser(readFileSync(join(directory, file)))))
  return notices.map((row) => {
    const mail = mails.find((candidate) => candidate.messageId === row.message_id)
    assert.ok(mail, `the .eml of ${row.message_id}`)
    return { subject: mail.subject ?? '', text: mail.text ?? '' }
  })
}

/** The ids the table lists, in order. */
const listedIds = (out: string) => [...out.matchAll(/^(\d+) +\S+ +\S+ +(?:yes|no) /gm)].map((match) => Number(match[1]))

for (const dialect of DIALECTS) {
  suite(`users CLI (${dialect.name})`, dialect.skip, () => {
    test('when users are listed, then the table shows them, found as the API finds them, a page at a time', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      assert.equal(portrait(['create-superuser', '--username', 'root', '--email', 'root@example.com'], { ...env, PORTRAIT_PASSWORD: NEW_PASSWORD }).code, 0)
      const root = await client.send('POST', '/api/auth/sign-in', { username: 'root', password: NEW_PASSWORD })
      const access = root.json().access as string
      for (const fields of [{ username: 'olga_k', first_name: 'Olga' }, { username: 'unal', last_name: 'Ünal' }, { username: 'boris', email: 'b.olgin@example.org' }]) {
        await client.signUp(fields)
      }
      const all = portrait(['users', 'list'], env)
      assert.equal(all.code, 0, all.err)
      const [header, ...rows] = all.out.split('\n')
      assert.match(header as string, /^id +username +email +active +staff +superuser +last login$/)
      assert.match(rows[0] as string, /^1 +root +root@example\.com +yes +yes +yes +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
      assert.match(all.out, /^\d+ +olga_k +olga_k@example\.com +yes +no +no +\d{4}-/m)
      assert.match(all.out, /\n4 shown of 4 user\(s\)\n$/)
      // One and two letters scan, three or more use the index on SQLite: each must list what the API lists.
      for (const search of ['OLG', 'ünal', 'nobody-at-all']) {
        const api = await client.get(`/api/users?search=${encodeURIComponent(search)}&page_size=100`, access)
        const expected = (api.json().results as { id: number }[]).map((user) => user.id)
        const cli = portrait(['users', 'list', '--search', search], env)
        assert.equal(cli.code, 0, cli.err)
        assert.deepEqual(listedIds(cli.out), expected, search)
        if (expected.length === 0) assert.match(cli.out, /^no user matches "nobody-at-all"\n$/)
        if (search === 'OLG') assert.equal(expected.length, 2, 'Olga by name, b.olgin by email')
      }
      const first = portrait(['users', 'list', '--limit', '3'], env)
      const firstIds = listedIds(first.out)
      assert.equal(firstIds.length, 3)
      assert.match(first.out, new RegExp(`3 shown of 4 user\\(s\\); the next ones: --after ${firstIds[2]}\\n$`))
      const next = portrait(['users', 'list', '--limit', '3', '--after', String(firstIds[2])], env)
      assert.equal(listedIds(next.out).length, 1)
      for (const wrong of [['--limit', '1001'], ['--bogus']]) {
        const refused = portrait(['users', 'list', ...wrong], env)
        assert.equal(refused.code, 2, wrong.join(' '))
        assert.match(refused.err, /\n\nusage: portrait users list /)
      }
    })

    test('when set-password is given a password, then every rule applies, argon2id is stored and every session ends', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      const user = await client.signUp()
      await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: GOOD_PASSWORD })
      assert.equal(await sessionsOf(config, user.user.id), 2)
      const weak = portrait(['users', 'set-password', user.user.username], { ...env, PORTRAIT_PASSWORD: '1234567' })
      assert.equal(weak.code, 2)
      // One line per broken rule, each named.
      assert.match(weak.err, /^portrait: password: This password is too short\. [^\n]*\npassword: This password is entirely numeric\.\n$/)
      assert.equal(await sessionsOf(config, user.user.id), 2, 'nothing changed')
      const similar = portrait(['users', 'set-password', user.user.username], { ...env, PORTRAIT_PASSWORD: `${user.user.username}!` })
      assert.equal(similar.code, 2)
      assert.match(similar.err, /too similar to the username/)

      // By email, in another case: the spelling sign-in accepts.
      const set = portrait(['users', 'set-password', user.user.email.toUpperCase()], { ...env, PORTRAIT_PASSWORD: NEW_PASSWORD })
      assert.equal(set.code, 0, set.err)
      assert.match(set.out, new RegExp(`^password of ${user.user.username} \\(id ${user.user.id}\\) set; 2 session\\(s\\) ended`))
      assert.match(set.out, /sign-in failure counts: not cleared \(REDIS_URL is not set/)
      assert.doesNotMatch(set.out + set.err, /Quartz/)
      const hash = await query(config, (db) => db.kysely.selectFrom('users').select('password_hash').where('id', '=', user.user.id).executeTakeFirstOrThrow())
      assert.match(hash.password_hash, /^\$argon2id\$/)
      assert.equal(await sessionsOf(config, user.user.id), 0)
      assert.equal((await client.get('/api/users/me', user.access)).statusCode, 401)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: user.refresh })).statusCode, 401)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: GOOD_PASSWORD })).statusCode, 401)
      const signedIn = await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: NEW_PASSWORD })
      assert.equal(signedIn.statusCode, 200)
      // The refused attempts recorded nothing; the change is in the person's activity, by the operator.
      const changes = (await client.get('/api/users/me/activity', signedIn.json().access)).json().results.filter((entry: { type: string }) => entry.type === 'password_changed')
      assert.deepEqual(changes.map((entry: { details: unknown }) => entry.details), [{ by: 'operator' }])
    })

    test('when USER names nobody, or one user by username and another by email, then the command refuses and id:N decides', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      for (const command of ['set-password', 'unlock']) {
        const unknown = portrait(['users', command, 'nobody@example.com'], { ...env, PORTRAIT_PASSWORD: NEW_PASSWORD })
        assert.equal(unknown.code, 2, command)
        assert.equal(unknown.err, 'portrait: no user has the username or email "nobody@example.com"\n', command)
      }
      assert.equal(portrait(['users', 'activate', 'id:999'], env).err, 'portrait: no user has the id 999\n')
      const address = `${uniqueName('amb')}@example.com`
      const byEmail = await client.signUp({ email: address })
      const byUsername = await client.signUp({ username: address.toUpperCase(), email: `${uniqueName()}@example.com` })
      const ambiguous = portrait(['users', 'deactivate', address], env)
      assert.equal(ambiguous.code, 2)
      assert.match(ambiguous.err, new RegExp(`user ${byUsername.user.id} and the email of user ${byEmail.user.id}: name one as id:${byUsername.user.id} or id:${byEmail.user.id}`))
      const chosen = portrait(['users', 'deactivate', `id:${byEmail.user.id}`], env)
      assert.equal(chosen.code, 0, chosen.err)
      assert.equal((await client.get('/api/users/me', byEmail.access)).statusCode, 401)
      assert.equal((await client.get('/api/users/me', byUsername.access)).statusCode, 200)
      for (const args of [['users', 'deactivate'], ['users', 'unlock', '--all']]) {
        const wrong = portrait(args, env)
        assert.equal(wrong.code, 2, args.join(' '))
        assert.match(wrong.err, /\n\nusage: portrait users /, args.join(' '))
      }
    })

    test('when deactivate and activate run, then sign-in stops and starts again, and the last active superuser is kept unless --force', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      assert.equal(portrait(['create-superuser', '--username', 'root', '--email', 'root@example.com'], { ...env, PORTRAIT_PASSWORD: NEW_PASSWORD }).code, 0)
      const user = await client.signUp()
      const off = portrait(['users', 'deactivate', user.user.username.toUpperCase()], env)
      assert.equal(off.code, 0, off.err)
      assert.equal(off.out, `${user.user.username} (id ${user.user.id}) deactivated; 1 session(s) ended\n`)
      assert.equal(await sessionsOf(config, user.user.id), 0)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: GOOD_PASSWORD })).statusCode, 401)
      assert.match(portrait(['users', 'deactivate', user.user.username], env).out, /was inactive already; 0 session\(s\) ended/)
      assert.match(portrait(['users', 'list', '--search', user.user.username], env).out, new RegExp(`^${user.user.id} +${user.user.username} +\\S+ +no `, 'm'))
      const on = portrait(['users', 'activate', user.user.email], env)
      assert.equal(on.code, 0, on.err)
      assert.match(on.out, /activated: it may sign in again/)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: GOOD_PASSWORD })).statusCode, 200)
      assert.match(portrait(['users', 'activate', user.user.email], env).out, /was active already/)
      assert.equal(portrait(['users', 'activate', 'root', '--force'], env).code, 2)

      const last = portrait(['users', 'deactivate', 'root'], env)
      assert.equal(last.code, 2)
      assert.equal(last.err, 'portrait: root is the last active superuser; deactivating it leaves nobody to act as one (--force does it anyway)\n')
      // With a second active superuser the first may go.
      await query(config, (db) => db.kysely.updateTable('users').set({ is_superuser: dialect.name === 'postgres' ? true : 1 }).where('id', '=', user.user.id).execute())
      assert.equal(portrait(['users', 'deactivate', 'root'], env).code, 0)
      assert.equal(portrait(['users', 'deactivate', user.user.username], env).code, 2, 'now the last one')
      const forced = portrait(['users', 'deactivate', user.user.username, '--force'], env)
      assert.equal(forced.code, 0, forced.err)
      assert.equal((await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: GOOD_PASSWORD })).statusCode, 401)
    })

    test('when reset-mfa runs on an account with TOTP, then the password alone signs in, old sessions end, and it is recorded and mailed', async (t) => {
      await awayFromStepEdge()
      const { config, client } = await testApp(t, dialect.name, { publicUrl: ORIGIN, mail: { ...loadConfig({}).mail, pollIntervalMs: 3_600_000 } })
      const env = cliEnv(config)
      const me = await client.signUp()
      // The passkey first: before a second factor, adding one needs no step-up.
      const authenticator = new SoftAuthenticator(ORIGIN)
      const options = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, me.access)).json()
      assert.equal((await client.send('POST', '/api/users/me/passkeys', { name: 'Laptop', response: authenticator.create(options) }, me.access)).statusCode, 201)
      await enrolTotp(client, me)
      const signIn = () => client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      assert.equal((await signIn()).json().mfa_required, true)

      const reset = portrait(['users', 'reset-mfa', me.user.email.toUpperCase()], env)
      assert.equal(reset.code, 0, reset.err)
      assert.equal(
        reset.out,
        `second factor of ${me.user.username} (id ${me.user.id}) turned off, its recovery codes deleted; 1 session(s) ended; its 1 passkey(s) stay (--passkeys deletes them)\nnotice sent to ${maskAddress(me.user.email)}\n`,
      )
      assert.match(reset.err, /mail written to file.*\.eml/)
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: me.refresh })).statusCode, 401)
      assert.equal((await client.get('/api/users/me', me.access)).statusCode, 401)
      const signedIn = await signIn()
      assert.equal(signedIn.statusCode, 200, signedIn.body)
      assert.equal(signedIn.json().mfa_required, undefined)
      const after = signedIn.json() as { access: string; refresh: string }
      assert.ok(after.access && after.refresh, 'tokens at once')
      assert.deepEqual((await client.get('/api/users/me/mfa', after.access)).json(), { totp: false, recovery_codes_left: 0, methods: [] })
      const rows = await query(config, async (db) => ({
        codes: await db.kysely.selectFrom('mfa_recovery_codes').select('user_id').where('user_id', '=', me.user.id).execute(),
        passkeys: await db.kysely.selectFrom('passkeys').select('name').where('user_id', '=', me.user.id).execute(),
      }))
      assert.deepEqual(rows, { codes: [], passkeys: [{ name: 'Laptop' }] })
      const activity = async (access: string) =>
        ((await client.get('/api/users/me/activity?limit=100', access)).json().results as { type: string; details: unknown }[]).filter((entry) => /^(mfa_disabled|passkey_removed)$/.test(entry.type))
      assert.deepEqual((await activity(after.access)).map(({ type, details }) => ({ type, details })), [{ type: 'mfa_disabled', details: { by: 'operator' } }])
      // The API's "turned off" notice, in the outbox and delivered (an .eml without SMTP_URL), naming no device.
      const notices = await noticesTo(config, me.user.email)
      assert.deepEqual(notices.map((mail) => mail.subject), ['Portrait: two-step verification was turned off'])
      assert.match(notices[0]?.text ?? '', /Two-step verification with an authenticator app was turned off for your account\. An administrator made the change\./)

      // Nothing left to reset: refused in one line, nothing changes (the new session stays).
      const again = portrait(['users', 'reset-mfa', me.user.username], env)
      assert.equal(again.code, 2)
      assert.equal(again.err, `portrait: ${me.user.username} (id ${me.user.id}) has no second factor (no authenticator app is set up): nothing to reset, nothing was changed\n`)
      assert.equal(await sessionsOf(config, me.user.id), 1)
      assert.equal((await noticesTo(config, me.user.email)).length, 1)

      // With --passkeys the passkey goes too, recorded and mailed as the person deleting it would be.
      await enrolTotp(client, after as Session)
      const all = portrait(['users', 'reset-mfa', `id:${me.user.id}`, '--passkeys'], env)
      assert.equal(all.code, 0, all.err)
      assert.match(all.out, /turned off, its recovery codes deleted; 1 session\(s\) ended; 1 passkey\(s\) deleted\nnotice sent to /)
      assert.equal(await query(config, (db) => db.kysely.selectFrom('passkeys').select('id').where('user_id', '=', me.user.id).execute()).then((found) => found.length), 0)
      const last = (await signIn()).json().access as string
      assert.deepEqual(
        (await activity(last)).map(({ type, details }) => ({ type, details })),
        [
          { type: 'passkey_removed', details: { by: 'operator', passkey: 'Laptop' } },
          { type: 'mfa_disabled', details: { by: 'operator' } },
          { type: 'mfa_disabled', details: { by: 'operator' } },
        ],
      )
      assert.deepEqual((await noticesTo(config, me.user.email)).map((mail) => mail.subject).slice(1).sort(), [
        'Portrait: a passkey was removed',
        'Portrait: two-step verification was turned off',
      ])
      const { challenge_id, options: request } = (await client.send('POST', '/api/auth/passkey/options', undefined)).json()
      const byPasskey = await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: authenticator.get(request) })
      assert.equal(byPasskey.statusCode, 401, 'the deleted passkey signs nobody in')
    })

    test('when reset-mfa --passkeys names an account with passkeys but no authenticator app, then its passkeys go and its sessions end', async (t) => {
      const { config, client } = await testApp(t, dialect.name, { publicUrl: ORIGIN, mail: { ...loadConfig({}).mail, pollIntervalMs: 3_600_000 } })
      const env = cliEnv(config)
      const me = await client.signUp()
      const authenticator = new SoftAuthenticator(ORIGIN)
      const options = (await client.send('POST', '/api/users/me/passkeys/registration-options', undefined, me.access)).json()
      assert.equal((await client.send('POST', '/api/users/me/passkeys', { name: 'Stolen', response: authenticator.create(options) }, me.access)).statusCode, 201)
      const reset = portrait(['users', 'reset-mfa', me.user.username, '--passkeys'], env)
      assert.equal(reset.code, 0, reset.err)
      assert.match(reset.out, /^\S+ \(id \d+\) had no authenticator app; 1 session\(s\) ended; 1 passkey\(s\) deleted\nnotice sent to /)
      assert.equal((await client.get('/api/users/me', me.access)).statusCode, 401)
      const { challenge_id, options: request } = (await client.send('POST', '/api/auth/passkey/options', undefined)).json()
      assert.equal((await client.send('POST', '/api/auth/sign-in/passkey', { challenge_id, response: authenticator.get(request) })).statusCode, 401)
      assert.deepEqual((await noticesTo(config, me.user.email)).map((mail) => mail.subject).filter((subject) => /passkey was removed/.test(subject)), ['Portrait: a passkey was removed'])
    })

    test('when reset-mfa cannot record its notice, then nothing of the reset is committed', async (t) => {
      await awayFromStepEdge()
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      const me = await client.signUp()
      await enrolTotp(client, me)
      await query(config, async (db) => {
        if (dialect.name === 'sqlite') {
          await sql.raw(`create trigger fail_notice before insert on mail_outbox when new.subject like '%turned off%' begin select raise(abort, 'notice refused'); end`).execute(db.kysely)
        } else {
          await sql
            .raw(`create function fail_notice() returns trigger language plpgsql as $$ begin if new.subject like '%turned off%' then raise exception 'notice refused'; end if; return new; end $$`)
            .execute(db.kysely)
          await sql.raw('create trigger fail_notice before insert on mail_outbox for each row execute function fail_notice()').execute(db.kysely)
        }
      })
      const failed = portrait(['users', 'reset-mfa', me.user.username], env)
      assert.equal(failed.code, 1, failed.out)
      assert.match(failed.err, /notice refused/)
      // The factor, its codes and the session are all there still; no entry was recorded.
      assert.equal(await sessionsOf(config, me.user.id), 1)
      const status = (await client.get('/api/users/me/mfa', me.access)).json()
      assert.deepEqual([status.totp, status.recovery_codes_left], [true, 10])
      const entries = (await client.get('/api/users/me/activity?limit=100', me.access)).json().results as { type: string }[]
      assert.equal(entries.filter((entry) => entry.type === 'mfa_disabled').length, 0)
    })

    test('when reset-mfa names an account without a second factor, then it refuses with exit code 2 and changes nothing', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const env = cliEnv(config)
      const user = await client.signUp()
      const refused = portrait(['users', 'reset-mfa', user.user.username], env)
      assert.equal(refused.code, 2)
      assert.equal(refused.err, `portrait: ${user.user.username} (id ${user.user.id}) has no second factor (no authenticator app is set up): nothing to reset, nothing was changed\n`)
      const withPasskeys = portrait(['users', 'reset-mfa', user.user.username, '--passkeys'], env)
      assert.equal(withPasskeys.code, 2)
      assert.equal(withPasskeys.err, `portrait: ${user.user.username} (id ${user.user.id}) has no second factor and no passkey: nothing to reset, nothing was changed\n`)
      assert.equal(refused.out, '')
      assert.equal(await sessionsOf(config, user.user.id), 1)
      assert.equal((await client.get('/api/users/me', user.access)).statusCode, 200)
      assert.deepEqual(await noticesTo(config, user.user.email), [])
      for (const args of [['users', 'reset-mfa'], ['users', 'reset-mfa', user.user.username, '--all']]) {
        const wrong = portrait(args, env)
        assert.equal(wrong.code, 2, args.join(' '))
        assert.match(wrong.err, /\n\nusage: portrait users reset-mfa USER \[--passkeys\]/, args.join(' '))
      }
    })

    test('when a user is deactivated beside a running server, then an access token issued before stops working at its next request', async (t) => {
      const cli = await databaseEnv(t, dialect.name)
      const server = await startServer(t, { env: cli })
      const username = uniqueName()
      const signUp = await callServer(server, 'POST', '/api/auth/sign-up', { username, email: `${username}@example.com`, password: GOOD_PASSWORD })
      assert.equal(signUp.status, 201)
      const { access, refresh } = signUp.json
      assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).status, 200)
      const off = portrait(['users', 'deactivate', username], cli)
      assert.equal(off.code, 0, off.err)
      assert.match(off.out, /deactivated; 1 session\(s\) ended/)
      const me = await callServer(server, 'GET', '/api/users/me', undefined, access)
      assert.equal(me.status, 401)
      assert.equal(me.json.type.endsWith('/invalid_token'), true, JSON.stringify(me.json))
      assert.equal((await callServer(server, 'POST', '/api/auth/refresh', { refresh })).status, 401)
      assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD })).status, 401)
      assert.equal(portrait(['users', 'activate', username], cli).code, 0)
      const again = await callServer(server, 'POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD })
      assert.equal(again.status, 200)
      assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, again.json.access)).status, 200)
    })
  })

  suite(`users CLI with Redis and a running server (${dialect.name})`, dialect.skip || REDIS_SKIP, () => {
    test('when an account is locked by failed sign-ins over HTTP, then unlock clears its count and its device\'s, and the right password signs in again', async (t) => {
      const { server, cli } = await lockableServer(t, dialect.name)
      const username = uniqueName()
      const signUp = await callServer(server, 'POST', '/api/auth/sign-up', { username, email: `${username}@example.com`, password: GOOD_PASSWORD })
      const device = signUp.json.device_token as string
      const signIn = (password: string, withDevice = false) =>
        callServer(server, 'POST', '/api/auth/sign-in', { username, password, ...(withDevice ? { device_token: device } : {}) }).then((reply) => reply.status)
      // Failed from elsewhere: the account's count is used up; its own device still has its own count.
      for (let i = 0; i < 3; i += 1) assert.equal(await signIn('wrong-password-1'), 401)
      assert.equal(await signIn(GOOD_PASSWORD), 429)
      // Then failed on the owner's device too: locked everywhere.
      for (let i = 0; i < 3; i += 1) assert.equal(await signIn('wrong-password-2', true), 401)
      assert.equal(await signIn(GOOD_PASSWORD, true), 429)
      const unlocked = portrait(['users', 'unlock', username.toUpperCase()], cli)
      assert.equal(unlocked.code, 0, unlocked.err)
      assert.match(unlocked.out, new RegExp(`^sign-in failure counts of ${username} \\(id \\d+\\) cleared: 2 counter\\(s\\)`))
      assert.equal(await signIn(GOOD_PASSWORD, true), 200)
      assert.equal(await signIn(GOOD_PASSWORD), 200)
      assert.match(portrait(['users', 'unlock', username], cli).out, /cleared: 0 counter\(s\)/, 'the successes gave their attempts back')
    })

    test('when set-password runs on a locked account, then the new password signs in at once', async (t) => {
      const { server, cli } = await lockableServer(t, dialect.name)
      const username = uniqueName()
      assert.equal((await callServer(server, 'POST', '/api/auth/sign-up', { username, email: `${username}@example.com`, password: GOOD_PASSWORD })).status, 201)
      for (let i = 0; i < 3; i += 1) await callServer(server, 'POST', '/api/auth/sign-in', { username, password: 'wrong-password-1' })
      assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD })).status, 429)
      const set = portrait(['users', 'set-password', username], { ...cli, PORTRAIT_PASSWORD: NEW_PASSWORD })
      assert.equal(set.code, 0, set.err)
      assert.match(set.out, /1 session\(s\) ended[\s\S]*sign-in failure counts of .* cleared: 1 counter\(s\)/)
      assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', { username, password: NEW_PASSWORD })).status, 200)
    })
  })
}

/** A database of the test's own for a server process and the CLI beside it: a SQLite file, or a PostgreSQL schema. */
async function databaseEnv(t: TestContext, dialect: DialectName): Promise<Record<string, string>> {
  if (dialect === 'postgres') return { DATABASE_URL: process.env.TEST_DATABASE_URL as string, DATABASE_SCHEMA: await freshSchema(t) }
  const dir = mkdtempSync(join(tmpdir(), 'portrait-users-cli-'))
  removeWhenDone(t, dir)
  return { DATABASE_URL: `sqlite:${join(dir, 'p.db')}`, DATA_DIR: dir, MEDIA_ROOT: join(dir, 'media') }
}

/** A server sharing Redis (a prefix of the test's own) with the CLI, locking an account after three failures. */
async function lockableServer(t: TestContext, dialect: DialectName) {
  const cli = { ...(await databaseEnv(t, dialect)), REDIS_URL: process.env.TEST_REDIS_URL as string, REDIS_KEY_PREFIX: testRedisPrefix(t) }
  const server = await startServer(t, { env: { ...cli, SIGN_IN_MAX_FAILURES_PER_ACCOUNT: '3' } })
  return { server, cli }
}

test('when help is asked of users, then the group and each command answer on stdout with exit code 0; a bare group is a usage error', () => {
  for (const args of [['users', '--help'], ['help', 'users']]) {
    const help = portrait(args, { DATABASE_URL: 'mysql://not-even-read' })
    assert.equal(help.code, 0, args.join(' '))
    assert.match(help.out, /^usage: portrait users <command>/)
    for (const command of ['list', 'set-password', 'unlock', 'deactivate', 'activate', 'reset-mfa']) assert.match(help.out, new RegExp(`^  users ${command}\\b`, 'm'))
    assert.doesNotMatch(help.out, /^ {2}migrate/m, 'the group only')
  }
  for (const command of ['list', 'deactivate']) {
    const help = portrait(['users', command, '--help'], {})
    assert.equal(help.code, 0, command)
    assert.match(help.out, new RegExp(`^usage: portrait users ${command}\\b`))
  }
  assert.match(portrait(['help', 'users', 'unlock'], {}).out, /exit code 3/)
  const bare = portrait(['users'], {})
  assert.equal(bare.code, 2)
  assert.match(bare.err, /^portrait: no users command given\n\nusage: portrait users <command>/)
  const unknown = portrait(['users', 'frobnicate'], {})
  assert.equal(unknown.code, 2)
  assert.match(unknown.err, /^portrait: unknown command: users frobnicate\n\nusage: portrait users <command>/)
})

test('when the database does not answer, then each users command says so in one line and exits 1', () => {
  const env = { DATABASE_URL: 'postgres://portrait:secret-pw@127.0.0.1:1/portrait', PORTRAIT_PASSWORD: NEW_PASSWORD }
  for (const args of [['list'], ['set-password', 'ada'], ['deactivate', 'ada']]) {
    const down = portrait(['users', ...args], env)
    assert.equal(down.code, 1, args.join(' '))
    assert.equal(down.err, 'portrait: the database does not answer (ECONNREFUSED); is PostgreSQL up at 127.0.0.1:1 and DATABASE_URL right?\n', args.join(' '))
    assert.equal(down.out, '')
  }
})

test('when unlock runs without REDIS_URL, or with a Redis that does not answer, then it says why nothing was cleared', async (t) => {
  const { config, client } = await testApp(t)
  const env = cliEnv(config)
  const user = await client.signUp()
  const memory = portrait(['users', 'unlock', user.user.username], env)
  assert.equal(memory.code, 3)
  assert.match(memory.err, /^portrait: REDIS_URL is not set, so the sign-in failure counts live in the memory of the running server, out of reach of this command; nothing was cleared\./)
  const down = portrait(['users', 'unlock', user.user.username], { ...env, REDIS_URL: 'redis://:hidden-pw@127.0.0.1:1' })
  assert.equal(down.code, 1)
  assert.equal(down.err, 'portrait: Redis does not answer at 127.0.0.1:1 (REDIS_URL): the sign-in failure counts were not cleared\n')
  // set-password does its work and warns: the password is what was asked for.
  const set = portrait(['users', 'set-password', user.user.username], { ...env, REDIS_URL: 'redis://127.0.0.1:1', PORTRAIT_PASSWORD: NEW_PASSWORD })
  assert.equal(set.code, 0, set.err)
  assert.match(set.out, /set; 1 session\(s\) ended/)
  assert.match(set.err, /^portrait: Redis does not answer at 127\.0\.0\.1:1 \(REDIS_URL\): the sign-in failure counts were not cleared; try portrait users unlock later\n$/)
})

/** set-password on a terminal (script(1) gives it one), typing each answer once its prompt appears. */
function onTerminal(t: TestContext, env: Record<string, string>, args: string[], answers: string[]): Promise<{ code: number | null; out: string }> {
  const command = [process.execPath, CLI, ...args].map((word) => JSON.stringify(word)).join(' ')
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, REDIS_URL: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  deferCleanup(t, () => child.kill('SIGKILL'))
  let out = ''
  let asked = 0
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk
    const prompts = out.match(/Password( \(again\))?: /g)?.length ?? 0
    while (asked < prompts && asked < answers.length) child.stdin.write(`${answers[asked++]}\r`)
  })
  return new Promise((resolveRun) => child.once('exit', (code) => resolveRun({ code, out })))
}

test('when set-password prompts, then it asks twice without echoing and changes nothing when the answers differ', { skip: !existsSync('/usr/bin/script') && 'needs script(1)' }, async (t) => {
  const { config, client } = await testApp(t)
  const env = cliEnv(config)
  const user = await client.signUp()
  const args = ['users', 'set-password', user.user.username]
  const differ = await onTerminal(t, env, args, [NEW_PASSWORD, `${NEW_PASSWORD}x`])
  assert.equal(differ.code, 2, differ.out)
  assert.match(differ.out, /Password: [\s\S]*Password \(again\): [\s\S]*the two passwords differ; the password was not changed/)
  assert.doesNotMatch(differ.out, /Quartz/, 'nothing typed is echoed')
  assert.equal((await client.get('/api/users/me', user.access)).statusCode, 200)
  const same = await onTerminal(t, env, args, [NEW_PASSWORD, NEW_PASSWORD])
  assert.equal(same.code, 0, same.out)
  assert.match(same.out, /set; 1 session\(s\) ended/)
  assert.equal((await client.send('POST', '/api/auth/sign-in', { username: user.user.username, password: NEW_PASSWORD })).statusCode, 200)
})
