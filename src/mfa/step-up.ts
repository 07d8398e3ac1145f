import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { Db } from '../db/database.js'
import { AppError } from '../errors.js'
import type { UserRow } from '../users/users.table.js'
import type { AttemptClient, MfaService } from './mfa.service.js'

/** A second factor proven in the session this recently counts for a sensitive operation. */
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

/** Operations whose request has no body to carry otp_code: the session steps up first (mfa/verify, passkeys/verify). */
const PROVEN_BEFOREHAND: ReadonlySet<SensitiveOperation> = new Set(['add_passkey', 'delete_passkey'])

/** A second factor sent with the operation itself: the field names of the user routes' bodies. */
export interface StepUpProof {
  otp_code?: string
  recovery_code?: string
}

/**
 * Whether the operation asks the caller to step up at all (when the caller has a second factor). Deleting
 * someone else is a superuser's act on another account, judged by usersPolicy alone; everything else here is
 * the caller's own account or, for an email, an account the caller may edit.
 */
export function stepUpApplies(operation: SensitiveOperation, actor: UserRow, target: UserRow): boolean {
  return operation !== 'delete_account' || actor.id === target.id
}

/**
 * The one place that decides step-up: a caller with an active second factor passes if this session proved
 * one within STEP_UP_WINDOW_SECONDS, or with a right code (or recovery code) in the request (which then
 * refreshes the session's time, and counts against the sign-in limit when wrong). Otherwise 403
 * `step_up_required`, with `errors.otp_code`.
 */
export class StepUp {
  constructor(
    private readonly db: Db,
    private readonly sessions: SessionsRepository,
    private readonly service: MfaService,
  ) {}

  async require(
    operation: SensitiveOperation,
    request: { actor: UserRow; target: UserRow; sessionId: string; proof: StepUpProof; client: AttemptClient },
  ): Promise<void> {
    const { actor, target, sessionId, proof, client } = request
    if (!stepUpApplies(operation, actor, target)) return
    // The same answer sign-in gets: an account with any second factor steps up.
    if ((await this.service.methodsFor(actor.id)).length === 0) return
    const session = await this.sessions.findById(this.db.kysely, sessionId)
    const provenAt = session?.second_factor_at ? new Date(session.second_factor_at).getTime() : Number.NaN
    if (Date.now() - provenAt <= STEP_UP_WINDOW_SECONDS * 1000) return
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
}
