import assert from 'node:assert/strict'
import { test } from 'node:test'
import { addressBucket, MemoryFailureStore } from '../src/auth/sign-in-limiter.js'

test('when addresses are bucketed, then IPv4 stays itself and IPv6 becomes its /64, however it is written', () => {
  assert.equal(addressBucket('203.0.113.7'), '203.0.113.7')
  assert.equal(addressBucket('::ffff:203.0.113.7'), '203.0.113.7')
  assert.equal(addressBucket('::FFFF:203.0.113.7'), '203.0.113.7')
  const bucket = '2001:db8:7:8::/64'
  for (const address of ['2001:db8:7:8::1', '2001:0DB8:0007:0008:ffff:ffff:ffff:ffff', '2001:db8:7:8:1:2:3:4', '2001:db8:7:8::', '2001:db8:7:8:0:0:1.2.3.4', '2001:db8:7:8::9%eth0']) {
    assert.equal(addressBucket(address), bucket, address)
  }
  assert.notEqual(addressBucket('2001:db8:7:9::1'), bucket)
  assert.equal(addressBucket('::1'), '0:0:0:0::/64')
  assert.equal(addressBucket('2001:db8::'), '2001:db8:0:0::/64')
  assert.equal(addressBucket('fe80::1:2:3:4'), 'fe80:0:0:0::/64')
})

test('when a proxy writes ports, brackets or IPv4-mapped forms, or a client writes no address at all, then each client still has one bucket', () => {
  // Each group: spellings of one client, as proxies write X-Forwarded-For (before: a bucket per port).
  const groups: Record<string, string[]> = {
    '203.0.113.7': ['203.0.113.7:40001', '203.0.113.7:40002', '203.0.113.7:', '::ffff:cb00:7107', '0:0:0:0:0:ffff:203.0.113.7', '[::ffff:203.0.113.7]:443'],
    '2001:db8:9:9::/64': ['[2001:db8:9:9::1]:5000', '[2001:db8:9:9::2]:5001', '[2001:db8:9:9::3]', '[2001:db8:9:9::4%eth0]:1'],
    invalid: ['not an address', 'garbage1', 'garbage2', '', 'unknown', '203.0.113.7:80:80', '[]', '1.2.3.4.5'],
  }
  for (const [bucket, spellings] of Object.entries(groups)) {
    for (const address of spellings) assert.equal(addressBucket(address), bucket, address)
  }
})

test('when the memory store takes parallel reservations, then exactly the limit are allowed and a refused one counts nothing', async () => {
  const store = new MemoryFailureStore()
  const counters = [
    { key: 'account', limit: 10 },
    { key: 'address', limit: 100 },
  ]
  const results = await Promise.all(Array.from({ length: 200 }, () => store.reserve(counters, 60)))
  assert.equal(results.filter((result) => result.allowed).length, 10)
  for (const result of results) if (!result.allowed) assert.ok(result.retryAfterSeconds > 0 && result.retryAfterSeconds <= 60)
  // The address took only the ten allowed attempts, so it has 90 left for other accounts.
  const others = await Promise.all(Array.from({ length: 100 }, (_, n) => store.reserve([{ key: `other${n}`, limit: 10 }, counters[1] as (typeof counters)[1]], 60)))
  assert.equal(others.filter((result) => result.allowed).length, 90)
  await store.release('account')
  assert.deepEqual(await store.reserve(counters.slice(0, 1), 60), { allowed: true })
  for (let n = 0; n < 12; n++) await store.release('account')
  const afterRelease = await Promise.all(Array.from({ length: 12 }, () => store.reserve(counters.slice(0, 1), 60)))
  assert.equal(afterRelease.filter((result) => result.allowed).length, 10, 'releasing more than was reserved leaves no negative count')
})
