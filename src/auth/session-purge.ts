import type { FastifyBaseLogger } from 'fastify'
import { PURGE_BATCH_SIZE, purgeInBatches, startPeriodicPurge } from '../jobs/batched-purge.js'
import type { SessionsRepository } from './sessions.repository.js'

/**
 * Deletes every session that expired before `now`, `batchSize` rows at a time, letting other work run between
 * batches; returns how many it deleted. Ended sessions are deleted when they end; this removes the rest.
 */
export function purgeExpiredSessions(sessions: SessionsRepository, now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
  const before = now.toISOString()
  return purgeInBatches((limit) => sessions.deleteExpiredBatch(before, limit), batchSize)
}

/**
 * Purges expired sessions every `intervalMs` (one run at a time) on a timer that does not hold the process open.
 * Returns a stop function that clears the timer and waits for a run in progress.
 */
export function startSessionPurge(sessions: SessionsRepository, intervalMs: number, log: FastifyBaseLogger): () => Promise<void> {
  return startPeriodicPurge('expired sessions', () => purgeExpiredSessions(sessions), intervalMs, log)
}
