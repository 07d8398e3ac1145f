import type { Config } from '../config.js'
import type { HealthCheck } from '../health/health.routes.js'
import { RedisFailureStore } from './redis-failure-store.js'
import { type FailureStore, MemoryFailureStore } from './sign-in-limiter.js'

/** The sign-in failure counts: in Redis when REDIS_URL is set (shared by every instance), else in memory (one instance). */
export async function createFailureStore(
  config: Pick<Config, 'redisUrl' | 'redisKeyPrefix'>,
): Promise<FailureStore & { healthCheck?: HealthCheck }> {
  if (!config.redisUrl) return new MemoryFailureStore()
  const store = new RedisFailureStore({ url: config.redisUrl, keyPrefix: config.redisKeyPrefix })
  await store.ready(3000)
  return store
}
