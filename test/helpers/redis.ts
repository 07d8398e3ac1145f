import type { TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { deferCleanup } from './cleanup.js'

export const REDIS_SKIP: string | false = process.env.TEST_REDIS_URL ? false : 'TEST_REDIS_URL is not set'

/** A key prefix of this test's own on TEST_REDIS_URL; its keys are deleted when the test ends. */
export function testRedisPrefix(t: TestContext): string {
  const prefix = `portrait-test:${process.pid}:${Math.random().toString(36).slice(2, 10)}:`
  deferCleanup(t, async () => {
    const redis = new Redis(process.env.TEST_REDIS_URL as string)
    try {
      const keys = await redis.keys(`${prefix}*`)
      if (keys.length > 0) await redis.del(...keys)
    } finally {
      redis.disconnect()
    }
  })
  return prefix
}
