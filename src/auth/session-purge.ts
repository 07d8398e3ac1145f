import type { FastifyBaseLogger } from 'fastify'
import type { SessionsRepository } from './sessions.repository.js'

/** Rows per DELETE: each batch holds the write lock (SQLite) or its row locks (PostgreSQL) for milliseconds only. */
export const PURGE_BATCH_SIZE = 500

/**
 * Deletes every session that expired before `now`, `batchSize` rows at a time, letting other work run between
 * batches; returns how many it deleted. Ended sessions are deleted when they end; this removes the rest.
 */
export async function purgeExpiredSessions(sessions: SessionsRepository, now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
  const before = now.toISOString()
  let total = 0
  for (;;) {
    const deleted = await sessions.deleteExpiredBatch(before, batchSize)
    total += deleted
    if (deleted < batchSize) return total
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/**
 * Purges expired sessions every `intervalMs` (one run at a time) on a timer that does not hold the process open.
 * Returns a stop function that clears the timer and waits for a run in progress.
 */
export function startSessionPurge(sessions: SessionsRepository, intervalMs: number, log: FastifyBaseLogger): () => Promise<void> {
  let running: Promise<void> | undefined
  const timer = setInterval(() => {
    if (running) return
    running = purgeExpiredSessions(sessions)
      .then(
        (removed) => {
          if (removed > 0) log.info({ removed }, 'purged expired sessions')
        },
        // A database that is down now is tried again at the next interval; nothing depends on this run.
        (error: unknown) => log.warn({ err: error }, 'purging expired sessions failed'),
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
