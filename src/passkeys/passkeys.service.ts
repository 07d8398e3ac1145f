import { randomBytes } from 'node:crypto'
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server'
import type { FastifyBaseLogger } from 'fastify'
import type { ClientInfo } from '../activity/client.js'
import type { FactorNotices } from '../activity/factor-notices.js'
import type { SignInLimiter } from '../auth/sign-in-limiter.js'
import { hashSecret, randomToken, sameHash } from '../auth/tokens.js'
import { violatedUniqueIndex } from '../db/constraints.js'
import type { Db } from '../db/database.js'
import { AppError, validationError } from '../errors.js'
import { PURGE_BATCH_SIZE, purgeInBatches } from '../jobs/batched-purge.js'
import { rules } from '../users/field-rules.js'
import type { UsersRepository } from '../users/users.repository.js'
import { toIso } from '../users/users.schemas.js'
import type { UserRow } from '../users/users.table.js'
import type { PasskeysRepository } from './passkeys.repository.js'
import type { ChallengePurpose, PasskeyRow } from './passkeys.table.js'
import type { RelyingParty, RelyingPartyAnswer } from './relying-party.js'

/** A challenge is good for this long, and the browser is told to give up by then. */
export const CHALLENGE_TTL_MS = 5 * 60_000
/**
 * Live challenges one user may hold per purpose (registration, second factor); a new one ends the oldest beyond
 * it. As for sign-in challenges (MFA), a few tabs or devices each keep theirs, and nobody can fill the table.
 */
export const MAX_CHALLENGES_PER_PURPOSE = 5
/** Passkeys one account may hold. */
export const MAX_PASSKEYS_PER_USER = 20
const NAME_MAX = 64
const RP_NAME = 'Portrait'
/** RFC 8176 methods of a passwordless passkey sign-in: a hardware-bound key, with the user verified. */
export const PASSKEY_AMR = ['hwk', 'user'] as const

/** A passkey as the API shows it. */
export interface Passkey {
  id: number
  name: string
  created_at: string
  last_used_at: string | null
  backed_up: boolean
  transports: string[]
}

export interface PasskeysServiceDeps {
  db: Db
  passkeys: PasskeysRepository
  users: UsersRepository
  limiter: SignInLimiter
  /** The activity entry and mail notice of a passkey added or removed, recorded in its transaction. */
  notices: FactorNotices
}

const rejected = () => new AppError('invalid_credentials', { detail: 'This passkey was not accepted. Ask for new options and try again.' })
const unknownChallenge = () =>
  new AppError('invalid_credentials', { detail: 'The challenge is unknown, expired or already used: ask for new options.' })

export function toPasskey(row: PasskeyRow): Passkey {
  return {
    id: row.id,
    name: row.name,
    created_at: toIso(row.created_at) as string,
    last_used_at: toIso(row.last_used_at),
    backed_up: Boolean(row.backed_up),
    transports: JSON.parse(row.transports) as string[],
  }
}

/** The relying party, or 404 saying why passkeys are off here. */
export function availableRp(answer: RelyingPartyAnswer): RelyingParty {
  if (!answer.available) throw new AppError('passkeys_unavailable', { detail: answer.reason })
  return answer.rp
}

/** The challenge string a response's clientDataJSON carries, or undefined when it is not readable. */
function challengeOf(clientDataJSON: string): string | undefined {
  try {
    const data: unknown = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8'))
    const challenge = (data as { challenge?: unknown })?.challenge
    return typeof challenge === 'string' && challenge.length <= 256 ? challenge : undefined
  } catch {
    return undefined
  }
}

/** Passkeys: registration and management for the signed-in user, and the assertions that sign someone in. */
export class PasskeysService {
  constructor(private readonly deps: PasskeysServiceDeps) {}

  async list(userId: number): Promise<Passkey[]> {
    return (await this.deps.passkeys.listOfUser(this.deps.db.kysely, userId)).map(toPasskey)
  }

  /** Creation options for navigator.credentials.create: a discoverable credential, the user verified. */
  async registrationOptions(user: UserRow, rp: RelyingParty): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const { db, passkeys } = this.deps
    const existing = await passkeys.listOfUser(db.kysely, user.id)
    if (existing.length >= MAX_PASSKEYS_PER_USER) throw tooMany()
    // One handle per user, kept in every passkey row; a user whose passkeys are all gone gets a new one.
    const handle = existing[0]?.user_handle ?? randomToken(16)
    const challenge = await this.newChallenge('register', user.id, { handle })
    const displayName = `${user.first_name} ${user.last_name}`.trim()
    return generateRegistrationOptions({
      rpName: RP_NAME,
      rpID: rp.rpID,
      userName: user.username,
      userDisplayName: displayName || user.username,
      userID: new Uint8Array(Buffer.from(handle, 'base64url')),
      challenge,
      timeout: CHALLENGE_TTL_MS,
      attestationType: 'none',
      excludeCredentials: existing.map((row) => ({ id: row.credential_id, transports: JSON.parse(row.transports) as string[] })),
      authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' },
    })
  }

  /** Verifies a registration response against its challenge (used once) and stores the passkey under `name`. */
  async register(
    user: UserRow,
    rawName: unknown,
    response: RegistrationResponseJSON,
    rp: RelyingParty,
    client: ClientInfo,
    log: FastifyBaseLogger,
  ): Promise<Passkey> {
    const { db, passkeys, notices } = this.deps
    const name = cleanName(rawName)
    const now = new Date().toISOString()
    const challenge = challengeOf(response.response.clientDataJSON)
    const taken = challenge && (await passkeys.consumeChallenge(db.kysely, { hash: hashSecret(challenge) }, 'register', user.id, now))
    if (!taken) throw validationError({ response: ['The challenge is unknown, expired or already used: ask for new options.'] })
    let info: Awaited<ReturnType<typeof verifyRegistrationResponse>>['registrationInfo']
    try {
      const verification = await verifyRegistrationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: rp.origin,
        expectedRPID: rp.rpID,
        requireUserPresence: true,
        requireUserVerification: true,
      })
      info = verification.verified ? verification.registrationInfo : undefined
    } catch (error) {
      log.info({ reason: (error as Error).message }, 'passkey registration refused')
    }
    if (!info) throw validationError({ response: ['The passkey could not be verified (wrong site, no user verification, or a malformed response).'] })
    try {
      const row = await db.kysely.transaction().execute(async (trx) => {
        // Counted under the owner's lock: parallel registrations (one live challenge each) stop at the limit.
        await passkeys.lockOwner(trx, user.id)
        if ((await passkeys.countOfUser(trx, user.id)) >= MAX_PASSKEYS_PER_USER) throw tooMany()
        const inserted = await passkeys.insert(trx, {
          user_id: user.id,
          credential_id: info.credential.id,
          public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
          counter: info.credential.counter,
          transports: JSON.stringify(response.response.transports ?? info.credential.transports ?? []),
          // The handle the options carried (kept with the challenge): the response does not repeat it.
          user_handle: taken.user_handle ?? randomToken(16),
          name,
          backed_up: info.credentialBackedUp ? 1 : 0,
          created_at: now,
          last_used_at: null,
        })
        await notices.record(trx, user, 'passkey_added', client, { passkey: inserted.name })
        return inserted
      })
      notices.committed()
      return toPasskey(row)
    } catch (error) {
      if (violatedUniqueIndex(error) !== undefined) throw validationError({ response: ['This passkey is already registered.'] })
      throw error
    }
  }

  /** 404 unless the user has a passkey with this id. */
  async assertOwn(userId: number, id: number): Promise<void> {
    if (!(await this.deps.passkeys.findOfUser(this.deps.db.kysely, userId, id))) throw notFound()
  }

  async rename(userId: number, id: number, rawName: unknown): Promise<Passkey> {
    const name = cleanName(rawName)
    const row = await this.deps.passkeys.rename(this.deps.db.kysely, userId, id, name)
    if (!row) throw notFound()
    return toPasskey(row)
  }

  async remove(user: UserRow, id: number, client: ClientInfo): Promise<void> {
    const { db, passkeys, notices } = this.deps
    await db.kysely.transaction().execute(async (trx) => {
      const removed = await passkeys.delete(trx, user.id, id)
      if (!removed) throw notFound()
      await notices.record(trx, user, 'passkey_removed', client, { passkey: removed.name })
    })
    notices.committed()
  }

  /**
   * Request options for a passwordless sign-in: no credential list (the authenticator offers its discoverable
   * ones), the user verified. Counted per address, so nobody can fill the challenge table.
   */
  async signInOptions(rp: RelyingParty, address: string): Promise<{ challenge_id: string; options: PublicKeyCredentialRequestOptionsJSON }> {
    await this.deps.limiter.reservePasskeyChallenge(address)
    const challengeId = randomToken(16)
    const challenge = await this.newChallenge('sign-in', null, { id: challengeId })
    const options = await generateAuthenticationOptions({ rpID: rp.rpID, challenge, timeout: CHALLENGE_TTL_MS, userVerification: 'required' })
    return { challenge_id: challengeId, options }
  }

  /**
   * The active user a passwordless assertion proves, or 401. Every attempt is counted against the address
   * (there is no account to count against until it has succeeded); the challenge is used up either way.
   */
  async signIn(challengeId: string, response: AuthenticationResponseJSON, rp: RelyingParty, address: string, log: FastifyBaseLogger): Promise<UserRow> {
    const { db, passkeys, limiter } = this.deps
    const ticket = await limiter.reserveForAddress(address)
    let user: UserRow
    try {
      const challenge = await passkeys.consumeChallenge(db.kysely, { id: challengeId }, 'sign-in', null, new Date().toISOString())
      if (!challenge) throw unknownChallenge()
      user = await this.verifyAssertion(challenge.challenge_hash, response, rp, undefined, log)
    } catch (error) {
      // A refusal stays counted; a fault of ours (the database down) does not.
      if (!(error instanceof AppError && error.code === 'invalid_credentials')) await ticket.cancelled()
      throw error
    }
    await ticket.succeeded()
    return user
  }

  /**
   * Deletes the challenges expired at `now`, in batches; returns how many. Each new challenge clears a few
   * expired ones, but after a burst of options nobody used, a quiet service would keep the rest for ever.
   */
  purgeExpiredChallenges(now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
    const at = now.toISOString()
    return purgeInBatches((limit) => this.deps.passkeys.deleteExpiredChallengesBatch(this.deps.db.kysely, at, limit), batchSize)
  }

  /** Whether the user has at least one passkey (one indexed lookup): it is then a second-factor method too. */
  async hasPasskeys(userId: number): Promise<boolean> {
    return (await this.deps.passkeys.countOfUser(this.deps.db.kysely, userId)) > 0
  }

  /**
   * Request options for a passkey as a second factor (sign-in's second step, or step-up): this user's
   * credentials listed, the user verified; the challenge is bound to the user and works once.
   */
  async secondFactorOptions(userId: number, rp: RelyingParty): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const { db, passkeys } = this.deps
    const own = await passkeys.listOfUser(db.kysely, userId)
    if (own.length === 0) throw validationError({ non_field_errors: ['This account has no passkey.'] })
    const challenge = await this.newChallenge('second-factor', userId)
    return generateAuthenticationOptions({
      rpID: rp.rpID,
      challenge,
      timeout: CHALLENGE_TTL_MS,
      userVerification: 'required',
      allowCredentials: own.map((row) => ({ id: row.credential_id, transports: JSON.parse(row.transports) as string[] })),
    })
  }

  /** The check of a passkey sent as a second factor, as MfaService.attempt runs it (false where passkeys are off). */
  secondFactorCheck(
    answer: RelyingPartyAnswer,
    response: AuthenticationResponseJSON,
    log: FastifyBaseLogger,
  ): (userId: number, executor?: Db['kysely']) => Promise<boolean> {
    return async (userId, executor) => answer.available && this.verifySecondFactor(userId, response, answer.rp, log, executor)
  }

  /**
   * True when the assertion answers a live second-factor challenge of this user with one of their passkeys
   * (the challenge is used up either way, unless `executor`'s transaction rolls back); false for any refusal. The
   * caller counts the attempt.
   */
  async verifySecondFactor(
    userId: number,
    response: AuthenticationResponseJSON,
    rp: RelyingParty,
    log: FastifyBaseLogger,
    executor: Db['kysely'] = this.deps.db.kysely,
  ): Promise<boolean> {
    const challenge = challengeOf(response.response.clientDataJSON)
    const now = new Date().toISOString()
    const taken = challenge && (await this.deps.passkeys.consumeChallenge(executor, { hash: hashSecret(challenge) }, 'second-factor', userId, now))
    if (!taken) return false
    try {
      await this.verifyAssertion(taken.challenge_hash, response, rp, userId, log, executor)
      return true
    } catch (error) {
      if (error instanceof AppError && error.code === 'invalid_credentials') return false
      throw error
    }
  }

  /**
   * Checks an assertion: a known credential (of `userId` when given) of an active user, signed over the
   * challenge whose hash is `challengeHash`, by the right origin and RP ID, the user verified, and a counter
   * that went forward (or an authenticator that keeps none). Records the use (in `executor`); throws 401 otherwise.
   */
  async verifyAssertion(
    challengeHash: string,
    response: AuthenticationResponseJSON,
    rp: RelyingParty,
    userId: number | undefined,
    log: FastifyBaseLogger,
    executor: Db['kysely'] = this.deps.db.kysely,
  ): Promise<UserRow> {
    const { passkeys, users } = this.deps
    const passkey = await passkeys.findByCredentialId(executor, response.id)
    if (!passkey || (userId !== undefined && passkey.user_id !== userId)) {
      log.info('passkey assertion for an unknown credential')
      throw rejected()
    }
    const user = await users.findById(executor, passkey.user_id)
    const handle = response.response.userHandle
    if (!user?.is_active || (handle !== undefined && handle !== passkey.user_handle)) throw rejected()
    let verification: Awaited<ReturnType<typeof verifyAuthenticationResponse>> | undefined
    try {
      verification = await verifyAuthenticationResponse({
        response,
        expectedChallenge: (challenge) => sameHash(hashSecret(challenge), challengeHash),
        expectedOrigin: rp.origin,
        expectedRPID: rp.rpID,
        // The counter is judged below, once the signature has proved the response genuine.
        credential: { id: passkey.credential_id, publicKey: Buffer.from(passkey.public_key, 'base64url'), counter: 0 },
        requireUserVerification: true,
      })
    } catch (error) {
      log.info({ passkeyId: passkey.id, reason: (error as Error).message }, 'passkey assertion refused')
    }
    if (!verification?.verified) throw rejected()
    const { newCounter, credentialBackedUp } = verification.authenticationInfo
    const stored = Number(passkey.counter)
    const forward = newCounter === 0 ? stored === 0 : newCounter > stored
    if (!forward || !(await passkeys.recordUse(executor, passkey.id, newCounter, credentialBackedUp, new Date().toISOString()))) {
      // A genuine signature with a counter that did not move on: the key may have been copied.
      log.warn({ passkeyId: passkey.id, userId: user.id, stored, presented: newCounter }, 'passkey signature counter did not increase: refused')
      throw rejected()
    }
    return user
  }

  /** A random challenge, stored as the hash of its base64url form (as the options and clientDataJSON carry it). */
  private async newChallenge(purpose: ChallengePurpose, userId: number | null, { id = randomToken(16), handle = null as string | null } = {}): Promise<Uint8Array<ArrayBuffer>> {
    const challenge = new Uint8Array(randomBytes(32))
    const now = Date.now()
    const row = {
      id,
      challenge_hash: hashSecret(Buffer.from(challenge).toString('base64url')),
      purpose,
      user_id: userId,
      user_handle: handle,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + CHALLENGE_TTL_MS).toISOString(),
    }
    await this.deps.db.kysely.transaction().execute((trx) => this.deps.passkeys.createChallenge(trx, row, MAX_CHALLENGES_PER_PURPOSE))
    return challenge
  }
}

function cleanName(raw: unknown): string {
  if (typeof raw !== 'string') throw validationError({ name: [raw === undefined ? 'This field is required.' : 'Not a valid string.'] })
  const name = raw.trim()
  const problem = name === '' ? 'This field may not be blank.' : rules.first_name(name)
  if (problem || [...name].length > NAME_MAX) throw validationError({ name: [problem ?? `Ensure this field has no more than ${NAME_MAX} characters.`] })
  return name
}

const tooMany = () => validationError({ non_field_errors: [`An account holds at most ${MAX_PASSKEYS_PER_USER} passkeys: delete one to add another.`] })
const notFound = () => new AppError('not_found', { detail: 'No passkey of yours has this id.' })
