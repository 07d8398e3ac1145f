import assert from 'node:assert/strict'
import { pbkdf2Sync, scryptSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import argon2 from 'argon2'
import Database from 'better-sqlite3'
import { hashFormat, LIMITS } from '../src/auth/django-hashers.js'
import { needsRehash, verifyPassword } from '../src/auth/passwords.js'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'django-users')

interface FixtureUser {
  id: number
  username: string
  password: string | null
  hash_format: string
}

/** Every user of the Django 3.2 fixture with the hash Django wrote for it. */
function fixtureHashes(): (FixtureUser & { hash: string })[] {
  const users = JSON.parse(readFileSync(join(FIXTURE, 'users.json'), 'utf8')) as FixtureUser[]
  const db = new Database(join(FIXTURE, 'db.sqlite3'), { readonly: true })
  try {
    return users.map((user) => ({ ...user, hash: (db.prepare('select password from users_users where id = ?').get(user.id) as { password: string }).password }))
  } finally {
    db.close()
  }
}

test('when a hash Django wrote is checked, then its own password matches and any other does not, in every format', async () => {
  const seen = new Set<string>()
  for (const user of fixtureHashes()) {
    seen.add(hashFormat(user.hash))
    if (user.password === null) continue
    assert.equal(await verifyPassword(user.hash, user.password), true, `${user.hash_format} (${user.username})`)
    assert.equal(await verifyPassword(user.hash, `${user.password}x`), false, user.hash_format)
    assert.equal(await verifyPassword(user.hash, user.password.toUpperCase()), false, user.hash_format)
    assert.equal(needsRehash(user.hash), true)
  }
  assert.deepEqual(
    [...seen].sort(),
    ['argon2', 'bcrypt', 'bcrypt_sha256', 'md5', 'pbkdf2_sha1', 'pbkdf2_sha256', 'scrypt', 'unusable'],
  )
})

test("when Django's argon2i form or another iteration count is stored, then it verifies as Django would", async () => {
  const argon2i = await argon2.hash('tower-of-Hanoi-64', { type: argon2.argon2i, memoryCost: 1024, timeCost: 2, parallelism: 1 })
  assert.equal(await verifyPassword(`argon2${argon2i}`, 'tower-of-Hanoi-64'), true)
  assert.equal(await verifyPassword(`argon2${argon2i}`, 'tower-of-Hanoi-65'), false)
  // pbkdf2_sha256 at Django 1.x's 12,000 iterations; the salt and password as UTF-8, the key in standard base64.
  const key = pbkdf2Sync('pässwörd-Ünïcode', 'saltsalt', 12000, 32, 'sha256').toString('base64')
  assert.equal(await verifyPassword(`pbkdf2_sha256$12000$saltsalt$${key}`, 'pässwörd-Ünïcode'), true)
  assert.equal(await verifyPassword(`pbkdf2_sha256$12001$saltsalt$${key}`, 'pässwörd-Ünïcode'), false)
  // Django's scrypt defaults (N=2^14, r=8, p=5: 16 MiB, the most node:crypto allows without maxmem is 32 MiB).
  const scrypted = scryptSync('stream-Cipher-42', 'NaCl', 64, { N: 2 ** 14, r: 8, p: 5 }).toString('base64')
  assert.equal(await verifyPassword(`scrypt$16384$NaCl$8$5$${scrypted}`, 'stream-Cipher-42'), true)
})

test('when a hash is unusable or malformed, then no password matches it', async () => {
  const [alan] = fixtureHashes().filter((user) => user.password === null)
  const unusable = (alan as { hash: string }).hash
  for (const password of ['', unusable, unusable.slice(1), 'anything']) assert.equal(await verifyPassword(unusable, password), false)
  assert.equal(await verifyPassword('!', ''), false)
  for (const hash of [
    '',
    'md5$salt',
    'md5$salt$nothex',
    'pbkdf2_sha256$0$salt$AAAA',
    'pbkdf2_sha256$abc$salt$AAAA',
    'pbkdf2_sha256$1000$salt',
    'constructor$1$2$3',
    '__proto__$1$2$3',
    'scrypt$3$salt$8$1$AAAA',
    'bcrypt$$2b$12$short',
    'argon2$argon2id$v=19$m=x$y',
    'sha1$salt$deadbeef',
  ]) {
    assert.equal(await verifyPassword(hash, 'password'), false, hash)
  }
})

test('when a stored hash asks for an absurd cost, then it is refused at once instead of being computed', async () => {
  const deadline = AbortSignal.timeout(20_000)
  const absurd = [
    `pbkdf2_sha256$${LIMITS.pbkdf2Iterations + 1}$salt$${Buffer.alloc(32).toString('base64')}`,
    `pbkdf2_sha1$2000000000$salt$${Buffer.alloc(20).toString('base64')}`,
    `bcrypt$$2b$31$${'a'.repeat(53)}`,
    `bcrypt_sha256$$2b$17$${'a'.repeat(53)}`,
    `scrypt$${2 ** 24}$salt$8$1$${Buffer.alloc(64).toString('base64')}`,
    `scrypt$16384$salt$1024$1$${Buffer.alloc(64).toString('base64')}`,
    `scrypt$16384$salt$8$1000$${Buffer.alloc(64).toString('base64')}`,
    'argon2$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
    'argon2$argon2id$v=19$m=1024,t=1000000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
    '$argon2id$v=19$m=1024,t=2,p=255$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA',
  ]
  // All at once: each would take minutes (or gigabytes) if computed; a generous deadline fails a hang.
  const results = await Promise.race([
    Promise.all(absurd.map((hash) => verifyPassword(hash, 'password'))),
    new Promise<never>((_, reject) => deadline.addEventListener('abort', () => reject(new Error('an absurd hash was computed')))),
  ])
  assert.deepEqual(results, absurd.map(() => false))
})

test('when a slow legacy hash is checked, then the event loop keeps running meanwhile', async () => {
  const grace = fixtureHashes().find((user) => user.hash.startsWith('pbkdf2_sha256$1000000$')) as { hash: string; password: string }
  let ticks = 0
  const timer = setInterval(() => ticks++, 5)
  try {
    assert.equal(await verifyPassword(grace.hash, grace.password), true)
  } finally {
    clearInterval(timer)
  }
  // A million PBKDF2 rounds on the event loop would leave the timer no turn at all until they were done.
  assert.ok(ticks >= 3, `the timer ran ${ticks} times`)
})

test("when a hash is Portrait's own argon2id, then it needs no rehash; every other format does", async () => {
  const own = await argon2.hash('x', { type: argon2.argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 })
  assert.equal(needsRehash(own), false)
  assert.equal(hashFormat(own), 'argon2id')
  for (const user of fixtureHashes()) assert.equal(needsRehash(user.hash), true)
})
