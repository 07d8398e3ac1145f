import { type Kysely, sql } from 'kysely'
import type { Database, Dialect } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { MfaChallengeRow, MfaTotpRow } from './mfa.tables.js'

type Executor = Kysely<Database>

/** The first key of PostgreSQL advisory locks taken here (the second is the user id): "MFA", apart from the others. */
const ADVISORY_LOCK_SPACE = 0x0f2a

/** Data access for second factors; callers pass a transaction when they own one. */
export class MfaRepository {
  constructor(private readonly dialect: Dialect) {}

  findTotp(executor: Executor, userId: number): Promise<MfaTotpRow | undefined> {
    return executor.selectFrom('mfa_totp').selectAll().where('user_id', '=', userId).executeTakeFirst()
  }

  /**
   * What a sign-in needs to know in one indexed lookup: whether the account has an active TOTP factor and how
   * many recovery codes it has left. Undefined for an account without one (the common case).
   */
  async activeFactors(executor: Executor, userId: number): Promise<{ recoveryCodesLeft: number } | undefined> {
    const row = await executor
      .selectFrom('mfa_totp as t')
      .select((eb) =>
        eb
          .selectFrom('mfa_recovery_codes as r')
          .select((inner) => inner.fn.countAll<number>().as('n'))
          .whereRef('r.user_id', '=', 't.user_id')
          .as('left'),
      )
      .where('t.user_id', '=', userId)
      .where('t.confirmed_at', 'is not', null)
      .executeTakeFirst()
    return row ? { recoveryCodesLeft: Number(row.left ?? 0) } : undefined
  }

  /**
   * Locks the user's active factor until the transaction ends (SQLite has one writer anyway); false without one.
   * Whatever replaces the factor's recovery codes holds it, so of two regenerations the second waits for the
   * first to commit and then replaces its codes: without it, each DELETE saw only the codes committed before it
   * began and each INSERT added ten more (8 at once left 50 live on PostgreSQL).
   */
  async lockActiveTotp(executor: Executor, userId: number): Promise<boolean> {
    const row = await executor
      .selectFrom('mfa_totp')
      .select('user_id')
      .where('user_id', '=', userId)
      .where('confirmed_at', 'is not', null)
      .$if(this.dialect === 'postgres', (query) => query.forUpdate())
      .executeTakeFirst()
    return row !== undefined
  }

  /**
   * A pending enrolment: replaces a pending one, never an active factor (false then). One upsert whose WHERE
   * decides: a DELETE then an INSERT let parallel enrolments find each other's pending row and answer 409.
   */
  async putPendingTotp(executor: Executor, userId: number, sealedSecret: string, now: string): Promise<boolean> {
    const placed = await executor
      .insertInto('mfa_totp')
      .values({ user_id: userId, secret: sealedSecret, last_step: 0, created_at: now, confirmed_at: null })
      .onConflict((conflict) =>
        conflict
          .column('user_id')
          .doUpdateSet({ secret: sealedSecret, last_step: 0, created_at: now })
          .where('mfa_totp.confirmed_at', 'is', null),
      )
      .executeTakeFirst()
    return Number(placed.numInsertedOrUpdatedRows ?? 0n) === 1
  }

  /**
   * Records `step` as the last accepted one if it is later than the one before: one conditional UPDATE, so two
   * requests with the same code cannot both pass. Only while the factor still has `sealedSecret`, the secret the
   * code was checked against (an enrolment restarted meanwhile must not be activated by the old secret's code).
   * `confirm` activates a pending factor with it instead.
   */
  async acceptStep(executor: Executor, userId: number, sealedSecret: string, step: number, confirm?: { at: string }): Promise<boolean> {
    let query = executor.updateTable('mfa_totp').set({ last_step: step, ...(confirm ? { confirmed_at: confirm.at } : {}) })
    query = query.where('user_id', '=', userId).where('secret', '=', sealedSecret).where('last_step', '<', step)
    query = confirm ? query.where('confirmed_at', 'is', null) : query.where('confirmed_at', 'is not', null)
    const result = await query.executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  /** True when there was an active factor to delete (a pending enrolment goes too, and counts for nothing). */
  async deleteTotp(executor: Executor, userId: number): Promise<boolean> {
    const rows = await executor.deleteFrom('mfa_totp').where('user_id', '=', userId).returning('confirmed_at').execute()
    return rows.some((row) => row.confirmed_at !== null)
  }

  /**
   * Removes the user's second factor: the TOTP factor (or a pending enrolment) and every recovery code. True when
   * an active factor was removed — of two racing removals only one sees it, so only one records the change.
   */
  async removeFactor(executor: Executor, userId: number): Promise<boolean> {
    const removed = await this.deleteTotp(executor, userId)
    await this.replaceRecoveryCodes(executor, userId, [], '')
    return removed
  }

  /** Replaces every recovery code of the user with these hashes. */
  async replaceRecoveryCodes(executor: Executor, userId: number, hashes: readonly string[], now: string): Promise<void> {
    await executor.deleteFrom('mfa_recovery_codes').where('user_id', '=', userId).execute()
    if (hashes.length === 0) return
    await executor
      .insertInto('mfa_recovery_codes')
      .values(hashes.map((code_hash) => ({ user_id: userId, code_hash, created_at: now })))
      .execute()
  }

  /** Uses up one recovery code: true only for the one request whose DELETE removed it. */
  async consumeRecoveryCode(executor: Executor, userId: number, hash: string): Promise<boolean> {
    const result = await executor.deleteFrom('mfa_recovery_codes').where('user_id', '=', userId).where('code_hash', '=', hash).executeTakeFirst()
    return result.numDeletedRows === 1n
  }

  async createChallenge(executor: Executor, row: MfaChallengeRow): Promise<void> {
    await executor.insertInto('mfa_challenges').values(row).execute()
  }

  findLiveChallenge(executor: Executor, idHash: string, now: string): Promise<MfaChallengeRow | undefined> {
    return executor.selectFrom('mfa_challenges').selectAll().where('id_hash', '=', idHash).where('expires_at', '>', now).executeTakeFirst()
  }

  /** Uses up a challenge: true only for the one request whose DELETE removed it while it was live. */
  async consumeChallenge(executor: Executor, idHash: string, now: string): Promise<boolean> {
    const result = await executor.deleteFrom('mfa_challenges').where('id_hash', '=', idHash).where('expires_at', '>', now).executeTakeFirst()
    return result.numDeletedRows === 1n
  }

  /**
   * Holds a lock on the user's sign-in challenges until the transaction ends, on PostgreSQL (SQLite has one writer
   * anyway). Taken before a challenge is added and the rest pruned: otherwise each of parallel sign-ins pruned
   * without seeing the others' uncommitted rows, and 8 at once left 8 live.
   */
  async lockChallenges(executor: Executor, userId: number): Promise<void> {
    if (this.dialect === 'postgres') await sql`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_SPACE}, ${userId})`.execute(executor)
  }

  /**
   * Ends the user's expired challenges and all but the `keep` newest live ones, `kept` (the one just made) always
   * among them, whatever the order of equal timestamps: a few rows per user at most.
   */
  async pruneChallenges(executor: Executor, userId: number, now: string, keep: number, kept: string): Promise<void> {
    await executor
      .deleteFrom('mfa_challenges')
      .where('user_id', '=', userId)
      .where('id_hash', '!=', kept)
      .where((eb) =>
        eb.or([
          eb('expires_at', '<=', now),
          eb(
            'id_hash',
            'not in',
            eb
              .selectFrom('mfa_challenges')
              .select('id_hash')
              .where('user_id', '=', userId)
              .where('id_hash', '!=', kept)
              .orderBy('expires_at', 'desc')
              .orderBy('id_hash')
              .limit(keep - 1),
          ),
        ]),
      )
      .execute()
  }

  /** Deletes up to `limit` challenges expired before `now`; returns how many. One short statement, by mfa_challenges_expires_at_idx. */
  deleteExpiredChallengesBatch(executor: Executor, now: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'mfa_challenges', key: 'id_hash', column: 'expires_at' }, now, limit)
  }
}
