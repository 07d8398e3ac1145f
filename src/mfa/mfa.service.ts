import QRCode from 'qrcode'
import type { ClientInfo } from '../activity/client.js'
import type { FactorNotices } from '../activity/factor-notices.js'
import { checkPassword } from '../auth/password-check.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { SignInLimiter } from '../auth/sign-in-limiter.js'
import { hashSecret, randomToken } from '../auth/tokens.js'
import type { Db } from '../db/database.js'
import { AppError, validationError } from '../errors.js'
import { PURGE_BATCH_SIZE, purgeInBatches } from '../jobs/batched-purge.js'
import type { UserRow } from '../users/users.table.js'
import type { MfaRepository } from './mfa.repository.js'
import { newRecoveryCodes, recoveryCodeHash } from './recovery-codes.js'
import { matchingStep, newTotpSecret, otpauthUri, type TotpSecretBox } from './totp.js'

/** A sign-in challenge works for this long, once. */
export const MFA_CHALLENGE_TTL_SECONDS = 300
/** Live challenges one user may hold (each correct password makes one); older ones end. */
const MAX_CHALLENGES_PER_USER = 5

/** A second factor as a request presents it: a TOTP code or a recovery code. */
export interface FactorProof {
  code?: string
  recovery_code?: string
  /** A passkey assertion's check (src/passkeys), given the user it must belong to and where to run its statements. */
  passkey?: (userId: number, executor: Db['kysely']) => Promise<boolean>
}

/** Where an attempt comes from, for the sign-in limit (see SignInLimiter.reserve). */
export interface AttemptClient {
  address: string
  device?: string
}

export interface MfaServiceDeps {
  db: Db
  mfa: MfaRepository
  sessions: SessionsRepository
  limiter: SignInLimiter
  box: TotpSecretBox
  /** Called with the user id when a stored secret does not decrypt (the server secret changed). */
  onUnreadableSecret?: (userId: number) => void
  /** Passkeys: with an active second factor, a passkey is one more way to complete a sign-in or step up. */
  passkeys?: { hasPasskeys(userId: number): Promise<boolean> }
  /** The activity entry and mail notice of each change, recorded in its transaction. */
  notices: FactorNotices
}

export interface MfaStatus {
  totp: boolean
  recovery_codes_left: number
  methods: string[]
}

const notEnrolled = () => new AppError('mfa_not_enrolled', { detail: 'This account has no active second factor.' })

/** TOTP enrolment, recovery codes, sign-in challenges and the check of a presented second factor. */
export class MfaService {
  constructor(private readonly deps: MfaServiceDeps) {}

  /** The methods an account can complete a sign-in with; empty for an account without a second factor. */
  async methodsFor(userId: number): Promise<string[]> {
    const factors = await this.deps.mfa.activeFactors(this.deps.db.kysely, userId)
    if (!factors) return []
    const passkey = (await this.deps.passkeys?.hasPasskeys(userId)) ? ['passkey'] : []
    return [...(factors.recoveryCodesLeft > 0 ? ['totp', 'recovery_code'] : ['totp']), ...passkey]
  }

  async status(userId: number): Promise<MfaStatus> {
    const factors = await this.deps.mfa.activeFactors(this.deps.db.kysely, userId)
    return { totp: factors !== undefined, recovery_codes_left: factors?.recoveryCodesLeft ?? 0, methods: await this.methodsFor(userId) }
  }

  /** Starts (or restarts) enrolment: a new secret, pending until a first code confirms it; 409 once active. */
  async enrol(user: UserRow): Promise<{ secret: string; otpauth_uri: string; qr_svg: string }> {
    const { db, mfa, box } = this.deps
    const secret = newTotpSecret()
    const placed = await mfa.putPendingTotp(db.kysely, user.id, box.seal(secret, user.id), new Date().toISOString())
    if (!placed) throw new AppError('mfa_already_enabled', { detail: 'A second factor is already active; turn it off first to enrol another.' })
    const uri = otpauthUri(secret, user.username)
    return { secret, otpauth_uri: uri, qr_svg: await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }) }
  }

  /**
   * Activates the pending factor with its first code and returns the ten recovery codes, shown this once.
   * The confirming code is recorded as used, and the session counts as having just proven a second factor.
   */
  async confirm(user: UserRow, sessionId: string, code: string, client: ClientInfo): Promise<string[]> {
    const { db, mfa, sessions, notices } = this.deps
    const pending = await mfa.findTotp(db.kysely, user.id)
    if (!pending || pending.confirmed_at !== null) {
      throw pending ? new AppError('mfa_already_enabled', { detail: 'The second factor is already active.' }) : notEnrolled()
    }
    const secret = this.open(pending.secret, user.id)
    const step = secret === undefined ? undefined : matchingStep(secret, code)
    if (step === undefined) throw validationError({ code: ['The code is not right. Enter the 6 digits your app shows now.'] })
    const codes = newRecoveryCodes()
    const now = new Date().toISOString()
    await db.kysely.transaction().execute(async (trx) => {
      if (!(await mfa.acceptStep(trx, user.id, pending.secret, step, { at: now }))) throw validationError({ code: ['This code was used already; wait for the next one.'] })
      await mfa.replaceRecoveryCodes(trx, user.id, codes.map(hashOf), now)
      await sessions.markSecondFactor(trx, sessionId, now)
      await notices.record(trx, user, 'mfa_enabled', client)
    })
    notices.committed()
    return codes
  }

  /** Ten new recovery codes; the old ones stop working. The caller has passed the step-up check. */
  async regenerateRecoveryCodes(user: UserRow, client: ClientInfo): Promise<string[]> {
    const { db, mfa, notices } = this.deps
    const codes = newRecoveryCodes()
    await db.kysely.transaction().execute(async (trx) => {
      // Held until commit: a parallel regeneration waits, then replaces these codes (one set stays live, not several).
      if (!(await mfa.lockActiveTotp(trx, user.id))) throw notEnrolled()
      await mfa.replaceRecoveryCodes(trx, user.id, codes.map(hashOf), new Date().toISOString())
      await notices.record(trx, user, 'recovery_codes_regenerated', client)
    })
    notices.committed()
    return codes
  }

  /** Turns the second factor off after the password (counted against the sign-in limit); the caller did the step-up. */
  async disable(user: UserRow, password: string, client: ClientInfo): Promise<void> {
    const { db, mfa, limiter, notices } = this.deps
    if (!(await mfa.activeFactors(db.kysely, user.id))) throw notEnrolled()
    await checkPassword(limiter, user, password, client.address, 'password')
    await db.kysely.transaction().execute(async (trx) => {
      // Counted only when this request removed the factor: of two racing disables, one entry and one notice.
      const removed = await mfa.removeFactor(trx, user.id)
      if (removed) await notices.record(trx, user, 'mfa_disabled', client)
    })
    notices.committed()
  }

  /**
   * Checks a presented second factor against the account, counted against its sign-in limit (429 once used
   * up): a TOTP code of a step later than the last accepted one, or an unused recovery code (used up now).
   * True when it was right; a wrong one stays counted. `executor`: the caller's transaction, when what the
   * right factor uses up must go with it (a sign-in that then loses its challenge to a parallel one uses up nothing).
   */
  async attempt(userId: number, proof: FactorProof, client: AttemptClient, executor: Db['kysely'] = this.deps.db.kysely): Promise<boolean> {
    const { limiter } = this.deps
    const ticket = await limiter.reserve({ account: { userId }, ...client })
    let right: boolean
    try {
      right = await this.check(executor, userId, proof)
    } catch (error) {
      await ticket.cancelled()
      throw error
    }
    if (right) await ticket.succeeded()
    return right
  }

  private async check(executor: Db['kysely'], userId: number, proof: FactorProof): Promise<boolean> {
    const { mfa } = this.deps
    if (proof.passkey !== undefined) return proof.passkey(userId, executor)
    if (proof.recovery_code !== undefined) {
      const hash = recoveryCodeHash(proof.recovery_code)
      return hash !== undefined && (await mfa.consumeRecoveryCode(executor, userId, hash))
    }
    if (proof.code === undefined) return false
    const totp = await mfa.findTotp(executor, userId)
    if (!totp || totp.confirmed_at === null) return false
    const secret = this.open(totp.secret, userId)
    const step = secret === undefined ? undefined : matchingStep(secret, proof.code)
    return step !== undefined && (await mfa.acceptStep(executor, userId, totp.secret, step))
  }

  /** POST …/mfa/verify: a right code marks the session as having just proven the second factor (step-up). */
  async verify(user: UserRow, sessionId: string, proof: FactorProof, client: AttemptClient): Promise<void> {
    if (!(await this.deps.mfa.activeFactors(this.deps.db.kysely, user.id))) throw notEnrolled()
    if (!(await this.attempt(user.id, proof, client))) {
      throw validationError({ [proof.recovery_code !== undefined ? 'recovery_code' : 'code']: ['The code is not right or was used already.'] })
    }
    await this.markSession(sessionId)
  }

  /** Records that the session just proved a second factor (POST …/mfa/verify, or a code sent with an operation). */
  async markSession(sessionId: string): Promise<void> {
    await this.deps.sessions.markSecondFactor(this.deps.db.kysely, sessionId, new Date().toISOString())
  }

  /** A new sign-in challenge for this user: random, stored as a hash, expiring, single-use. */
  async newChallenge(userId: number): Promise<string> {
    const { db, mfa } = this.deps
    const challenge = randomToken(32)
    const now = new Date()
    const idHash = hashSecret(challenge)
    await db.kysely.transaction().execute(async (trx) => {
      // One sign-in after the other per user, so each prune sees every challenge committed before it.
      await mfa.lockChallenges(trx, userId)
      await mfa.createChallenge(trx, {
        id_hash: idHash,
        user_id: userId,
        created_at: now.toISOString(),
        expires_at: new Date(now.getTime() + MFA_CHALLENGE_TTL_SECONDS * 1000).toISOString(),
      })
      await mfa.pruneChallenges(trx, userId, now.toISOString(), MAX_CHALLENGES_PER_USER, idHash)
    })
    return challenge
  }

  /** The user a live challenge is for, and its stored hash (to consume it), or undefined. */
  async openChallenge(challenge: string): Promise<{ userId: number; idHash: string } | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return undefined
    const idHash = hashSecret(challenge)
    const row = await this.deps.mfa.findLiveChallenge(this.deps.db.kysely, idHash, new Date().toISOString())
    return row ? { userId: row.user_id, idHash } : undefined
  }

  /** Uses up the challenge inside the caller's transaction: false when another request did first, or it expired. */
  consumeChallenge(executor: Db['kysely'], idHash: string): Promise<boolean> {
    return this.deps.mfa.consumeChallenge(executor, idHash, new Date().toISOString())
  }

  /**
   * Deletes the challenges expired at `now`, in batches; returns how many. A sign-in prunes only its own user's,
   * so those of accounts that never sign in again would stay for ever; a used one is deleted when used.
   */
  purgeExpiredChallenges(now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
    const at = now.toISOString()
    return purgeInBatches((limit) => this.deps.mfa.deleteExpiredChallengesBatch(this.deps.db.kysely, at, limit), batchSize)
  }

  private open(sealed: string, userId: number): string | undefined {
    const secret = this.deps.box.open(sealed, userId)
    if (secret === undefined) this.deps.onUnreadableSecret?.(userId)
    return secret
  }
}

const hashOf = (code: string) => recoveryCodeHash(code) as string
