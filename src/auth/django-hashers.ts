import { createHash, pbkdf2, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
import argon2 from 'argon2'
import bcrypt from 'bcrypt'

/**
 * Password hashes as Django stores them (django/contrib/auth/hashers.py), verified so that users imported
 * from a Django app (`portrait import-django`) keep their passwords. Every check runs off the event loop
 * (node:crypto's async PBKDF2 and scrypt, argon2's and bcrypt's native thread-pool work; salted MD5 is one
 * microsecond-sized digest), compares in constant time, and refuses a stored cost no real deployment uses
 * instead of spending minutes on it. The caller bounds concurrency (passwords.ts `hashing`).
 */

const pbkdf2Async = promisify(pbkdf2)
const scryptAsync = promisify(scrypt) as (password: string, salt: string, keylen: number, options: object) => Promise<Buffer>

// Ceilings far above every default Django has shipped (PBKDF2 1,200,000 in 6.0; bcrypt 12; scrypt N=2^14 r=8
// p=5; argon2 m=100 MiB t=2 p=8) and below "minutes per sign-in".
export const LIMITS = {
  pbkdf2Iterations: 10_000_000,
  bcryptCost: 16,
  scryptN: 2 ** 20,
  scryptR: 32,
  scryptP: 16,
  /** Bytes scrypt may allocate (about 128·N·r). */
  scryptMemory: 256 * 1024 * 1024,
  argon2MemoryKiB: 256 * 1024,
  argon2Time: 16,
  argon2Parallelism: 16,
}

/** The format a stored hash is in: Django's algorithm name, `argon2id` for Portrait's own, `unusable`, `unknown`. */
export function hashFormat(hash: string): string {
  if (hash.startsWith('!') || hash === '') return 'unusable'
  if (hash.startsWith('$argon2id$')) return 'argon2id'
  const algorithm = hash.slice(0, hash.indexOf('$'))
  return Object.hasOwn(VERIFIERS, algorithm) ? algorithm : 'unknown'
}

/** True for every stored hash that is not Portrait's own argon2id: a successful check should replace it. */
export function isLegacyHash(hash: string): boolean {
  return !hash.startsWith('$argon2id$')
}

/** Django's formats; false for a wrong password, a malformed hash, an absurd cost or an unusable password. */
export async function verifyDjangoHash(hash: string, password: string): Promise<boolean> {
  const format = hashFormat(hash)
  return Object.hasOwn(VERIFIERS, format) ? (VERIFIERS[format] as Verifier)(hash, password) : false
}

type Verifier = (hash: string, password: string) => Promise<boolean>

const DECIMAL = /^[1-9][0-9]{0,9}$/

const VERIFIERS: Record<string, Verifier> = {
  pbkdf2_sha256: (hash, password) => verifyPbkdf2(hash, password, 'sha256', 32),
  pbkdf2_sha1: (hash, password) => verifyPbkdf2(hash, password, 'sha1', 20),
  argon2: (hash, password) => verifyArgon2(hash.slice('argon2'.length), password),
  bcrypt_sha256: (hash, password) =>
    // Django hashes the password with SHA-256 first (lower-case hex, 64 bytes) to get past bcrypt's 72-byte cut.
    verifyBcrypt(hash.slice('bcrypt_sha256$'.length), createHash('sha256').update(password).digest('hex')),
  bcrypt: (hash, password) => verifyBcrypt(hash.slice('bcrypt$'.length), password),
  scrypt: verifyScrypt,
  md5: async (hash, password) => {
    // md5$<salt>$<hex md5(salt + password)>
    const parts = hash.split('$')
    if (parts.length !== 3 || !/^[0-9a-f]{32}$/.test(parts[2] as string)) return false
    const actual = createHash('md5').update(`${parts[1]}${password}`).digest()
    return timingSafeEqual(actual, Buffer.from(parts[2] as string, 'hex'))
  },
}

/** `<algorithm>$<iterations>$<salt>$<base64 derived key>`: PBKDF2-HMAC over the UTF-8 password and salt. */
async function verifyPbkdf2(hash: string, password: string, digest: 'sha256' | 'sha1', length: number): Promise<boolean> {
  const parts = hash.split('$')
  if (parts.length !== 4) return false
  const [, iterationsText, salt, encoded] = parts as [string, string, string, string]
  if (!DECIMAL.test(iterationsText)) return false
  const iterations = Number(iterationsText)
  if (iterations > LIMITS.pbkdf2Iterations) return false
  const expected = Buffer.from(encoded, 'base64')
  if (expected.length !== length) return false
  const actual = await pbkdf2Async(password, salt, iterations, length, digest)
  return timingSafeEqual(actual, expected)
}

/** `scrypt$<N>$<salt>$<r>$<p>$<base64 64-byte key>`. */
async function verifyScrypt(hash: string, password: string): Promise<boolean> {
  const parts = hash.split('$')
  if (parts.length !== 6) return false
  const [, nText, salt, rText, pText, encoded] = parts as [string, string, string, string, string, string]
  if (![nText, rText, pText].every((text) => DECIMAL.test(text))) return false
  const [N, r, p] = [Number(nText), Number(rText), Number(pText)]
  // N must be a power of two above 1 (scrypt's own rule).
  if (N < 2 || (N & (N - 1)) !== 0 || N > LIMITS.scryptN || r > LIMITS.scryptR || p > LIMITS.scryptP) return false
  const memory = 128 * N * r
  if (memory > LIMITS.scryptMemory) return false
  const expected = Buffer.from(encoded, 'base64')
  if (expected.length !== 64) return false
  // node:crypto refuses when 128·N·r exceeds maxmem (default 32 MiB); room for what the limits above allow.
  const actual = await scryptAsync(password, salt, 64, { N, r, p, maxmem: memory + 1024 * 1024 })
  return timingSafeEqual(actual, expected)
}

const BCRYPT = /^\$2[abyx]\$(\d{2})\$[./A-Za-z0-9]{53}$/

/** A `$2b$<cost>$<22-char salt><31-char hash>` string: hashed again with its own salt, compared in constant time. */
async function verifyBcrypt(stored: string, password: string): Promise<boolean> {
  const match = BCRYPT.exec(stored)
  if (!match) return false
  const cost = Number(match[1])
  if (cost < 4 || cost > LIMITS.bcryptCost) return false
  // Node's binding knows $2a$ and $2b$ (the same algorithm for passwords without the old 8-bit bug); $2y$ is $2b$.
  const normalised = stored.replace(/^\$2y\$/, '$2b$')
  const actual = await bcrypt.hash(password, normalised.slice(0, 29))
  const [a, b] = [Buffer.from(actual), Buffer.from(normalised)]
  return a.length === b.length && timingSafeEqual(a, b)
}

const ARGON2_PARAMS = /^\$argon2(?:id|i|d)\$(?:v=\d+\$)?([a-z]=\d{1,10}(?:,[a-z]=\d{1,10})*)\$/

/** A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`); argon2's verify compares in constant time. */
export async function verifyArgon2(phc: string, password: string): Promise<boolean> {
  const match = ARGON2_PARAMS.exec(phc)
  if (!match) return false
  // In any order (the argon2 package writes m, p, t; argon2-cffi m, t, p).
  const params = new Map((match[1] as string).split(',').map((pair) => [pair[0], Number(pair.slice(2))]))
  const [m, t, p] = [params.get('m'), params.get('t'), params.get('p')]
  if (m === undefined || t === undefined || p === undefined) return false
  if (m > LIMITS.argon2MemoryKiB || t > LIMITS.argon2Time || p > LIMITS.argon2Parallelism) return false
  try {
    return await argon2.verify(phc, password)
  } catch {
    return false
  }
}
