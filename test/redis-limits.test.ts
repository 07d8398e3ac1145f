import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import { RedisFailureStore } from '../src/auth/redis-failure-store.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, testApp } from './helpers/app.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { suite } from './helpers/suite.js'

const REDIS_URL = process.env.TEST_REDIS_URL as string

suite('Redis failure store', REDIS_SKIP, () => {
  test('when failures are counted, then the window starts with the first one and later ones do not extend it', async (t) => {
    const keyPrefix = testRedisPrefix(t)
    const store = new RedisFailureStore({ url: REDIS_URL, keyPrefix })
    t.after(() => store.close())
    await store.ready(3000)
    assert.equal(await store.increment('k', 60), 1)
    const raw = new Redis(REDIS_URL)
    t.after(() => raw.disconnect())
    // Shorten the window by hand: a later increment must keep it, not restart it at 60 s.
    await raw.expire(`${keyPrefix}k`, 5)
    assert.equal(await store.increment('k', 60), 2)
    const ttl = await raw.ttl(`${keyPrefix}k`)
    assert.ok(ttl > 0 && ttl <= 5, `ttl ${ttl}`)
    const { count, retryAfterSeconds } = await store.get('k')
    assert.equal(count, 2)
    assert.ok(retryAfterSeconds > 0 && retryAfterSeconds <= 5, `retry after ${retryAfterSeconds}`)
    await store.reset('k')
    assert.deepEqual(await store.get('k'), { count: 0, retryAfterSeconds: 0 })
    assert.equal(await raw.exists(`${keyPrefix}k`), 0)
  })

  test('when many increments race, then every one is counted exactly once', async (t) => {
    const keyPrefix = testRedisPrefix(t)
    const stores = [0, 1].map(() => new RedisFailureStore({ url: REDIS_URL, keyPrefix }))
    t.after(() => Promise.all(stores.map((store) => store.close())))
    await Promise.all(stores.map((store) => store.ready(3000)))
    const counts = await Promise.all(Array.from({ length: 40 }, (_, i) => stores[i % 2]?.increment('race', 60)))
    assert.deepEqual(counts.map(Number).sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1))
    assert.equal((await stores[0]?.get('race'))?.count, 40)
  })
})

for (const dialect of DIALECTS) {
  const skip = dialect.skip || REDIS_SKIP
  suite(`sign-in limits in Redis (${dialect.name})`, skip, () => {
    const limits = { maxFailuresPerAccount: 3, maxFailuresPerAddress: 100, windowSeconds: 60 }

    test('when two app instances share a Redis prefix, then failures on one block the account on the other', async (t) => {
      const redisKeyPrefix = testRedisPrefix(t)
      const overrides = { redisUrl: REDIS_URL, redisKeyPrefix, signInLimits: limits }
      const a = await testApp(t, dialect.name, overrides)
      const b = await testApp(t, dialect.name, overrides)
      await b.client.signUp({ username: 'erin' })
      for (let i = 0; i < 3; i++) problemOf(await a.client.send('POST', '/api/auth/sign-in', { username: 'erin', password: 'nope-nope-1' }), 401)
      const blocked = await b.client.send('POST', '/api/auth/sign-in', { username: 'ERIN', password: GOOD_PASSWORD })
      problemOf(blocked, 429)
      const retryAfter = Number(blocked.headers['retry-after'])
      assert.ok(retryAfter > 0 && retryAfter <= 60, `retry-after ${retryAfter}`)
    })

    test('when instances use different prefixes, then their counts stay apart', async (t) => {
      const a = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits })
      const b = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits })
      await b.client.signUp({ username: 'frank' })
      for (let i = 0; i < 3; i++) problemOf(await a.client.send('POST', '/api/auth/sign-in', { username: 'frank', password: 'nope-nope-1' }), 401)
      assert.equal((await b.client.send('POST', '/api/auth/sign-in', { username: 'frank', password: GOOD_PASSWORD })).statusCode, 200)
    })

    test('when a sign-in succeeds, then the account count in Redis starts again', async (t) => {
      const { client } = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits })
      await client.signUp({ username: 'gina' })
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 2; i++) problemOf(await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: 'nope-nope-1' }), 401)
        assert.equal((await client.send('POST', '/api/auth/sign-in', { username: 'gina', password: GOOD_PASSWORD })).statusCode, 200)
      }
    })

    test('when Redis is configured, then /api/health checks it', async (t) => {
      const { client } = await testApp(t, dialect.name, { redisUrl: REDIS_URL, redisKeyPrefix: testRedisPrefix(t) })
      const response = await client.get('/api/health')
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json().checks, { database: 'ok', media: 'ok', redis: 'ok' })
    })
  })
}
