import { createHash } from 'node:crypto'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { SessionRow } from '../auth/sessions.table.js'
import type { Db } from '../db/database.js'
import { AppError } from '../errors.js'
import { toIso } from '../users/users.schemas.js'
import type { ActivityLog } from './activity.service.js'
import { type ClientInfo, deviceLabel, maskAddress } from './client.js'

/**
 * The id a session is shown by: SHA-256 of its real id (the refresh token's first half), cut to 128 bits. A
 * listing that leaks (a screenshot, a log) then names sessions without handing out half of any token; the
 * real id is 128 random bits, so this cannot be turned back.
 */
export function publicSessionId(sessionId: string): string {
  return createHash('sha256').update(`portrait session v1.${sessionId}`).digest('base64url').slice(0, 22)
}

/** A person's own sessions: listed with their device and masked address, and ended one by one. */
export class AccountSessions {
  constructor(private readonly deps: { db: Db; sessions: SessionsRepository; activity: ActivityLog }) {}

  /** The user's live sessions, newest first; `current` marks the one this request was made with. */
  async list(userId: number, currentSessionId: string) {
    const rows = await this.deps.sessions.listLiveOfUser(this.deps.db.kysely, userId, new Date().toISOString())
    return rows.map((row) => presentSession(row, currentSessionId))
  }

  /**
   * Ends the user's live session shown as `publicId` (its access tokens stop at their next request), recording
   * it in the same transaction; 404 when it is no live session of this user.
   */
  async end(userId: number, publicId: string, client: ClientInfo): Promise<void> {
    const { db, sessions, activity } = this.deps
    await db.kysely.transaction().execute(async (trx) => {
      const live = await sessions.listLiveOfUser(trx, userId, new Date().toISOString())
      const session = live.find((row) => publicSessionId(row.id) === publicId)
      if (!session) throw new AppError('not_found', { detail: 'You have no live session with this id.' })
      await sessions.delete(trx, session.id)
      await activity.record(trx, { userId, type: 'session_revoked', client, details: { device: deviceLabel(session.user_agent) } })
    })
  }
}

function presentSession(row: SessionRow, currentSessionId: string) {
  return {
    id: publicSessionId(row.id),
    current: row.id === currentSessionId,
    device: deviceLabel(row.user_agent),
    address: maskAddress(row.client_address),
    created_at: toIso(row.created_at) as string,
    last_used_at: toIso(row.last_used_at ?? null),
    // RFC 8176 methods, stored space-separated (migration 0008).
    amr: row.amr.split(' '),
  }
}
