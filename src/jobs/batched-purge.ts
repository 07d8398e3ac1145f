import type { FastifyBaseLogger } from 'fastify'
import { type Kysely, sql } from 'kysely'
import type { Database } from '../db/database.js'

/** Rows per DELETE: each batch holds the write lock (SQLite) or its row locks (PostgreSQL) for milliseconds only. */
export const PURGE_BATCH_SIZE = 500

/**
 * One batch of a purge: deletes up to `limit` rows of `table` whose `column` is before `before`, in one short
 * statement that finds them by that column's index and deletes them by `key`; returns how many.
 */
export async function deleteBatchBefore(
  executor: Kysely<Database>,
  { table, key, column }: { table: keyof Database & string; key: string; column: string },
  before: string,
  limit: number,
): Promise<number> {
  const result = await sql`
    DELETE FROM ${sql.table(table)} WHERE ${sql.ref(key)} IN (
      SELECT ${sql.ref(key)} FROM ${sql.table(table)} WHERE ${sql.ref(column)} < ${before} LIMIT ${limit}
    )`.execute(executor)
  return Number(result.numAffectedRows ?? 0)
}

/**
 * Calls `deleteBatch(batchSize)` until a batch deletes fewer than `batchSize` rows, letting other work run
 * between batches; returns how many rows it deleted in all.
 */
export async function purgeInBatches(deleteBatch: (limit: number) => Promise<number>, batchSize = PURGE_BATCH_SIZE): Promise<number> {
  let total = 0
  for (;;) {
    const deleted = await deleteBatch(batchSize)
    total += deleted
    if (deleted < batchSize) return total
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/**
 * Runs `purge` every `intervalMs` (one run at a time) on a timer that does not hold the process open, logging
 * one line per run that removed something (`what`: "expired sessions", say). Returns a stop function that
 * clears the timer and waits for a run in progress.
 */
export function startPeriodicPurge(what: string, purge: () => Promise<number>, intervalMs: number, log: FastifyBaseLogger): () => Promise<void> {
  let running: Promise<void> | undefined
  const timer = setInterval(() => {
    if (running) return
    running = purge()
      .then(
        (removed) => {
          if (removed > 0) log.info({ removed }, `purged ${what}`)
        },
        // A database that is down now is tried again at the next interval; nothing depends on this run.
        (error: unknown) => log.warn({ err: error }, `purging ${what} failed`),
      )
      .finally(() => {
        running = undefined
      })
  }, intervalMs)
  timer.unref()
  return async () => {
    clearInterval(timer)
    await running
  }
}
