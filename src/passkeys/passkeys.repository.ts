import { type Kysely, sql } from 'kysely'
import type { Database, Dialect } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { ChallengePurpose, NewPasskeyRow, PasskeyChallengeRow, PasskeyRow } from './passkeys.table.js'

type Executor = Kysely<Database>

/** Expired challenges deleted alongside each new one: the table holds about five minutes' worth. */
const EXPIRED_PER_INSERT = 50
/** The first key of PostgreSQL advisory locks taken here (the second is the user id): "passkey", apart from activity's. */
const ADVISORY_LOCK_SPACE = 0x9a55

/** Data access for passkeys and their challenges; callers pass a transaction when they own one. */
export class PasskeysRepository {
  constructor(private readonly dialect: Dialect) {}

  listOfUser(executor: Executor, userId: number): Promise<PasskeyRow[]> {
    return executor.selectFrom('passkeys').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute()
  }

  findOfUser(executor: Executor, userId: number, id: number): Promise<PasskeyRow | undefined> {
    return executor.selectFrom('passkeys').selectAll().where('id', '=', id).where('user_id', '=', userId).executeTakeFirst()
  }

  findByCredentialId(executor: Executor, credentialId: string): Promise<PasskeyRow | undefined> {
    return executor.selectFrom('passkeys').selectAll().where('credential_id', '=', credentialId).executeTakeFirst()
  }

  async countOfUser(executor: Executor, userId: number): Promise<number> {
    const row = await executor.selectFrom('passkeys').select((eb) => eb.fn.countAll<number>().as('n')).where('user_id', '=', userId).executeTakeFirstOrThrow()
    return Number(row.n)
  }

  insert(executor: Executor, row: NewPasskeyRow): Promise<PasskeyRow> {
    return executor.insertInto('passkeys').values(row).returningAll().executeTakeFirstOrThrow()
  }

  rename(executor: Executor, userId: number, id: number, name: string): Promise<PasskeyRow | undefined> {
    return executor.updateTable('passkeys').set({ name }).where('id', '=', id).where('user_id', '=', userId).returningAll().executeTakeFirst()
  }

  /** The deleted passkey's name, or undefined when the user has no passkey with this id. */
  delete(executor: Executor, userId: number, id: number): Promise<{ name: string } | undefined> {
    return executor.deleteFrom('passkeys').where('id', '=', id).where('user_id', '=', userId).returning('name').executeTakeFirst()
  }

  /** Deletes every passkey of the user; their names, oldest first (an operator's reset, `--passkeys`). */
  async deleteAllOfUser(executor: Executor, userId: number): Promise<{ name: string }[]> {
    const rows = await executor.deleteFrom('passkeys').where('user_id', '=', userId).returning(['id', 'name']).execute()
    return rows.sort((a, b) => Number(a.id) - Number(b.id)).map(({ name }) => ({ name }))
  }

  /**
   * Records a verified use: the counter moves only forwards (or stays 0 for an authenticator that keeps none), in
   * one conditional statement, so of two assertions racing with the same counter only one counts.
   */
  async recordUse(executor: Executor, id: number, counter: number, backedUp: boolean, now: string): Promise<boolean> {
    const result = await executor
      .updateTable('passkeys')
      .set({ counter, last_used_at: now, backed_up: backedUp ? 1 : 0 })
      .where('id', '=', id)
      .where((eb) => (counter === 0 ? eb('counter', '=', 0) : eb('counter', '<', counter)))
      .executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  /**
   * Holds a lock on the user's passkeys and challenges until the transaction ends, on PostgreSQL (SQLite has one
   * writer anyway): what counts them and then adds one (a challenge past the cap, a passkey past the limit) runs
   * one request after the other, each statement seeing what the one before committed.
   */
  async lockOwner(executor: Executor, userId: number): Promise<void> {
    if (this.dialect === 'postgres') await sql`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_SPACE}, ${userId})`.execute(executor)
  }

  /**
   * Stores a new challenge (its hash) and clears some expired ones. One bound to a user ends all but the
   * `keep` newest live ones of that user and purpose, itself always kept. Run it in a transaction: it holds the
   * owner's lock until commit, so parallel requests prune one after the other and each sees the others' rows
   * (without it, 100 requests at once each deleted before any had inserted, and every one stayed).
   */
  async createChallenge(executor: Executor, challenge: PasskeyChallengeRow, keep: number): Promise<void> {
    const { user_id: userId, purpose } = challenge
    if (userId !== null) await this.lockOwner(executor, userId)
    await executor
      .deleteFrom('passkey_challenges')
      .where('id', 'in', (query) =>
        query.selectFrom('passkey_challenges').select('id').where('expires_at', '<=', challenge.created_at).limit(EXPIRED_PER_INSERT),
      )
      .execute()
    await executor.insertInto('passkey_challenges').values(challenge).execute()
    if (userId === null) return
    const others = (query: Executor) =>
      query.selectFrom('passkey_challenges').select('id').where('user_id', '=', userId).where('purpose', '=', purpose).where('id', '!=', challenge.id)
    await executor
      .deleteFrom('passkey_challenges')
      .where('user_id', '=', userId)
      .where('purpose', '=', purpose)
      .where('id', '!=', challenge.id)
      .where('id', 'not in', others(executor).orderBy('created_at', 'desc').orderBy('id').limit(keep - 1))
      .execute()
  }

  /**
   * Takes a challenge for use, by id or by hash: one DELETE … RETURNING whose WHERE names the purpose, the user
   * (none for a passwordless sign-in) and a live expiry, so it serves at most one request, and a challenge
   * presented by anyone else (another user, another ceremony) is neither returned nor used up.
   */
  consumeChallenge(
    executor: Executor,
    by: { id: string } | { hash: string },
    purpose: ChallengePurpose,
    userId: number | null,
    now: string,
  ): Promise<PasskeyChallengeRow | undefined> {
    const remove = executor.deleteFrom('passkey_challenges')
    return ('id' in by ? remove.where('id', '=', by.id) : remove.where('challenge_hash', '=', by.hash))
      .where('purpose', '=', purpose)
      .where('user_id', userId === null ? 'is' : '=', userId)
      .where('expires_at', '>', now)
      .returningAll()
      .executeTakeFirst()
  }

  /** Deletes up to `limit` challenges expired before `now`; returns how many. One short statement, by passkey_challenges_expires_at_idx. */
  deleteExpiredChallengesBatch(executor: Executor, now: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'passkey_challenges', key: 'id', column: 'expires_at' }, now, limit)
  }
}
