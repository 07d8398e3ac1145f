import { type Kysely, sql } from 'kysely'
import type { Database, Db, Dialect } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { ActivityRow, NewActivityRow } from './activity.table.js'

type Executor = Kysely<Database>

/** The first key of PostgreSQL advisory locks taken here (the second is the user id): "activity" in no one else's space. */
const ADVISORY_LOCK_SPACE = 0x0ac7

/** Data access for security activity; callers pass a transaction when they own one. */
export class ActivityRepository {
  private readonly dialect: Dialect

  constructor(private readonly db: Db) {
    this.dialect = db.dialect
  }

  async insert(executor: Executor, row: NewActivityRow): Promise<void> {
    await executor.insertInto('security_activity').values(row).execute()
  }

  /**
   * Inserts the entry unless the user already has one of its type at or after `since`, by the (user_id, id)
   * index; returns whether it inserted. SQLite runs one writer at a time; on PostgreSQL two instances could
   * both find none under READ COMMITTED, so the check and the insert hold a transaction lock on the user first.
   */
  async insertUnlessSince(executor: Executor, row: NewActivityRow, since: string): Promise<boolean> {
    if (this.dialect === 'sqlite') return this.insertIfNone(executor, row, since)
    return executor.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_SPACE}, ${row.user_id})`.execute(trx)
      return this.insertIfNone(trx, row, since)
    })
  }

  private async insertIfNone(executor: Executor, row: NewActivityRow, since: string): Promise<boolean> {
    const timestamp = sql.raw(this.dialect === 'postgres' ? 'timestamptz' : 'text')
    const result = await sql`
      INSERT INTO security_activity (user_id, type, at, address, user_agent, details)
      SELECT CAST(${row.user_id} AS integer), CAST(${row.type} AS text), CAST(${row.at} AS ${timestamp}),
        CAST(${row.address ?? null} AS text), CAST(${row.user_agent ?? null} AS text), CAST(${row.details ?? null} AS text)
      WHERE NOT EXISTS (
        SELECT 1 FROM security_activity WHERE user_id = ${row.user_id} AND type = ${row.type} AND at >= CAST(${since} AS ${timestamp})
      )`.execute(executor)
    return Number(result.numAffectedRows ?? 0) === 1
  }

  /** Whether the user has a recorded sign-in from exactly this address and user agent (by the (user_id, id) index). */
  async signedInFrom(executor: Executor, userId: number, address: string | null, userAgent: string | null): Promise<boolean> {
    const row = await executor
      .selectFrom('security_activity')
      .select('id')
      .where('user_id', '=', userId)
      .where('type', '=', 'sign_in')
      .where('address', address === null ? 'is' : '=', address)
      .where('user_agent', userAgent === null ? 'is' : '=', userAgent)
      .limit(1)
      .executeTakeFirst()
    return row !== undefined
  }

  /** Up to `limit` entries of the user, newest first, older than the entry `before` when given. */
  page(executor: Executor, userId: number, limit: number, before?: number): Promise<ActivityRow[]> {
    let query = executor.selectFrom('security_activity').selectAll().where('user_id', '=', userId)
    if (before !== undefined) query = query.where('id', '<', before)
    return query.orderBy('id', 'desc').limit(limit).execute()
  }

  /** Deletes up to `limit` entries recorded before `before`; returns how many. One short statement, by the `at` index. */
  deleteOlderThanBatch(before: string, limit: number): Promise<number> {
    return deleteBatchBefore(this.db.kysely, { table: 'security_activity', key: 'id', column: 'at' }, before, limit)
  }
}
