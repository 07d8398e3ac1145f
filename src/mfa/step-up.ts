import { checkPassword, hasUsablePassword } from '../auth/password-check.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { SessionRow } from '../auth/sessions.table.js'
import type { SignInLimiter } from '../auth/sign-in-limiter.js'
import type { Db } from '../db/database.js'
import { AppError, validationError } from '../errors.js'
import type { UserRow } from '../users/users.table.js'
import type { AttemptClient, MfaService } from './mfa.service.js'

/** A second factor (or, without one, the password) proven in the session this recently counts for a sensitive operation. */
export const STEP_UP_WINDOW_SECONDS = 300

/**
 * The operations that need a recent second factor from a caller who has one. Adding or deleting a passkey is
 * among them: a passkey signs in with no password and no code, so one added with a stolen access token alone
 * would outlive every password change and bypass the second factor for good.
 */
export type SensitiveOperation =
  | 'change_password'
  | 'change_email'
  | 'delete_account'
  | 'disable_second_factor'
  | 'regenerate_recovery_codes'
  | 'add_passkey'
  | 'delete_passkey'
  | 'enrol_second_factor'
  | 'change_privileges'
  | 'delete_other_account'

/** Operations whose request has no body to carry otp_code: the session steps up first (mfa/verify, passkeys/verify). */
const PROVEN_BEFOREHAND: ReadonlySet<SensitiveOperation> = new Set(['add_passkey', 'delete_passkey', 'enrol_second_factor'])

/**
 * The operations that add a way into the account or redirect its recovery, and a superuser's acts on others. A caller WITHOUT a second factor
 * proves the password for them (the sign-in, a re-authentication or current_password, within the window):
 * otherwise a stolen access token alone would change the email (then reset the password through it), or add
 * a passkey or an authenticator app that outlives every password reset. The others need no more from such a
 * caller than today: changing the password and deleting the account take current_password anyway.
 */
const PASSWORD_WITHOUT_FACTOR: ReadonlySet<SensitiveOperation> = new Set([
  'change_email',
  'add_passkey',
  // A passkey may be the account's only way in (one imported without a password): not for a stolen token to remove.
  'delete_passkey',
  'enrol_second_factor',
  // A superuser's acts on others: a stolen superuser token must not make its holder a superuser of their own
  // (who could then do anything, freshly signed in) or delete accounts.
  'change_privileges',
  'delete_other_account',
])

/** Operations whose request has no body to carry current_password: the session re-authenticates first. */
const REAUTHENTICATED_BEFOREHAND: ReadonlySet<SensitiveOperation> = new Set(['add_passkey', 'delete_passkey', 'enrol_second_factor'])

/** A second factor (or the password) sent with the operation itself: the field names of the user routes' bodies. */
export interface StepUpProof {
  otp_code?: string
  recovery_code?: string
  /** For an account without a second factor: its password, checked and counted as a sign-in's. */
  current_password?: string
}

/**
 * Whether the operation asks the caller to step up at all (when the caller has a second factor). Deleting
 * someone else is a superuser's act on another account, judged by usersPolicy alone; everything else here is
 * the caller's own account or, for an email, an account the caller may edit.
 */
export function stepUpApplies(operation: SensitiveOperation, actor: UserRow, target: UserRow): boolean {
  return operation !== 'delete_account' || actor.id === target.id
}

/** Whether `at` (a session's timestamp) lies within STEP_UP_WINDOW_SECONDS of now. */
function recent(at: string | Date | null | undefined): boolean {
  const time = at ? new Date(at).getTime() : Number.NaN
  return Date.now() - time <= STEP_UP_WINDOW_SECONDS * 1000
}

/**
 * The one place that decides step-up.
 * - A caller with an active second factor passes if this session proved one within STEP_UP_WINDOW_SECONDS,
 *   or with a right code (or recovery code) in the request (which then refreshes the session's time, and
 *   counts against the sign-in limit when wrong). Otherwise 403 `step_up_required`, with `errors.otp_code`.
 * - A caller without one passes the operations of PASSWORD_WITHOUT_FACTOR if this session signed in (with a
 *   password or a passkey), re-authenticated or proved a passkey within the window, or with the right
 *   current_password in the request (counted against the sign-in limit; it marks the session re-authenticated).
 *   Otherwise 403 `reauthentication_required`, with `errors.current_password`.
 */
export class StepUp {
  constructor(
    private readonly db: Db,
    private readonly sessions: SessionsRepository,
    private readonly service: MfaService,
    private readonly limiter: SignInLimiter,
  ) {}

  async require(
    operation: SensitiveOperation,
    request: { actor: UserRow; target: UserRow; sessionId: string; proof: StepUpProof; client: AttemptClient },
  ): Promise<void> {
    const { actor, target, sessionId, proof, client } = request
    if (!stepUpApplies(operation, actor, target)) return
    // The same answer sign-in gets: an account with any second factor steps up.
    if ((await this.service.methodsFor(actor.id)).length === 0) return this.requirePassword(operation, request)
    const session = await this.sessions.findById(this.db.kysely, sessionId)
    if (recent(session?.second_factor_at)) return
    const sent = proof.otp_code !== undefined || proof.recovery_code !== undefined
    if (sent) {
      const factor = proof.recovery_code !== undefined ? { recovery_code: proof.recovery_code } : { code: proof.otp_code }
      if (await this.service.attempt(actor.id, factor, client)) {
        await this.service.markSession(sessionId)
        return
      }
    }
    throw new AppError('step_up_required', {
      detail: sent
        ? 'That code is not right or was used already.'
        : PROVEN_BEFOREHAND.has(operation)
          ? 'This needs a fresh second factor: verify at POST /api/users/me/mfa/verify (a code) or /api/users/me/passkeys/verify (a passkey) first.'
          : 'This needs a fresh second factor: send otp_code (or recovery_code), or verify at POST /api/users/me/mfa/verify first.',
      errors: { otp_code: [sent ? 'The code is not right or was used already.' : 'Enter a code from your authenticator app.'] },
    })
  }

  /**
   * POST /api/users/me/reauthenticate: the password, checked and counted as a sign-in's, marks the session as
   * having just proven it. 400 on `password` when wrong (429 once the account's limit is used up).
   */
  async reauthenticate(actor: UserRow, sessionId: string, password: string, client: AttemptClient): Promise<void> {
    await this.checkPassword(actor, password, client, 'password')
    await this.sessions.markReauthenticated(this.db.kysely, sessionId, new Date().toISOString())
  }

  /** The rule for a caller without a second factor (see the class). */
  private async requirePassword(
    operation: SensitiveOperation,
    request: { actor: UserRow; sessionId: string; proof: StepUpProof; client: AttemptClient },
  ): Promise<void> {
    if (!PASSWORD_WITHOUT_FACTOR.has(operation)) return
    const { actor, sessionId, proof, client } = request
    const session = await this.sessions.findById(this.db.kysely, sessionId)
    if (session && provenRecently(session)) return
    if (proof.current_password !== undefined) {
      await this.checkPassword(actor, proof.current_password, client, 'current_password')
      await this.sessions.markReauthenticated(this.db.kysely, sessionId, new Date().toISOString())
      return
    }
    throw new AppError('reauthentication_required', {
      detail: !hasUsablePassword(actor)
        ? NO_PASSWORD
        : REAUTHENTICATED_BEFOREHAND.has(operation)
          ? 'This needs your password again: confirm it at POST /api/users/me/reauthenticate first.'
          : 'This needs your password again: send current_password, or confirm it at POST /api/users/me/reauthenticate first.',
      errors: { current_password: [hasUsablePassword(actor) ? 'Enter your password to confirm it’s you.' : NO_PASSWORD] },
    })
  }

  /**
   * An account imported without a password has nothing to check (and nothing to guess): 400 at once, saying
   * how such an account proves itself; otherwise the sign-in's check, counted.
   */
  private async checkPassword(actor: UserRow, password: string, client: AttemptClient, field: string): Promise<void> {
    if (!hasUsablePassword(actor)) throw validationError({ [field]: [NO_PASSWORD] })
    await checkPassword(this.limiter, actor, password, client.address, field)
  }
}

/**
 * For a caller without a second factor: the session's sign-in (a password, a passkey), a re-authentication, or a
 * passkey proven at POST …/passkeys/verify, within the window.
 */
function provenRecently(session: SessionRow): boolean {
  return recent(session.created_at) || recent(session.reauthenticated_at) || recent(session.second_factor_at)
}

const NO_PASSWORD =
  'This account has no password: sign in again (a passkey works) or confirm with a passkey, or set a password with a password reset, then try again.'
