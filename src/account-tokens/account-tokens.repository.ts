import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { AccountTokenRow, TokenPurpose } from './account-tokens.table.js'

type Executor = Kysely<Database>

/** Data access for reset and verification tokens; the caller owns the transaction. */
export class AccountTokensRepository {
  async insert(
    executor: Executor,
    token: { tokenHash: string; purpose: TokenPurpose; userId: number; binding: string; createdAt: Date; expiresAt: Date },
  ): Promise<void> {
    await executor
      .insertInto('account_tokens')
      .values({
        token_hash: token.tokenHash,
        purpose: token.purpose,
        user_id: token.userId,
        binding: token.binding,
        created_at: token.createdAt.toISOString(),
        expires_at: token.expiresAt.toISOString(),
      })
      .execute()
  }

  /** The token with this hash and purpose, if unused and unexpired at `now`. */
  findLive(executor: Executor, tokenHash: string, purpose: TokenPurpose, now: Date): Promise<AccountTokenRow | undefined> {
    return executor
      .selectFrom('account_tokens')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .where('purpose', '=', purpose)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now.toISOString())
      .executeTakeFirst()
  }

  /** Uses the token up if it is still live: one conditional UPDATE, so of two racing requests exactly one wins. */
  async consume(executor: Executor, tokenHash: string, now: Date): Promise<boolean> {
    const result = await executor
      .updateTable('account_tokens')
      .set({ used_at: now.toISOString() })
      .where('token_hash', '=', tokenHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now.toISOString())
      .executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  /** Voids every live token of the user for this purpose (a reset done: the other links of the user stop working). */
  async voidAllOfUser(executor: Executor, userId: number, purpose: TokenPurpose, now: Date): Promise<void> {
    await executor
      .updateTable('account_tokens')
      .set({ used_at: now.toISOString() })
      .where('user_id', '=', userId)
      .where('purpose', '=', purpose)
      .where('used_at', 'is', null)
      .execute()
  }

  /** Deletes up to `limit` tokens that expired before `before`; returns how many. One short statement, by the expires_at index. */
  deleteExpiredBatch(executor: Executor, before: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'account_tokens', key: 'token_hash', column: 'expires_at' }, before, limit)
  }

  /** Deletes up to `limit` tokens used (or voided) before `before`; returns how many. One short statement, by the used_at index. */
  deleteUsedBatch(executor: Executor, before: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'account_tokens', key: 'token_hash', column: 'used_at' }, before, limit)
  }
}
