import { availableParallelism } from 'node:os'
import argon2 from 'argon2'
import commonPasswords from 'fxa-common-password-list'
import { ConcurrencyLimit } from '../concurrency.js'
import type { PasswordHashCost } from '../config.js'
import { isLegacyHash, verifyArgon2, verifyDjangoHash } from './django-hashers.js'

export const PASSWORD_MIN_LENGTH = 8
export const PASSWORD_MAX_LENGTH = 128

// argon2 runs in libuv's thread pool (4 threads); one hash per CPU at most leaves the event loop a core's
// share to keep answering other requests during a sign-in storm, and keeps fewer 19 MiB buffers alive.
// Process-wide, like the thread pool it guards.
const hashing = new ConcurrencyLimit(availableParallelism())

/** Hashes off the event loop, at most one hash per CPU at a time. */
export function hashPassword(password: string, cost: PasswordHashCost): Promise<string> {
  return hashing.run(() => argon2.hash(password, { type: argon2.argon2id, ...cost }))
}

/**
 * False for a wrong password and for a malformed hash alike. Besides Portrait's argon2id, the Django formats
 * an import brings (django-hashers.ts), under the same bound; `needsRehash` says when to store argon2id instead.
 */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await hashing.run(() => (hash.startsWith('$argon2') ? verifyArgon2(hash, password) : verifyDjangoHash(hash, password)))
  } catch {
    return false
  }
}

/** True when a hash that just matched is in a legacy format (an imported Django hash) and should be replaced by argon2id. */
export function needsRehash(hash: string): boolean {
  return isLegacyHash(hash)
}

/** Messages for every rule the password breaks (SPEC §2), empty when it is acceptable. */
export function passwordProblems(password: string, attributes: { username?: string; email?: string }): string[] {
  const problems: string[] = []
  const length = [...password].length
  if (length < PASSWORD_MIN_LENGTH) problems.push(`This password is too short. It must contain at least ${PASSWORD_MIN_LENGTH} characters.`)
  if (length > PASSWORD_MAX_LENGTH) problems.push(`This password is too long. It must contain at most ${PASSWORD_MAX_LENGTH} characters.`)
  if (/^\d+$/.test(password)) problems.push('This password is entirely numeric.')
  if (commonPasswords.test(password) || commonPasswords.test(password.toLowerCase())) {
    problems.push('This password is too common.')
  }
  for (const [name, value] of Object.entries(attributes)) {
    if (value && isTooSimilar(password, value)) {
      problems.push(`This password is too similar to the ${name}.`)
      break
    }
  }
  return problems
}

// Django's UserAttributeSimilarityValidator: compare with the whole attribute and its word-parts.
const MAX_SIMILARITY = 0.7

function isTooSimilar(password: string, attribute: string): boolean {
  const pass = password.toLowerCase()
  const whole = attribute.toLowerCase()
  const parts = [whole, ...whole.split(/[^\p{L}\p{N}]+/u)].filter((part) => part.length >= 3)
  return parts.some((part) => pass.includes(part) || similarity(pass, part) >= MAX_SIMILARITY)
}

/** Ratcliff/Obershelp ratio, as Python's difflib.SequenceMatcher.ratio(). */
function similarity(a: string, b: string): number {
  return (2 * matchingCharacters(a, b)) / (a.length + b.length)
}

function matchingCharacters(a: string, b: string): number {
  let best = 0
  let bestA = 0
  let bestB = 0
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < b.length; j++) {
      let k = 0
      while (i + k < a.length && j + k < b.length && a[i + k] === b[j + k]) k++
      if (k > best) [best, bestA, bestB] = [k, i, j]
    }
  }
  if (best === 0) return 0
  return (
    best +
    matchingCharacters(a.slice(0, bestA), b.slice(0, bestB)) +
    matchingCharacters(a.slice(bestA + best), b.slice(bestB + best))
  )
}
