import { availableParallelism } from 'node:os'
import argon2 from 'argon2'
import commonPasswords from 'fxa-common-password-list'
import { ConcurrencyLimit } from '../concurrency.js'
import type { PasswordHashCost } from '../config.js'

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

/** False for a wrong password and for a malformed hash alike. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await hashing.run(() => argon2.verify(hash, password))
  } catch {
    return false
  }
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
  // Comparing costs time that grows with the password's length squared (a 64 KiB one held the event loop
  // for 6 s, before any limit): a password over the limit is refused already and is not compared.
  for (const [name, value] of length > PASSWORD_MAX_LENGTH ? [] : Object.entries(attributes)) {
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
  return parts.some((part) => pass.includes(part) || (quickRatio(pass, part) >= MAX_SIMILARITY && similarity(pass, part) >= MAX_SIMILARITY))
}

/** difflib's quick_ratio(): an upper bound of the ratio from the characters both share, in linear time. */
function quickRatio(a: string, b: string): number {
  const counts = new Map<number, number>()
  for (let i = 0; i < b.length; i++) counts.set(b.charCodeAt(i), (counts.get(b.charCodeAt(i)) ?? 0) + 1)
  let shared = 0
  for (let i = 0; i < a.length; i++) {
    const left = counts.get(a.charCodeAt(i)) ?? 0
    if (left > 0) {
      shared++
      counts.set(a.charCodeAt(i), left - 1)
    }
  }
  return (2 * shared) / (a.length + b.length)
}

/** Ratcliff/Obershelp ratio, as Python's difflib.SequenceMatcher.ratio(). */
function similarity(a: string, b: string): number {
  return (2 * matchingCharacters(a, b)) / (a.length + b.length)
}

function matchingCharacters(a: string, b: string): number {
  return matching(a, 0, a.length, b, 0, b.length)
}

/**
 * difflib's matching blocks: the longest common substring of a[aLo, aHi) and b[bLo, bHi) (the first in a,
 * then in b, when several are as long), plus the same for what lies left and right of it. The longest match
 * is found by dynamic programming, in (aHi − aLo) × (bHi − bLo) steps rather than that times its length.
 */
function matching(a: string, aLo: number, aHi: number, b: string, bLo: number, bHi: number): number {
  if (aLo >= aHi || bLo >= bHi) return 0
  // run[j + 1 - bLo]: how long the common run ending at a[i - 1] and b[j] is (the previous row, as j descends).
  const run = new Uint32Array(bHi - bLo + 1)
  let best = 0
  let bestEndA = 0
  let bestEndB = 0
  for (let i = aLo; i < aHi; i++) {
    const char = a.charCodeAt(i)
    for (let j = bHi - 1; j >= bLo; j--) {
      const k = char === b.charCodeAt(j) ? (run[j - bLo] as number) + 1 : 0
      run[j + 1 - bLo] = k
      // Ties go to the run that starts first in a (it ends first, rows ascend), then first in b.
      if (k > best || (k === best && k > 0 && i === bestEndA && j < bestEndB)) [best, bestEndA, bestEndB] = [k, i, j]
    }
  }
  if (best === 0) return 0
  const startA = bestEndA - best + 1
  const startB = bestEndB - best + 1
  return best + matching(a, aLo, startA, b, bLo, startB) + matching(a, bestEndA + 1, aHi, b, bestEndB + 1, bHi)
}
