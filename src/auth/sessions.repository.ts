import type { Statement } from 'better-sqlite3'
import type { Kysely } from 'kysely'
import type { Database, Db } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { UserRow } from '../users/users.table.js'
import type { NewSessionRow, SessionRow } from './sessions.table.js'

type Executor = Kysely<Database>

// The hot path: one indexed lookup (sessions primary key, then users primary key) per authenticated request.
// The signing key's primary key is looked up in the same statement, so a revoked key's tokens stop at once
// on every instance (an HS256 kid has no row and is never revoked this way).
const LIVE_SESSION_USER = `
  SELECT u.* FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.id = $1 AND s.user_id = $2 AND s.expires_at > $3 AND u.is_active = $4
    AND NOT EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = $5 AND k.revoked_at IS NOT NULL)`

/** Data access for sessions; callers pass a transaction when they own one. */
export class SessionsRepository {
  private liveSessionUser?: Statement<unknown[], UserRow>

  constructor(private readonly db: Db) {
    // Prepared once: better-sqlite3 would otherwise re-parse the statement on every request.
    this.liveSessionUser = db.sqlite?.prepare(LIVE_SESSION_USER.replace(/\$\d/g, '?'))
  }

  /** The user behind a live session of that user, or undefined (signed out, expired, user gone or inactive, key revoked). */
  async findLiveSessionUser(sessionId: string, userId: number, now: string, kid: string): Promise<UserRow | undefined> {
    if (this.liveSessionUser) {
      // Prepared again only when SQLite's connection was replaced (after a read-only or unopenable file).
      const sqlite = this.db.sqlite!
      if (this.liveSessionUser.database !== sqlite) this.liveSessionUser = sqlite.prepare(this.liveSessionUser.source)
      return this.liveSessionUser.get(sessionId, userId, now, 1, kid)
    }
    const result = await this.db.pool!.query<UserRow>({
      name: 'live_session_user',
      text: LIVE_SESSION_USER,
      values: [sessionId, userId, now, true, kid],
    })
    return result.rows[0]
  }

  async create(executor: Executor, session: NewSessionRow): Promise<void> {
    await executor.insertInto('sessions').values(session).execute()
  }

  /**
   * Ends the user's sessions beyond the `keep` newest (by sign-in time), never `newId` (the one just started,
   * whatever the clock says); one statement, by the user_id index.
   */
  async deleteAllButNewest(executor: Executor, userId: number, newId: string, keep: number): Promise<void> {
    await executor
      .deleteFrom('sessions')
      .where('user_id', '=', userId)
      .where('id', '!=', newId)
      .where('id', 'not in', (query) =>
        query
          .selectFrom('sessions')
          .select('id')
          .where('user_id', '=', userId)
          .where('id', '!=', newId)
          .orderBy('created_at', 'desc')
          .orderBy('id', 'desc')
          .limit(keep - 1),
      )
      .execute()
  }

  findById(executor: Executor, id: string): Promise<SessionRow | undefined> {
    return executor.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst()
  }

  /**
   * Swaps the refresh hash only if it is still the one presented, so two racing refreshes cannot both win;
   * the replaced hash and the time are kept so that a repeat within the grace can be recognised.
   */
  async rotate(executor: Executor, id: string, fromHash: string, toHash: string, expiresAt: string, rotatedAt: string): Promise<boolean> {
    const result = await executor
      .updateTable('sessions')
      .set({ refresh_hash: toHash, previous_hash: fromHash, rotated_at: rotatedAt, expires_at: expiresAt, last_used_at: rotatedAt })
      .where('id', '=', id)
      .where('refresh_hash', '=', fromHash)
      .executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  /** Records that a second factor was proven in this session just now (step-up, see src/mfa/step-up.ts). */
  async markSecondFactor(executor: Executor, id: string, at: string): Promise<void> {
    await executor.updateTable('sessions').set({ second_factor_at: at }).where('id', '=', id).execute()
  }

  /** Records that the password was proven in this session just now (step-up without a second factor, src/mfa/step-up.ts). */
  async markReauthenticated(executor: Executor, id: string, at: string): Promise<void> {
    await executor.updateTable('sessions').set({ reauthenticated_at: at }).where('id', '=', id).execute()
  }

  /** The user's live sessions, newest first, by the user_id index (at most MAX_SESSIONS_PER_USER rows). */
  listLiveOfUser(executor: Executor, userId: number, now: string): Promise<SessionRow[]> {
    return executor
      .selectFrom('sessions')
      .selectAll()
      .where('user_id', '=', userId)
      .where('expires_at', '>', now)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute()
  }

  async delete(executor: Executor, id: string): Promise<void> {
    await executor.deleteFrom('sessions').where('id', '=', id).execute()
  }

  /** Ends every session of the user but `exceptId`; returns how many ended. */
  async deleteAllOfUser(executor: Executor, userId: number, exceptId?: string): Promise<number> {
    let query = executor.deleteFrom('sessions').where('user_id', '=', userId)
    if (exceptId !== undefined) query = query.where('id', '!=', exceptId)
    const result = await query.executeTakeFirst()
    return Number(result.numDeletedRows)
  }

  /** Deletes up to `limit` sessions that expired before `now`; returns how many. One short statement, by the expires_at index. */
  deleteExpiredBatch(now: string, limit: number): Promise<number> {
    return deleteBatchBefore(this.db.kysely, { table: 'sessions', key: 'id', column: 'expires_at' }, now, limit)
  }
}
