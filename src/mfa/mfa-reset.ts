import type { FactorNotices } from '../activity/factor-notices.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { Db } from '../db/database.js'
import { AppError } from '../errors.js'
import type { PasskeysRepository } from '../passkeys/passkeys.repository.js'
import type { UserRow } from '../users/users.table.js'
import type { MfaRepository } from './mfa.repository.js'

export interface MfaResetDeps {
  db: Db
  mfa: MfaRepository
  sessions: SessionsRepository
  passkeys: Pick<PasskeysRepository, 'deleteAllOfUser' | 'countOfUser'>
  /** The activity entry and mail notice of each change, recorded in the reset's transaction. */
  notices: FactorNotices
}

export interface MfaResetResult {
  /** False for an account that had passkeys but no TOTP (reset with `passkeys: true`). */
  factorRemoved: boolean
  sessionsEnded: number
  /** The names of the passkeys removed (`passkeys: true`), oldest first. */
  passkeysRemoved: string[]
  /** The passkeys left in place (without `passkeys: true`). */
  passkeysKept: number
}

/**
 * An operator's reset of a second factor (`portrait users reset-mfa`), for a person who lost both the
 * authenticator app and the recovery codes: no password, no step-up, the operator holds the database. What the
 * API's "turn TOTP off" removes goes the same way (MfaRepository.removeFactor), and so does every session: a
 * thief holding one must not keep it once the account is down to its password. One transaction: the factor, the
 * sessions, the passkeys if asked, the activity entries ({by: "operator"}) and the notices all commit or none.
 */
export class MfaReset {
  constructor(private readonly deps: MfaResetDeps) {}

  /** 409 `mfa_not_enrolled` (nothing changes) when the account has no active TOTP factor (and, with `passkeys`, no passkey either). */
  async reset(user: UserRow, options: { passkeys?: boolean } = {}): Promise<MfaResetResult> {
    const { db, mfa, sessions, passkeys, notices } = this.deps
    const result = await db.kysely.transaction().execute(async (trx) => {
      // Judged by the DELETE itself: of two operators racing, one resets and the other is refused. With
      // `passkeys`, an account that has passkeys but no TOTP (a stolen passkey) is reset all the same.
      const factorRemoved = await mfa.removeFactor(trx, user.id)
      if (!factorRemoved && !(options.passkeys && (await passkeys.countOfUser(trx, user.id)) > 0)) {
        throw new AppError('mfa_not_enrolled', { detail: 'This account has no active second factor.' })
      }
      if (factorRemoved) await notices.record(trx, user, 'mfa_disabled', 'operator', { by: 'operator' })
      // One entry and one notice per passkey, as when the person deletes them one by one, each with its name.
      const removed = options.passkeys ? await passkeys.deleteAllOfUser(trx, user.id) : []
      for (const { name } of removed) await notices.record(trx, user, 'passkey_removed', 'operator', { by: 'operator', passkey: name })
      const passkeysKept = options.passkeys ? 0 : await passkeys.countOfUser(trx, user.id)
      return { factorRemoved, sessionsEnded: await sessions.deleteAllOfUser(trx, user.id), passkeysRemoved: removed.map(({ name }) => name), passkeysKept }
    })
    notices.committed()
    return result
  }
}
