import { randomInt } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { type Kysely, sql } from 'kysely'
import type { ActivityLog } from '../activity/activity.service.js'
import type { ClientInfo } from '../activity/client.js'
import { hashPassword, passwordProblems } from '../auth/passwords.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { SignInLimiter } from '../auth/sign-in-limiter.js'
import { hashSecret, randomToken, sameHash } from '../auth/tokens.js'
import type { Config } from '../config.js'
import type { Database, Db } from '../db/database.js'
import { validationError } from '../errors.js'
import { PURGE_BATCH_SIZE, purgeInBatches } from '../jobs/batched-purge.js'
import type { OutboxRepository } from '../mail/outbox.repository.js'
import { emailChangedMail, emailVerificationMail, passwordChangedMail, passwordResetMail } from '../mail/templates.js'
import { comparable } from '../users/field-rules.js'
import type { UsersRepository } from '../users/users.repository.js'
import type { UserRow } from '../users/users.table.js'
import type { AccountTokensRepository } from './account-tokens.repository.js'
import type { TokenPurpose } from './account-tokens.table.js'
import type { MailRequestLimiter } from './mail-request-limiter.js'

type Executor = Kysely<Database>

export interface AccountMailDeps {
  db: Db
  users: UsersRepository
  sessions: SessionsRepository
  tokens: AccountTokensRepository
  outbox: OutboxRepository
  /** Asks the sender to deliver now; called after each commit that recorded mail. */
  wake: () => void
  limiter: SignInLimiter
  mailLimiter: MailRequestLimiter
  /** Where the links point: PUBLIC_URL, else http://HOST:PORT (the bound port when PORT=0). */
  linkBase: () => string
  log: FastifyBaseLogger
  /** Records `password_reset` in the reset's transaction (absent in the CLI, which confirms no reset). */
  activity?: ActivityLog
  config: Pick<Config, 'passwordHashCost' | 'passwordResetTtlSeconds' | 'emailVerificationTtlSeconds'>
}

/** The work a reset request causes after its reply starts within this many milliseconds, at random. */
const RESET_WORK_JITTER_MS = 1000

/** A used or expired token is kept this long after, so an operator can still see what happened to a link. */
export const TOKEN_KEPT_MS = 86_400_000

/** What binds a reset token to the password it was issued for: any change of the password voids the token. */
const passwordFingerprint = (passwordHash: string) => hashSecret(`portrait-reset:${passwordHash}`)

const invalidToken = () => validationError({ token: ['This link is invalid, expired or already used. Ask for a new one.'] })

/**
 * Password reset and email verification: the tokens (random 32 bytes, stored as SHA-256, single-use, expiring,
 * bound), the mails that carry them and the notices of security changes. Every mail is recorded in the
 * transaction of the change it tells about (the outbox), and delivered by the sender after the commit.
 */
export class AccountMail {
  /** Reset requests recorded after their reply (see requestReset); awaited on close. */
  private readonly pending = new Set<Promise<void>>()

  constructor(private readonly deps: AccountMailDeps) {}

  /**
   * POST /api/auth/password-reset: counts the request against the limits (429), and that is all the reply waits
   * for. Finding the account and recording the token and its mail start once `replied` settles (the response
   * has been handed to the socket) and a random delay, so a known and an unknown address answer the same thing
   * after the same work.
   * The database is asked to answer first (the same statement for every address): while it is down the client
   * gets 503 and asks again later, rather than a 202 for a mail that could never be recorded.
   */
  async requestReset(email: string, address: string, replied: Promise<unknown>): Promise<void> {
    const login = comparable(email.trim())
    await sql`SELECT 1`.execute(this.deps.db.kysely)
    await this.deps.mailLimiter.reserve('reset', login, address)
    const work = replied
      // At a random moment of the next second: a request sent right after this reply (a prober's) no longer
      // meets the lookup and the writes of a known address.
      .then(() => new Promise((resume) => setTimeout(resume, randomInt(RESET_WORK_JITTER_MS))))
      .then(() => this.recordResetFor(login))
      .catch((error: unknown) => this.deps.log.warn({ err: error }, 'could not record a password reset mail'))
      .finally(() => this.pending.delete(work))
    this.pending.add(work)
  }

  /** Waits for reset requests still being recorded (app close, before the sender stops). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending])
  }

  /**
   * Deletes the tokens that expired, or were used (or voided), more than TOKEN_KEPT_MS before `now`, in batches;
   * returns how many. Neither kind is accepted again, and a live token is never touched.
   */
  async purgeTokens(now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
    const { db, tokens } = this.deps
    const before = new Date(now.getTime() - TOKEN_KEPT_MS).toISOString()
    const expired = await purgeInBatches((limit) => tokens.deleteExpiredBatch(db.kysely, before, limit), batchSize)
    return expired + (await purgeInBatches((limit) => tokens.deleteUsedBatch(db.kysely, before, limit), batchSize))
  }

  private async recordResetFor(login: string): Promise<void> {
    const { db, users } = this.deps
    const user = await users.findByLogin(db.kysely, 'email_lower', login)
    if (!user?.is_active) return
    await db.kysely.transaction().execute((trx) => this.issueReset(trx, user))
    this.deps.wake()
  }

  /** A superuser (POST /api/users/{id}/password-reset) or an operator (CLI) sends someone a reset link. */
  async sendResetFor(user: UserRow, address?: string): Promise<void> {
    if (!user.is_active) throw validationError({ non_field_errors: ['This account is deactivated: activate it before sending a reset link.'] })
    if (address !== undefined) await this.deps.mailLimiter.reserve('reset', comparable(user.email), address)
    await this.deps.db.kysely.transaction().execute((trx) => this.issueReset(trx, user))
    this.deps.wake()
  }

  /** An email change mails its new address a verification link: counted as a new verification link for that address. */
  async reserveEmailChange(newEmail: string): Promise<void> {
    await this.deps.mailLimiter.reserve('verification', comparable(newEmail), undefined)
  }

  /** A new verification link for the user's own address (POST /api/users/{id}/verify-email); false when it is verified already. */
  async resendVerification(user: UserRow, address: string): Promise<boolean> {
    if (user.email_verified) return false
    await this.deps.mailLimiter.reserve('verification', comparable(user.email), address)
    await this.deps.db.kysely.transaction().execute((trx) => this.issueVerification(trx, user))
    this.deps.wake()
    return true
  }

  /**
   * POST /api/auth/password-reset/confirm: a live reset token for an active account whose password has not
   * changed since, and a new password that follows every rule. In one transaction: the token used up (and the
   * user's other reset links), the password replaced, every session ended, a notice recorded. Then the account's
   * sign-in failures are cleared. Any refusal changes nothing. The activity entry is recorded with the change.
   */
  async confirmReset(token: string, newPassword: string, client: ClientInfo): Promise<void> {
    const { db, users, tokens, sessions, outbox, activity, config } = this.deps
    const now = new Date()
    const { row, user } = await this.liveToken(token, 'password_reset', now)
    if (!user.is_active || !sameHash(row.binding, passwordFingerprint(user.password_hash))) throw invalidToken()
    const problems = passwordProblems(newPassword, { username: user.username, email: user.email })
    if (problems.length > 0) throw validationError({ new_password: problems })
    const hash = await hashPassword(newPassword, config.passwordHashCost)
    await db.kysely.transaction().execute(async (trx) => {
      if (!(await tokens.consume(trx, row.token_hash, now))) throw invalidToken()
      // Only over the password the token was issued for: a change committed meanwhile voids the token.
      if (!(await users.upgradePasswordHash(trx, user.id, user.password_hash, hash))) throw invalidToken()
      await tokens.voidAllOfUser(trx, user.id, 'password_reset', now)
      await sessions.deleteAllOfUser(trx, user.id)
      await outbox.record(trx, passwordChangedMail(user.email, user.username, 'reset'))
      await activity?.record(trx, { userId: user.id, type: 'password_reset', client })
    })
    this.deps.wake()
    await this.deps.limiter.forgetAccount(user.id).catch((error: unknown) => this.deps.log.warn({ err: error }, 'could not clear the sign-in failures after a reset'))
  }

  /** POST /api/auth/verify-email: a live verification token for the address the account still has. */
  async verifyEmail(token: string): Promise<void> {
    const { db, users, tokens } = this.deps
    const now = new Date()
    const { row, user } = await this.liveToken(token, 'email_verification', now)
    if (row.binding !== user.email_lower) throw invalidToken()
    await db.kysely.transaction().execute(async (trx) => {
      if (!(await tokens.consume(trx, row.token_hash, now))) throw invalidToken()
      const current = await users.findByIdForUpdate(trx, user.id)
      if (current?.email_lower !== row.binding) throw invalidToken()
      if (!current.email_verified) await users.update(trx, user.id, { email_verified: 1 })
    })
  }

  // --- mail recorded inside other stories' transactions ---------------------------------------------------------

  /** Sign-up: a verification link to the new account's address. */
  async signedUp(executor: Executor, user: UserRow): Promise<void> {
    await this.issueVerification(executor, user)
  }

  /**
   * A changed address: a verification link to the new one, a notice to the old one. Every link mailed before
   * goes void, reset links included: they were sent to an address the account no longer has (and a
   * verification link for it would come back to life if the address were changed back).
   */
  async emailChanged(executor: Executor, before: UserRow, after: UserRow): Promise<void> {
    const now = new Date()
    await this.deps.tokens.voidAllOfUser(executor, after.id, 'email_verification', now)
    await this.deps.tokens.voidAllOfUser(executor, after.id, 'password_reset', now)
    await this.issueVerification(executor, after)
    await this.deps.outbox.record(executor, emailChangedMail(before.email, after.username, after.email))
  }

  /** POST /api/users/{id}/password: a notice to the account's address. */
  async passwordChanged(executor: Executor, user: UserRow): Promise<void> {
    await this.deps.outbox.record(executor, passwordChangedMail(user.email, user.username, 'changed'))
  }

  /** After the transaction that recorded mail has committed: deliver now. */
  committed(): void {
    this.deps.wake()
  }

  private async issueReset(executor: Executor, user: UserRow): Promise<void> {
    const ttl = this.deps.config.passwordResetTtlSeconds
    const token = await this.issue(executor, user, 'password_reset', passwordFingerprint(user.password_hash), ttl)
    await this.deps.outbox.record(executor, passwordResetMail(user.email, user.username, this.link('reset-password', token), ttl))
  }

  private async issueVerification(executor: Executor, user: UserRow): Promise<void> {
    const ttl = this.deps.config.emailVerificationTtlSeconds
    const token = await this.issue(executor, user, 'email_verification', comparable(user.email), ttl)
    await this.deps.outbox.record(executor, emailVerificationMail(user.email, user.username, this.link('verify-email', token), ttl))
  }

  private async issue(executor: Executor, user: UserRow, purpose: TokenPurpose, binding: string, ttlSeconds: number): Promise<string> {
    const token = randomToken(32)
    const createdAt = new Date()
    const expiresAt = new Date(createdAt.getTime() + ttlSeconds * 1000)
    await this.deps.tokens.insert(executor, { tokenHash: hashSecret(token), purpose, userId: user.id, binding, createdAt, expiresAt })
    return token
  }

  /** The token in a fragment: it stays out of access logs, proxies and Referer headers. */
  private link(page: 'reset-password' | 'verify-email', token: string): string {
    return `${this.deps.linkBase()}/${page}#token=${token}`
  }

  private async liveToken(token: string, purpose: TokenPurpose, now: Date) {
    const { db, tokens, users } = this.deps
    // A token is 43 base64url characters; anything else cannot be one (and is not hashed or looked up).
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) throw invalidToken()
    const row = await tokens.findLive(db.kysely, hashSecret(token), purpose, now)
    const user = row && (await users.findById(db.kysely, row.user_id))
    if (!row || !user) throw invalidToken()
    return { row, user }
  }
}

