import { parseArgs } from 'node:util'
import pino from 'pino'
import { ActivityRepository } from '../activity/activity.repository.js'
import { ActivityLog } from '../activity/activity.service.js'
import { FactorNotices } from '../activity/factor-notices.js'
import { createFailureStore } from '../auth/failure-store.js'
import { SessionsRepository } from '../auth/sessions.repository.js'
import { SignInLimiter } from '../auth/sign-in-limiter.js'
import { Failed, promptNewPassword, Refused, registerCommand, UsageError, withDb } from '../cli-commands.js'
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { migrateToLatest } from '../db/migrate.js'
import { AppError } from '../errors.js'
import { createMail } from '../mail/mail-setup.js'
import { maskAddress } from '../mail/mask.js'
import { cliLog } from '../mail/send-reset-cli.js'
import { MfaRepository } from '../mfa/mfa.repository.js'
import { MfaReset } from '../mfa/mfa-reset.js'
import { PasskeysRepository } from '../passkeys/passkeys.repository.js'
import { OperatorService } from './operator.service.js'
import { createSearchReader } from './search-reader.js'
import { UsersRepository } from './users.repository.js'
import { toIso } from './users.schemas.js'
import type { UserRow } from './users.table.js'

/** `portrait users …`: an operator's tools for accounts (README "Command line"; exit codes there). */

const USER_HELP = 'USER: a username or an email (any case, as at sign-in), or id:N'

registerCommand({
  name: 'users list',
  args: '[--search TEXT] [--limit N] [--after ID]',
  about: 'users by id: username, email, active, staff, superuser, last login',
  details: `--search: a substring of the username, email or names, as ?search= in the API
--limit: rows shown (default 50, at most 1000); --after ID: the next page`,
  run: (config, args) => listUsers(config, args),
})

registerCommand({
  name: 'users set-password',
  args: 'USER',
  about: 'a new password under every rule; every session of the user ends',
  details: `the password comes from PORTRAIT_PASSWORD or a hidden prompt, asked twice;
the sign-in failure counts are cleared too when REDIS_URL is set
${USER_HELP}`,
  run: (config, args) => setPassword(config, args),
})

registerCommand({
  name: 'users unlock',
  args: 'USER',
  about: "clears the account's sign-in failure counts (in Redis)",
  details: `its own count and its devices'; those of the addresses it was tried from are shared and stay;
without REDIS_URL the counts are in the running server's memory, out of reach: exit code 3
${USER_HELP}`,
  run: (config, args) => unlock(config, args),
})

registerCommand({
  name: 'users deactivate',
  args: 'USER [--force]',
  about: 'no more sign-ins; every session ends at once, its access tokens with it',
  details: `refused for the last active superuser unless --force
${USER_HELP}`,
  run: (config, args) => setActive(config, args, false),
})

registerCommand({
  name: 'users activate',
  args: 'USER',
  about: 'the account may sign in again',
  details: USER_HELP,
  run: (config, args) => setActive(config, args, true),
})

registerCommand({
  name: 'users reset-mfa',
  args: 'USER [--passkeys]',
  about: 'turns off the authenticator app (TOTP) and deletes its recovery codes; every session of the user ends',
  details: `for a person who lost both the app and the recovery codes; the password stays, so it signs in with that alone;
recorded as mfa_disabled (by: operator) and mailed to the account as the API's "turn off" is, delivered now
(SMTP_URL, else an .eml file in DATA_DIR/outbox/; if delivery fails, a running server retries it);
--passkeys: its passkeys are deleted too (each recorded and mailed as passkey_removed), also on an account
with passkeys and no authenticator app (a stolen passkey); without it they stay
refused (exit code 2) for an account with nothing to reset
${USER_HELP}`,
  run: (config, args) => resetMfa(config, args),
})

async function listUsers(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { search: { type: 'string', default: '' }, limit: { type: 'string', default: '50' }, after: { type: 'string' } }, strict: true })
  const limit = wholeNumber(values.limit, '--limit', 1, 1000)
  const after = values.after === undefined ? undefined : wholeNumber(values.after, '--after', 0, Number.MAX_SAFE_INTEGER)
  if ([...values.search].length > 200) throw new UsageError('--search takes at most 200 characters')
  const page = await withDb(config, async (db) => {
    await migrateToLatest(db.kysely)
    // The staff list's own query (same search, same indexes), through the same reader as the server's.
    const reader = createSearchReader(db, config.databaseUrl)
    try {
      return await new UsersRepository(db.dialect).search(db.kysely, reader, {
        search: values.search.trim(),
        limit,
        offset: 0,
        after,
        exactCountLimit: config.usersExactCountLimit,
      })
    } finally {
      await reader.close()
    }
  })
  if (page.rows.length === 0) {
    console.log(values.search.trim() ? `no user matches ${JSON.stringify(values.search.trim())}` : after === undefined ? 'no users' : `no users after id ${after}`)
    return
  }
  console.log(table(page.rows))
  const total = page.countExact ? `${page.count}` : `more than ${page.count}`
  const last = page.rows[page.rows.length - 1] as UserRow
  const matching = values.search.trim() ? ' matching' : ''
  console.log(`\n${page.rows.length} shown of ${total}${matching} user(s)${page.more ? `; the next ones: --after ${last.id}` : ''}`)
}

async function setPassword(config: Config, args: string[]): Promise<void> {
  // The user is looked up before the password is asked for: a typo in USER fails at once.
  const user = await operate(config, oneUser(args), async (operator, found) => {
    const password = process.env.PORTRAIT_PASSWORD ?? (await promptNewPassword('the password was not changed'))
    const { sessionsEnded } = await operator.setPassword(found, password)
    console.log(`password of ${describe(found)} set; ${sessionsEnded} session(s) ended: it signs in again everywhere`)
    if (!found.is_active) console.log(`the account is inactive: portrait users activate ${printable(found.username)} lets it sign in`)
    return found
  })
  if (!config.redisUrl) {
    console.log(`sign-in failure counts: not cleared (${IN_SERVER_MEMORY})`)
    return
  }
  // The password is set whatever happens to the counts: failing to clear them is a warning, not a failed command.
  try {
    console.log(await clearCounts(config, config.redisUrl, user))
  } catch (error) {
    if (!(error instanceof Failed)) throw error
    console.error(`portrait: ${error.message}; try portrait users unlock later`)
  }
}

async function unlock(config: Config, args: string[]): Promise<void> {
  // The lookup comes first even without Redis, so that a wrong USER is reported as such.
  const user = await operate(config, oneUser(args), async (_operator, found) => found)
  if (!config.redisUrl) {
    throw new Failed(`${IN_SERVER_MEMORY}; nothing was cleared. They end by themselves after SIGN_IN_FAILURE_WINDOW, or all at once when the server restarts.`, 3)
  }
  console.log(await clearCounts(config, config.redisUrl, user))
}

const IN_SERVER_MEMORY = 'REDIS_URL is not set, so the sign-in failure counts live in the memory of the running server, out of reach of this command'

/** Clears the user's sign-in failure counts in Redis; the line that says so. */
async function clearCounts(config: Config, redisUrl: string, user: UserRow): Promise<string> {
  const store = await createFailureStore(config)
  try {
    const cleared = await new SignInLimiter(store, config.signInLimits, config.signUpLimits).forgetAccount(user.id)
    return `sign-in failure counts of ${describe(user)} cleared: ${cleared} counter(s), the account's and its devices' (those of the addresses it was tried from are every account's there and stay)`
  } catch (error) {
    if (error instanceof AppError && error.code === 'service_unavailable') {
      throw new Failed(`Redis does not answer at ${redisAddress(redisUrl)} (REDIS_URL): the sign-in failure counts were not cleared`)
    }
    throw error
  } finally {
    await store.close?.()
  }
}

async function setActive(config: Config, args: string[], active: boolean): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { force: { type: 'boolean', default: false } }, allowPositionals: true, strict: true })
  if (active && values.force) throw new UsageError('--force is only for deactivate')
  const login = oneUser(positionals)
  await operate(config, login, async (operator, user) => {
    const { changed, sessionsEnded } = await operator.setActive(user, active, { force: values.force })
    if (active) console.log(changed ? `${describe(user)} activated: it may sign in again` : `${describe(user)} was active already`)
    else console.log(`${describe(user)} ${changed ? 'deactivated' : 'was inactive already'}; ${sessionsEnded} session(s) ended`)
  })
}

async function resetMfa(config: Config, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { passkeys: { type: 'boolean', default: false } }, allowPositionals: true, strict: true })
  await operate(config, oneUser(positionals), async (_operator, user, db, activity) => {
    const mail = createMail(config, db, cliLog())
    try {
      const reset = new MfaReset({
        db,
        mfa: new MfaRepository(db.dialect),
        sessions: new SessionsRepository(db),
        passkeys: new PasskeysRepository(db.dialect),
        notices: new FactorNotices({ activity, outbox: mail.outbox, wake: () => {} }),
      })
      const done = await reset.reset(user, { passkeys: values.passkeys }).catch((error: unknown) => {
        if (error instanceof AppError && error.code === 'mfa_not_enrolled') {
          const what = values.passkeys ? 'no second factor and no passkey' : 'no second factor (no authenticator app is set up)'
          throw new Refused(`${describe(user)} has ${what}: nothing to reset, nothing was changed`)
        }
        throw error
      })
      const passkeys = values.passkeys
        ? `; ${done.passkeysRemoved.length} passkey(s) deleted`
        : done.passkeysKept
          ? `; its ${done.passkeysKept} passkey(s) stay (--passkeys deletes them)`
          : ''
      const factor = done.factorRemoved ? `second factor of ${describe(user)} turned off, its recovery codes deleted` : `${describe(user)} had no authenticator app`
      console.log(`${factor}; ${done.sessionsEnded} session(s) ended${passkeys}`)
      // Delivered now, as send-reset does; this reset's notices are the newest rows to the address.
      await mail.sender.runOnce()
      const notices = (done.factorRemoved ? 1 : 0) + done.passkeysRemoved.length
      const rows = await db.kysely.selectFrom('mail_outbox').select('sent_at').where('to_address', '=', user.email).orderBy('id', 'desc').limit(notices).execute()
      const address = maskAddress(user.email)
      console.log(
        rows.every((row) => row.sent_at)
          ? `notice sent to ${address}`
          : `notice to ${address} recorded, not delivered yet: a running server retries it`,
      )
    } finally {
      await mail.sender.stop()
    }
  })
}

/** The one USER argument. */
function oneUser(positionals: string[]): string {
  if (positionals.length !== 1 || (positionals[0] as string).startsWith('-')) throw new UsageError(positionals.length ? 'give one USER (a username, an email or id:N)' : 'USER is missing')
  return positionals[0] as string
}

/** Opens the database, finds the user and runs `work`; the service's refusals become the command's. */
async function operate<T>(
  config: Config,
  login: string,
  work: (operator: OperatorService, user: UserRow, db: Db, activity: ActivityLog) => Promise<T>,
): Promise<T> {
  try {
    return await withDb(config, async (db: Db) => {
      await migrateToLatest(db.kysely)
      // Only `record` is used (in the change's transaction): nothing detached, so nothing to log.
      const activity = new ActivityLog({ db, repository: new ActivityRepository(db), retentionSeconds: config.activityRetentionSeconds, log: pino({ enabled: false }) })
      const operator = new OperatorService({ db, users: new UsersRepository(db.dialect), sessions: new SessionsRepository(db), config, activity })
      return await work(operator, await operator.find(login), db, activity)
    })
  } catch (error) {
    if (!(error instanceof AppError) || !['not_found', 'validation_failed', 'forbidden'].includes(error.code)) throw error
    // One line per problem: `password: This password is too short. …`.
    const lines = Object.entries(error.errors ?? {}).flatMap(([field, messages]) => messages.map((message) => (field === 'user' ? message : `${field}: ${message}`)))
    throw new Refused(lines.length ? lines.join('\n') : error.message)
  }
}

function describe(user: UserRow): string {
  return `${printable(user.username)} (id ${user.id})`
}

function table(rows: UserRow[]): string {
  const yes = (flag: unknown) => (flag ? 'yes' : 'no')
  const lines = [
    ['id', 'username', 'email', 'active', 'staff', 'superuser', 'last login'],
    ...rows.map((row) => [
      String(row.id),
      printable(row.username),
      printable(row.email),
      yes(row.is_active),
      yes(row.is_staff),
      yes(row.is_superuser),
      toIso(row.last_login)?.replace(/\.\d+Z$/, 'Z') ?? 'never',
    ]),
  ]
  const widths = (lines[0] as string[]).map((_, column) => Math.max(...lines.map((line) => [...(line[column] as string)].length)))
  const pad = (cell: string, column: number) => cell + ' '.repeat((widths[column] as number) - [...cell].length)
  return lines.map((line) => line.map(pad).join('  ').trimEnd()).join('\n')
}

// A name imported from elsewhere may hold anything: no control character reaches the operator's terminal.
const printable = (text: string) => text.replace(/[\p{Cc}\p{Cf}]/gu, '?')

function wholeNumber(text: string, option: string, min: number, max: number): number {
  const value = /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= min && value <= max)) throw new UsageError(`${option} takes a whole number from ${min} to ${max}`)
  return value
}

/** host:port of a Redis URL, never its password. */
function redisAddress(url: string): string {
  try {
    return new URL(url).host || url
  } catch {
    return 'REDIS_URL'
  }
}
