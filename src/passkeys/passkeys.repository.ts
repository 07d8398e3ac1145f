import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import type { ChallengePurpose, NewPasskeyRow, PasskeyChallengeRow, PasskeyRow } from './passkeys.table.js'

type Executor = Kysely<Database>

/** Expired challenges deleted alongside each new one: the table holds about five minutes' worth. */
const EXPIRED_PER_INSERT = 50

/** Data access for passkeys and their challenges; callers pass a transaction when they own one. */
export class PasskeysRepository {
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

  /** Stores a new challenge (its hash), replacing that user's earlier one for the same purpose; clears some expired ones. */
  async createChallenge(executor: Executor, challenge: PasskeyChallengeRow): Promise<void> {
    await executor
      .deleteFrom('passkey_challenges')
      .where('id', 'in', (query) =>
        query.selectFrom('passkey_challenges').select('id').where('expires_at', '<=', challenge.created_at).limit(EXPIRED_PER_INSERT),
      )
      .execute()
    if (challenge.user_id !== null) {
      await executor.deleteFrom('passkey_challenges').where('user_id', '=', challenge.user_id).where('purpose', '=', challenge.purpose).execute()
    }
    await executor.insertInto('passkey_challenges').values(challenge).execute()
  }

  /**
   * Takes a challenge for use, by id or by hash: the row is deleted in the same statement that reads it, so it
   * serves at most one request. Returns it only when it is live and of that purpose (and user).
   */
  async consumeChallenge(
    executor: Executor,
    by: { id: string } | { hash: string },
    purpose: ChallengePurpose,
    userId: number | null,
    now: string,
  ): Promise<PasskeyChallengeRow | undefined> {
    const remove = executor.deleteFrom('passkey_challenges')
    const row = await ('id' in by ? remove.where('id', '=', by.id) : remove.where('challenge_hash', '=', by.hash))
      .returningAll()
      .executeTakeFirst()
    if (!row || row.purpose !== purpose || row.user_id !== userId) return undefined
    return new Date(row.expires_at).getTime() > Date.parse(now) ? row : undefined
  }

  /** Deletes up to `limit` challenges expired at `now`; returns how many. One short statement, by passkey_challenges_expires_at_idx. */
  async deleteExpiredChallengesBatch(executor: Executor, now: string, limit: number): Promise<number> {
    const result = await executor
      .deleteFrom('passkey_challenges')
      .where('id', 'in', (query) => query.selectFrom('passkey_challenges').select('id').where('expires_at', '<=', now).limit(limit))
      .executeTakeFirst()
    return Number(result.numDeletedRows)
  }
}
