import type { Config } from '../config.js'
import type { HealthCheck } from '../health/health.routes.js'
import { type FailureStore, MemoryFailureStore } from './sign-in-limiter.js'

/** The sign-in failure counts: in memory (one instance). */
export async function createFailureStore(_config: Pick<Config, 'redisUrl'>): Promise<FailureStore & { healthCheck?: HealthCheck }> {
  return new MemoryFailureStore()
}
