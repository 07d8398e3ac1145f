import { randomBytes } from 'node:crypto'
import type { ActivityLog } from '../activity/activity.service.js'
import type { ClientInfo } from '../activity/client.js'
import type { NewDeviceNotices } from '../activity/new-device-notice.js'
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { AppError, FieldErrorList } from '../errors.js'
import { cleanText, comparable, TEXT_FIELDS, type TextField } from '../users/field-rules.js'
import type { UsersRepository } from '../users/users.repository.js'
import { uniqueViolationError } from '../users/users.service.js'
import type { UserRow } from '../users/users.table.js'
import type { DeviceProofs } from './device-proof.js'
import { hashPassword, needsRehash, passwordProblems, verifyPassword } from './passwords.js'
import type { SessionsRepository } from './sessions.repository.js'
import type { SignInLimiter } from './sign-in-limiter.js'
import { type AccessTokens, newRefreshToken, newSessionId, parseRefreshToken, type RefreshSuccessors, sameHash } from './tokens.js'

export interface TokenPair {
  access: string
  refresh: string
}

/** What sign-in needs from the second factors (MfaService implements it). */
export interface SecondFactors {
  /** The methods the account completes a sign-in with; empty when it has no second factor (one indexed lookup). */
  methodsFor(userId: number): Promise<string[]>
  newChallenge(userId: number): Promise<string>
  openChallenge(challenge: string): Promise<{ userId: number; idHash: string } | undefined>
  consumeChallenge(executor: Db['kysely'], idHash: string): Promise<boolean>
  /**
   * Checks a code or recovery code, counted against the account's sign-in limit (429 when used up); what a right
   * one uses up (a recovery code, a TOTP step, a passkey challenge) goes in `executor`'s transaction.
   */
  attempt(userId: number, proof: SecondFactorProof, client: { address: string; device?: string }, executor?: Db['kysely']): Promise<boolean>
}

/**
 * A second factor as a request presents it: a TOTP code, a recovery code, or a passkey assertion (its check,
 * bound to the request's relying party, given the user it must belong to).
 */
export interface SecondFactorProof {
  code?: string
  recovery_code?: string
  passkey?: (userId: number, executor: Db['kysely']) => Promise<boolean>
}

/** A finished sign-in: the session's tokens, the user, and the device proof for next time. */
export interface SignedIn extends TokenPair {
  user: UserRow
  deviceProof: string
}

/** A right password for an account with a second factor: no session yet, a challenge to complete it with. */
export interface SecondFactorRequired {
  mfaRequired: true
  challenge: string
  methods: string[]
}

/**
 * How a session was authenticated, as RFC 8176 `amr` values: ['pwd'], ['pwd', 'otp'], ['hwk', 'user'] (a
 * passkey alone). `secondFactor`: whether a second factor was proven (sets the session's second_factor_at).
 */
export interface SessionAuthentication {
  amr: readonly string[]
  secondFactor?: boolean
}

export interface AuthServiceDeps {
  db: Db
  users: UsersRepository
  sessions: SessionsRepository
  tokens: AccessTokens
  /** Derives each rotated refresh token from the one it replaces (see refresh). */
  successors: RefreshSuccessors
  limiter: SignInLimiter
  devices: DeviceProofs
  /** Security activity: sign-ins (and failures), sign-outs, revocations. */
  activity: ActivityLog
  /** The mail on a sign-in from a device never seen before. */
  newDevices: NewDeviceNotices
  /** Sign-up records a verification mail in its transaction (account-tokens/account-mail.service.ts). */
  notices: { signedUp(executor: Db['kysely'], user: UserRow): Promise<void>; committed(): void }
  /** The second factors (src/mfa): consulted once a password is right, and to complete a challenged sign-in. */
  secondFactors: SecondFactors
  config: Pick<Config, 'passwordHashCost' | 'refreshTokenTtlSeconds' | 'refreshReuseGraceSeconds' | 'sessionMaxAgeSeconds'>
}

/**
 * Live sessions one user may hold; a sign-in beyond it ends the oldest. Without a cap, the right password
 * signed in again and again (30 a second on two cores) kept every session for REFRESH_TOKEN_TTL: millions of
 * rows a day from one account that no purge touches, for they have not expired.
 */
export const MAX_SESSIONS_PER_USER = 100

const invalidCredentials = () =>
  new AppError('invalid_credentials', { detail: 'No active account matches these credentials.' })
const invalidChallenge = () =>
  new AppError('invalid_mfa_challenge', { detail: 'The sign-in challenge is unknown, expired or used already: sign in with the password again.' })
/** Thrown inside the sign-in's transaction when the second factor is refused, so that it rolls back. */
class SecondFactorRefused extends Error {}

const invalidRefresh = () => new AppError('invalid_refresh_token', { detail: 'The refresh token is invalid, expired or already used.' })

/** Accounts and sessions: sign-up, sign-in, refresh with rotation, sign-out. */
export class AuthService {
  private dummyHash?: Promise<string>

  constructor(private readonly deps: AuthServiceDeps) {}

  /** Hash compared against when the user is unknown, so that path costs the same as a wrong password. */
  private dummyPasswordHash(): Promise<string> {
    this.dummyHash ??= hashPassword(randomBytes(16).toString('hex'), this.deps.config.passwordHashCost)
    return this.dummyHash
  }

  async warmUp(): Promise<void> {
    await this.dummyPasswordHash()
  }

  async signUp(body: Record<string, unknown>, client: ClientInfo): Promise<{ user: UserRow } & TokenPair> {
    const { db, users, config } = this.deps
    const errors = new FieldErrorList()
    const text: Partial<Record<TextField, string>> = {}
    for (const field of ['username', 'email'] as const) {
      if (body[field] === undefined) errors.add(field, 'This field is required.')
    }
    for (const [field, raw] of Object.entries(body)) {
      if (TEXT_FIELDS.includes(field as TextField)) {
        const result = cleanText(field as TextField, raw)
        if ('error' in result) errors.add(field, result.error)
        else text[field as TextField] = result.value
      } else if (field !== 'password') {
        errors.add(field, 'Unknown field.')
      }
    }
    const password = body.password
    if (typeof password !== 'string') errors.add('password', password === undefined ? 'This field is required.' : 'Not a valid string.')
    else for (const problem of passwordProblems(password, { username: text.username, email: text.email })) errors.add('password', problem)
    if (text.username !== undefined || text.email !== undefined) {
      const taken = await users.takenBy(db.kysely, { username: text.username, email: text.email })
      if (taken.username) errors.add('username', 'A user with that username already exists.')
      if (taken.email) errors.add('email', 'A user with that email already exists.')
    }
    errors.throwIfAny()

    await this.deps.limiter.reserveSignUp(client.address)
    const passwordHash = await hashPassword(password as string, config.passwordHashCost)
    const now = new Date().toISOString()
    const username = text.username as string
    const email = text.email as string
    try {
      const signedUp = await db.kysely.transaction().execute(async (trx) => {
        const user = await users.insert(trx, {
          username,
          email,
          password_hash: passwordHash,
          first_name: text.first_name ?? '',
          last_name: text.last_name ?? '',
          number_phone: text.number_phone ?? '',
          avatar: null,
          date_joined: now,
          last_login: now,
          is_active: 1,
          is_staff: 0,
          is_superuser: 0,
        })
        await this.deps.notices.signedUp(trx, user)
        return { user, ...(await this.startSession(trx, user.id, now, { amr: ['pwd'] }, client)) }
      })
      this.deps.notices.committed()
      return signedUp
    } catch (error) {
      throw uniqueViolationError(error) ?? error
    }
  }

  /**
   * Same 401 for an unknown user, an inactive one and a wrong password, each after one hash comparison.
   * The attempt is reserved before the hash is checked (429 without a hash once the limit is used up).
   * `deviceProof`: proof of an earlier sign-in from this client (SECURITY.md); the reply carries one for next time.
   * A wrong password on an existing account is recorded on it after the answer has gone out, so the answer and
   * its timing stay those of an unknown login; a sign-in with neither a valid proof nor an earlier sign-in from
   * the same address and browser is flagged `new_device`.
   */
  async signIn(
    login: { field: 'email' | 'username'; value: string },
    password: string,
    client: ClientInfo & { deviceProof?: string },
  ): Promise<SignedIn | SecondFactorRequired> {
    const { db, users, limiter, devices, secondFactors, activity } = this.deps
    // One spelling per login, so "Bob", " bob" and "BOB" find the same user (and share a count when there is none).
    const text = comparable(login.value.trim())
    const column = login.field === 'email' ? 'email_lower' : 'username_lower'
    const user = await users.findByLogin(db.kysely, column, text)
    const device = user ? devices.verify(client.deviceProof, user) : undefined
    const ticket = await limiter.reserve({ account: user ? { userId: user.id } : { login: text }, address: client.address, device })
    let matches: boolean
    try {
      matches = await verifyPassword(user?.password_hash ?? (await this.dummyPasswordHash()), password)
    } catch (error) {
      await ticket.cancelled()
      throw error
    }
    // A failure stays counted: the reservation was the count.
    if (user && !matches) activity.recordDetached({ userId: user.id, type: 'sign_in_failed', client: clientOnly(client) })
    if (!user || !matches || !user.is_active) throw invalidCredentials()
    await ticket.succeeded()
    // An imported Django hash is replaced by argon2id now that the password is known (as Django's check_password
    // upgrades), hashed before the transaction so no connection waits on it.
    const upgraded = needsRehash(user.password_hash) ? await hashPassword(password, this.deps.config.passwordHashCost) : undefined
    const methods = await secondFactors.methodsFor(user.id)
    if (methods.length > 0) {
      // No session and no last_login until the second factor comes (signInWithSecondFactor).
      if (upgraded) await users.upgradePasswordHash(db.kysely, user.id, user.password_hash, upgraded)
      return { mfaRequired: true, challenge: await secondFactors.newChallenge(user.id), methods }
    }
    return this.finishSignIn(user, { amr: ['pwd'] }, { client, device, upgradedHash: upgraded })
  }

  /**
   * Completes a challenged sign-in with a TOTP code, a recovery code or a passkey. A wrong one counts against
   * the account's sign-in limit (401, then 429) and leaves the challenge usable until it expires; a right one uses
   * the challenge up, in the transaction that starts the session. The factor is checked in that transaction too,
   * after the challenge is taken: of parallel attempts with one challenge, the others wait for it and find it
   * gone, so they use up nothing (before, each used up its recovery code and then lost the challenge).
   */
  async signInWithSecondFactor(
    challenge: string,
    proof: SecondFactorProof,
    client: ClientInfo & { deviceProof?: string },
  ): Promise<SignedIn> {
    const { db, users, devices, secondFactors, activity } = this.deps
    const opened = await secondFactors.openChallenge(challenge)
    if (!opened) throw invalidChallenge()
    const user = await users.findById(db.kysely, opened.userId)
    if (!user?.is_active) throw invalidChallenge()
    const device = devices.verify(client.deviceProof, user)
    try {
      // A recovery code is a one-time password too (RFC 8176 has no value of its own for it).
      const how = { amr: ['pwd', proof.passkey ? 'hwk' : 'otp'], secondFactor: true }
      return await this.finishSignIn(user, how, { client, device, secondFactor: { challengeHash: opened.idHash, proof } })
    } catch (error) {
      if (!(error instanceof SecondFactorRefused)) throw error
      activity.recordDetached({ userId: user.id, type: 'sign_in_failed', client: clientOnly(client), details: { second_factor: true } })
      throw new AppError('invalid_second_factor', { detail: 'The code is not right or was used already.' })
    }
  }

  /**
   * The end of every sign-in, whatever proved who the user is: last_login, a new session carrying `how`
   * (its amr, and the second factor's time), the tokens and a device proof. A passkey sign-in calls this with
   * `{ amr: ['hwk', 'user'], secondFactor: true }` once the assertion is verified.
   * `secondFactor`: a sign-in challenge used up in the same transaction (a second request with it fails, 401), and
   * the factor presented with it, checked after the challenge is taken (a refused one rolls everything back).
   * `device`: the client's verified device proof, else checked here; a sign-in from an unknown device is
   * recorded as such and mailed a notice.
   */
  async finishSignIn(
    user: UserRow,
    how: SessionAuthentication,
    options: {
      client: ClientInfo & { deviceProof?: string }
      device?: string
      upgradedHash?: string
      secondFactor?: { challengeHash: string; proof: SecondFactorProof }
    },
  ): Promise<SignedIn> {
    const { db, users, devices, secondFactors, activity, newDevices } = this.deps
    const { upgradedHash, secondFactor } = options
    const client = clientOnly(options.client)
    const device = options.device ?? devices.verify(options.client.deviceProof, user)
    const now = new Date().toISOString()
    const session = await db.kysely.transaction().execute(async (trx) => {
      if (secondFactor) {
        if (!(await secondFactors.consumeChallenge(trx, secondFactor.challengeHash))) throw invalidChallenge()
        if (!(await secondFactors.attempt(user.id, secondFactor.proof, { address: client.address, device }, trx))) throw new SecondFactorRefused()
      }
      const signedIn = await users.update(trx, user.id, { last_login: now })
      // Deleted while its password was being checked: no account matches any more (its session would be a
      // foreign-key error, a 500).
      if (!signedIn) throw invalidCredentials()
      const passwordHash =
        upgradedHash && (await users.upgradePasswordHash(trx, user.id, user.password_hash, upgradedHash)) ? upgradedHash : signedIn.password_hash
      // New: neither a device proof nor an earlier sign-in from this address and browser.
      const newDevice = !device && !(await activity.signedInBefore(trx, user.id, client))
      await activity.record(trx, { userId: user.id, type: 'sign_in', client, at: now, details: { amr: how.amr.join(' '), ...(newDevice ? { new_device: true } : {}) } })
      if (newDevice) await newDevices.record(trx, signedIn, client, now)
      return { user: signedIn, passwordHash, newDevice, ...(await this.startSession(trx, user.id, now, how, client)) }
    })
    if (session.newDevice) newDevices.committed()
    // The proof is bound to the password hash, so one issued right after an upgrade must carry the new hash.
    const { passwordHash, newDevice: _, ...signedIn } = session
    return { ...signedIn, deviceProof: devices.issue({ ...user, password_hash: passwordHash }, device) }
  }

  /** Proof for the client that just created this account, so it counts as a known device from now on. */
  deviceProofFor(user: UserRow): string {
    return this.deps.devices.issue(user)
  }

  /**
   * Rotates the refresh token. The secret the last rotation replaced, presented again within
   * REFRESH_REUSE_GRACE (two tabs, a retry after a timeout), gets the same successor again; later, it ends
   * the whole session (theft detection). A secret never issued for the session is a plain 401 that
   * changes nothing, so knowing a session id (the `sid` of an access token) is not enough to end it.
   */
  async refresh(refreshToken: string, client?: ClientInfo): Promise<TokenPair> {
    const { db, sessions, users, tokens, successors, config, activity } = this.deps
    const presented = parseRefreshToken(refreshToken)
    if (!presented) throw invalidRefresh()
    const now = new Date()
    let session = await sessions.findById(db.kysely, presented.sessionId)
    if (!session || new Date(session.expires_at) <= now) throw invalidRefresh()
    const endOfLife = new Date(session.created_at).getTime() + config.sessionMaxAgeSeconds * 1000
    if (endOfLife <= now.getTime()) throw invalidRefresh()
    const user = await users.findById(db.kysely, session.user_id)
    if (!user?.is_active) throw invalidRefresh()
    // The session keeps how it signed in: every access token it gets says the same.
    const amr = session.amr.split(' ')
    const issue = async (refresh: string) => ({ access: await tokens.issue({ userId: user.id, sessionId: presented.sessionId, amr }, db.kysely), refresh })
    const next = successors.of(presented)
    if (sameHash(presented.hash, session.refresh_hash)) {
      // Renewed for REFRESH_TOKEN_TTL, but never past SESSION_MAX_AGE from the sign-in.
      const expiresAt = new Date(Math.min(now.getTime() + config.refreshTokenTtlSeconds * 1000, endOfLife)).toISOString()
      if (await sessions.rotate(db.kysely, session.id, presented.hash, next.hash, expiresAt, now.toISOString())) {
        return issue(next.token)
      }
      // A parallel request rotated this very secret a moment ago: judge this one as a repeat.
      session = await sessions.findById(db.kysely, presented.sessionId)
      if (!session) throw invalidRefresh()
    }
    if (session.previous_hash === null || !sameHash(presented.hash, session.previous_hash)) throw invalidRefresh()
    const rotatedAt = session.rotated_at === null ? Number.NaN : new Date(session.rotated_at).getTime()
    if (config.refreshReuseGraceSeconds > 0 && now.getTime() - rotatedAt <= config.refreshReuseGraceSeconds * 1000) {
      // Its successor is still the current secret unless the server key changed in between.
      if (!sameHash(next.hash, session.refresh_hash)) throw invalidRefresh()
      return issue(next.token)
    }
    // A secret rotated out longer ago came back: it was copied. End the session for every holder.
    const ended = session
    await db.kysely.transaction().execute(async (trx) => {
      await sessions.delete(trx, ended.id)
      await activity.record(trx, { userId: ended.user_id, type: 'session_revoked', client, details: { reason: 'refresh_token_reused' } })
    })
    throw invalidRefresh()
  }

  /** Ends the session of this refresh token, if it is one; unknown tokens are ignored (sign-out is idempotent). */
  async signOut(refreshToken: string, client?: ClientInfo): Promise<void> {
    const { db, sessions } = this.deps
    const presented = parseRefreshToken(refreshToken)
    if (!presented) return
    const session = await sessions.findById(db.kysely, presented.sessionId)
    // The secret just rotated out counts too: whoever holds it could end the session by reusing it anyway.
    const issued = session ? [session.refresh_hash, session.previous_hash] : []
    if (session && issued.some((hash) => hash !== null && sameHash(presented.hash, hash))) await this.endSession(session.id, session.user_id, client)
  }

  /** Ends one session of the user (sign-out with an access token), recording it in the same transaction. */
  async endSession(sessionId: string, userId: number, client?: ClientInfo): Promise<void> {
    const { db, sessions, activity } = this.deps
    await db.kysely.transaction().execute(async (trx) => {
      await sessions.delete(trx, sessionId)
      await activity.record(trx, { userId, type: 'sign_out', client })
    })
  }

  async endAllSessions(userId: number, client?: ClientInfo): Promise<void> {
    const { db, sessions, activity } = this.deps
    await db.kysely.transaction().execute(async (trx) => {
      await sessions.deleteAllOfUser(trx, userId)
      await activity.record(trx, { userId, type: 'sign_out_all', client })
    })
  }

  private async startSession(executor: Db['kysely'], userId: number, now: string, how: SessionAuthentication, client: ClientInfo): Promise<TokenPair> {
    const { sessions, tokens, config } = this.deps
    const sessionId = newSessionId()
    const refresh = newRefreshToken(sessionId)
    const expiresAt = new Date(Date.parse(now) + Math.min(config.refreshTokenTtlSeconds, config.sessionMaxAgeSeconds) * 1000).toISOString()
    await sessions.create(executor, {
      id: sessionId,
      user_id: userId,
      refresh_hash: refresh.hash,
      created_at: now,
      expires_at: expiresAt,
      amr: how.amr.join(' '),
      second_factor_at: how.secondFactor ? now : null,
      user_agent: client.userAgent ?? null,
      client_address: client.address,
      last_used_at: now,
    })
    await sessions.deleteAllButNewest(executor, userId, sessionId, MAX_SESSIONS_PER_USER)
    // Issued through the transaction's connection: it reads the current signing key (see AccessTokens.issue).
    return { access: await tokens.issue({ userId, sessionId, amr: how.amr }, executor), refresh: refresh.token }
  }
}

/** The address and User-Agent alone (never the device proof). */
function clientOnly(client: ClientInfo): ClientInfo {
  return { address: client.address, userAgent: client.userAgent }
}
