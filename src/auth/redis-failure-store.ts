import { Redis } from 'ioredis'
import { dependencyUnavailable } from '../errors.js'
import type { HealthCheck } from '../health/health.routes.js'
import type { FailureStore } from './sign-in-limiter.js'

// One round trip, atomic: the window starts with the first failure and is never extended by later ones.
// A key left without a TTL (TTL < 0) gets one, so a count can never become permanent.
const INCREMENT = `
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count`

const READ = `return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}`

export interface RedisFailureStoreOptions {
  url: string
  keyPrefix: string
  /** A command that has not answered by then fails (and the request gets 503) instead of hanging. */
  commandTimeoutMs?: number
}

/** Failure counts in Redis, shared by every instance that uses the same URL and prefix. */
export class RedisFailureStore implements FailureStore {
  readonly healthCheck: HealthCheck
  private readonly redis: Redis

  constructor({ url, keyPrefix, commandTimeoutMs = 2000 }: RedisFailureStoreOptions) {
    this.redis = new Redis(url, {
      keyPrefix,
      connectTimeout: commandTimeoutMs,
      commandTimeout: commandTimeoutMs,
      // While disconnected, fail at once rather than queue: a queued sign-in would hang its client.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Keep reconnecting for as long as the process lives, so the service recovers on its own.
      retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
    })
    // Without a listener ioredis reports every failed reconnect on stderr; /api/health reports the outage instead.
    this.redis.on('error', () => {})
    this.healthCheck = { name: 'redis', check: async () => void (await this.redis.ping()) }
  }

  /** Waits up to `ms` for the first connection; the store works (and recovers) without it, this only avoids a cold 503. */
  async ready(ms: number): Promise<void> {
    if (this.redis.status === 'ready') return
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.redis.off('ready', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.redis.once('ready', done)
    })
  }

  async increment(key: string, windowSeconds: number): Promise<number> {
    return this.call(async () => Number(await this.redis.eval(INCREMENT, 1, key, windowSeconds)))
  }

  async get(key: string): Promise<{ count: number; retryAfterSeconds: number }> {
    return this.call(async () => {
      const [count, ttlMs] = (await this.redis.eval(READ, 1, key)) as [string | null, number]
      if (count === null || ttlMs <= 0) return { count: 0, retryAfterSeconds: 0 }
      return { count: Number(count), retryAfterSeconds: Math.ceil(ttlMs / 1000) }
    })
  }

  async reset(key: string): Promise<void> {
    await this.call(() => this.redis.del(key))
  }

  async close(): Promise<void> {
    this.redis.disconnect()
  }

  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation()
    } catch (error) {
      throw dependencyUnavailable('redis', error)
    }
  }
}
