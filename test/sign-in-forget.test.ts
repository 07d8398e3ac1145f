import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RedisFailureStore } from '../src/auth/redis-failure-store.js'
import { type FailureStore, MemoryFailureStore, SignInLimiter } from '../src/auth/sign-in-limiter.js'
import { loadConfig } from '../src/config.js'
import type { AppError } from '../src/errors.js'
import { deferCleanup } from './helpers/cleanup.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'

const LIMITS = { maxFailuresPerAccount: 2, maxFailuresPerAddress: 100, windowSeconds: 600 }

/** Uses up an attempt limit: failures are the reservations left standing. */
async function failUntilLocked(limiter: SignInLimiter, attempt: Parameters<SignInLimiter['reserve']>[0]): Promise<void> {
  for (let i = 0; i < LIMITS.maxFailuresPerAccount; i += 1) await limiter.reserve(attempt)
  await assert.rejects(limiter.reserve(attempt), (error: AppError) => error.code === 'too_many_requests')
}

const allowed = (limiter: SignInLimiter, attempt: Parameters<SignInLimiter['reserve']>[0]) =>
  limiter.reserve(attempt).then(
    () => true,
    (error: AppError) => (error.code === 'too_many_requests' ? false : Promise.reject(error)),
  )

/** The same story on each store: account 7 and its device locked, and account 77 beside it. */
async function forgetsOneAccount(store: FailureStore): Promise<void> {
  const limiter = new SignInLimiter(store, LIMITS, loadConfig({}).signUpLimits)
  const seven = { account: { userId: 7 }, address: '203.0.113.1' }
  const sevenDevice = { ...seven, device: 'd'.repeat(22) }
  const seventySeven = { account: { userId: 77 }, address: '203.0.113.2' }
  const seventySevenDevice = { ...seventySeven, device: 'e'.repeat(22) }
  for (const attempt of [seven, sevenDevice, seventySeven, seventySevenDevice]) await failUntilLocked(limiter, attempt)

  assert.equal(await limiter.forgetAccount(7), 2, "the account's counter and its device's")
  assert.equal(await allowed(limiter, seven), true)
  assert.equal(await allowed(limiter, sevenDevice), true)
  // Another account, whose id starts with the same digit, and its device keep their counts.
  assert.equal(await allowed(limiter, seventySeven), false)
  assert.equal(await allowed(limiter, seventySevenDevice), false)
  assert.equal(await limiter.forgetAccount(7), 2, 'the two attempts just allowed')
  assert.equal(await limiter.forgetAccount(8), 0)
}

test('when an account is forgotten in the memory store, then it and its devices may try again and nobody else may', async () => {
  await forgetsOneAccount(new MemoryFailureStore())
})

test('when an account is forgotten in Redis, then it and its devices may try again and nobody else may', { skip: REDIS_SKIP }, async (t) => {
  // Glob characters in the key prefix must not widen (or empty) the device pattern.
  const store = new RedisFailureStore({ url: process.env.TEST_REDIS_URL as string, keyPrefix: `${testRedisPrefix(t)}[glob*?]:` })
  deferCleanup(t, () => store.close())
  await store.ready(3000)
  await forgetsOneAccount(store)
})

test('when Redis does not answer, then forgetting is a 503 naming Redis, not a success', async (t) => {
  const store = new RedisFailureStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x:', commandTimeoutMs: 200 })
  deferCleanup(t, () => store.close())
  const limiter = new SignInLimiter(store, LIMITS, loadConfig({}).signUpLimits)
  await assert.rejects(limiter.forgetAccount(7), (error: AppError) => error.code === 'service_unavailable' && error.dependency === 'redis')
})
