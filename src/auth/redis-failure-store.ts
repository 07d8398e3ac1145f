import { Redis } from 'ioredis'
import { dependencyUnavailable } from '../errors.js'
import type { HealthCheck } from '../health/health.routes.js'
import type { Counter, FailureStore, Reservation } from './sign-in-limiter.js'

// One decision, one round trip, atomic: either every counter is below its limit and each gets one more attempt,
// or nothing changes and the reply is the milliseconds until the last blocking window ends (0 = allowed), followed
// by the (1-based) positions of the blocking counters in KEYS.
// KEYS: the counters; ARGV[1]: the window in seconds; ARGV[1 + i]: the limit of KEYS[i].
// A window starts with a counter's first attempt and is never extended; a key left without a TTL gets one,
// so a count can never become permanent.
const RESERVE = `
local window = tonumber(ARGV[1])
local blocked = 0
local which = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('EXPIRE', key, window)
      ttl = window * 1000
    end
    if ttl > blocked then blocked = ttl end
    table.insert(which, i)
  end
end
if blocked > 0 then return {blocked, unpack(which)} end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
end
return {0}`

// Gives one attempt back; a count that reaches zero goes (never below zero, never a key without a TTL).
const RELEASE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local count = redis.call('DECR', KEYS[1])
if count <= 0 then redis.call('DEL', KEYS[1]) end
return count`

export interface RedisFailureStoreOptions {
  url: string
  keyPrefix: string
  /** A command that has not answered by then fails (and the request gets 503) instead of hanging. */
  commandTimeoutMs?: number
}

/** Attempt counts in Redis, shared by every instance that uses the same URL and prefix. */
export class RedisFailureStore implements FailureStore {
  readonly healthCheck: HealthCheck
  private readonly redis: Redis
  private readonly keyPrefix: string

  constructor({ url, keyPrefix, commandTimeoutMs = 2000 }: RedisFailureStoreOptions) {
    this.keyPrefix = keyPrefix
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

  async reserve(counters: readonly Counter[], windowSeconds: number): Promise<Reservation> {
    return this.call(async () => {
      const keys = counters.map(({ key }) => key)
      const limits = counters.map(({ limit }) => limit)
      const [blockedMs = 0, ...which] = ((await this.redis.eval(RESERVE, keys.length, ...keys, windowSeconds, ...limits)) as unknown[]).map(Number)
      if (blockedMs <= 0) return { allowed: true }
      return { allowed: false, retryAfterSeconds: Math.ceil(blockedMs / 1000), blocked: which.map((position) => keys[position - 1] as string) }
    })
  }

  async release(key: string): Promise<void> {
    await this.call(() => this.redis.eval(RELEASE, 1, key))
  }

  async forget(keys: readonly string[], prefixes: readonly string[] = []): Promise<number> {
    return this.call(async () => {
      const found = [...keys]
      for (const prefix of prefixes) {
        // SCAN matches stored names: the client adds its key prefix to commands' keys but not to a pattern, and
        // the names it finds carry the prefix, which DEL would add again. Glob characters in either are escaped.
        const match = `${`${this.keyPrefix}${prefix}`.replace(/[*?[\]\\]/g, '\\$&')}*`
        for await (const names of this.redis.scanStream({ match, count: 1000 })) {
          found.push(...(names as string[]).map((name) => name.slice(this.keyPrefix.length)))
        }
      }
      return found.length === 0 ? 0 : this.redis.del(...found)
    })
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
