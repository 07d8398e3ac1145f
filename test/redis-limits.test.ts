import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { Redis } from 'ioredis'
import { buildApp } from '../src/app.js'
import { RedisFailureStore } from '../src/auth/redis-failure-store.js'
import type { Config } from '../src/config.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, TestClient, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { suite } from './helpers/suite.js'

const REDIS_URL = process.env.TEST_REDIS_URL as string

suite('Redis failure store', REDIS_SKIP, () => {
  test('when attempts are reserved, then the window starts with the first one and later ones do not extend it', async (t) => {
    const keyPrefix = testRedisPrefix(t)
    const store = new RedisFailureStore({ url: REDIS_URL, keyPrefix })
    deferCleanup(t, () => store.close())
    await store.ready(3000)
    assert.deepEqual(await store.reserve([{ key: 'k', limit: 2 }], 60), { allowed: true })
    const raw = new Redis(REDIS_URL)
    deferCleanup(t, () => raw.disconnect())
    // Shorten the window by hand: a later reservation must keep it, not restart it at 60 s.
    await raw.expire(`${keyPrefix}k`, 5)
    assert.deepEqual(await store.reserve([{ key: 'k', limit: 2 }], 60), { allowed: true })
    const ttl = await raw.ttl(`${keyPrefix}k`)
    assert.ok(ttl > 0 && ttl <= 5, `ttl ${ttl}`)
    const refused = await store.reserve([{ key: 'k', limit: 2 }], 60)
    assert.equal(refused.allowed, false)
    assert.ok(!refused.allowed && refused.retryAfterSeconds > 0 && refused.retryAfterSeconds <= 5, JSON.stringify(refused))
    assert.equal(await raw.get(`${keyPrefix}k`), '2', 'a refused attempt is not counted')
    await store.release('k')
    assert.equal(await raw.get(`${keyPrefix}k`), '1')
    await store.release('k')
    assert.equal(await raw.exists(`${keyPrefix}k`), 0)
    await store.release('k')
    assert.equal(await raw.exists(`${keyPrefix}k`), 0, 'releasing nothing leaves nothing (no negative count)')
  })

  test('when one counter of a decision is at its limit, then none of them is counted', async (t) => {
    const keyPrefix = testRedisPrefix(t)
    const store = new RedisFailureStore({ url: REDIS_URL, keyPrefix })
    deferCleanup(t, () => store.close())
    await store.ready(3000)
    const raw = new Redis(REDIS_URL)
    deferCleanup(t, () => raw.disconnect())
    // A count left without a TTL (by hand here) gets one when it blocks, so it cannot block for ever.
    await raw.set(`${keyPrefix}full`, '3')
    const refused = await store.reserve([{ key: 'open', limit: 10 }, { key: 'full', limit: 3 }], 60)
    assert.equal(refused.allowed, false)
    assert.equal(await raw.exists(`${keyPrefix}open`), 0)
    const ttl = await raw.ttl(`${keyPrefix}full`)
    assert.ok(ttl > 0 && ttl <= 60, `ttl ${ttl}`)
  })

  test('when many reservations race from two instances, then exactly the limit are allowed', async (t) => {
    const keyPrefix = testRedisPrefix(t)
    const stores = [0, 1].map(() => new RedisFailureStore({ url: REDIS_URL, keyPrefix }))
    deferCleanup(t, () => Promise.all(stores.map((store) => store.close())))
    await Promise.all(stores.map((store) => store.ready(3000)))
    const counters = [{ key: 'account', limit: 10 }, { key: 'address', limit: 100 }]
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => stores[i % 2]?.reserve(counters, 60)))
    assert.equal(results.filter((result) => result?.allowed).length, 10)
    const raw = new Redis(REDIS_URL)
    deferCleanup(t, () => raw.disconnect())
    assert.deepEqual(await raw.mget(`${keyPrefix}account`, `${keyPrefix}address`), ['10', '10'])
  })
})

/** Another app on the same config (database included), closed when the test ends. */
async function secondInstance(t: TestContext, config: Config) {
  const app = await buildApp(config)
  deferCleanup(t, () => app.close())
  return { app, client: new TestClient(app) }
}

for (const dialect of DIALECTS) {
  const skip = dialect.skip || REDIS_SKIP
  suite(`sign-in limits in Redis (${dialect.name})`, skip, () => {
    const limits = { maxFailuresPerAccount: 3, maxFailuresPerAddress: 100, windowSeconds: 60 }

    test('when two app instances share a Redis prefix, then failures on one block the account on the other', async (t) => {
      const redisKeyPrefix = testRedisPrefix(t)
      const overrides = { redisUrl: REDIS_URL, redisKeyPrefix, signInLimits: limits }
      const a = await testApp(t, dialect.name, overrides)
      // A second instance of the same deployment: same database, same Redis prefix.
      const b = await secondInstance(t, a.config)
      await b.client.signUp({ username: 'erin' })
      for (let i = 0; i < 3; i++) problemOf(await a.client.send('POST', '/api/auth/sign-in', { username: 'erin', password: 'nope-nope-1' }), 401)
      const blocked = await b.client.send('POST', '/api/auth/sign-in', { username: 'ERIN', password: GOOD_PASSWORD })
      problemOf(blocked, 429)
      const retryAfter = Number(blocked.headers['retry-after'])
      assert.ok(retryAfter > 0 && retryAfter <= 60, `retry-after ${retryAfter}`)
    })

    test('when instances use different prefixes, then their counts stay apart', async (t) => {
      const a = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits })
      const b = await secondInstance(t, { ...a.config, redisKeyPrefix: testRedisPrefix(t) })
      await b.client.signUp({ username: 'frank' })
      for (let i = 0; i < 3; i++) problemOf(await a.client.send('POST', '/api/auth/sign-in', { username: 'frank', password: 'nope-nope-1' }), 401)
      assert.equal((await b.client.send('POST', '/api/auth/sign-in', { username: 'frank', password: GOOD_PASSWORD })).statusCode, 200)
    })

    test('when a sign-in succeeds, then it gives back only its own attempt and the failures before it stay counted in Redis', async (t) => {
      const { client } = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits })
      await client.signUp({ username: 'gina' })
      for (let i = 0; i < 2; i++) problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: 'nope-nope-1' }), 401)
      for (let i = 0; i < 3; i++) assert.equal((await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: GOOD_PASSWORD })).statusCode, 200)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: 'nope-nope-1' }), 401)
      problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: GOOD_PASSWORD }), 429)
    })

    test('when Redis is configured, then /api/health checks it', async (t) => {
      const { client } = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t) })
      const response = await client.get('/api/health')
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json().checks, { database: 'ok', media: 'ok', redis: 'ok' })
    })
  })
}
