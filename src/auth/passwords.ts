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

// Django's UserAttributeSimilarityValidator, exactly: the lowercased password against the lowercased attribute
// and each of its parts split at non-word characters (re.split(r"\W+")), refused when difflib's quick_ratio()
// (matching characters regardless of order) reaches 0.7, skipping parts so much shorter than the password that
// the ratio cannot reach it. A long passphrase that merely contains "com" of an email is accepted.
const MAX_SIMILARITY = 0.7

function isTooSimilar(password: string, attribute: string): boolean {
  const pass = [...password.toLowerCase()]
  const value = attribute.toLowerCase()
  // Python's \w: letters, digits (any script) and the underscore.
  const parts = [...value.split(/[^\p{L}\p{N}_]+/u), value]
  return parts.some((part) => {
    const chars = [...part]
    if (exceedsMaximumLengthRatio(pass.length, chars.length)) return false
    return quickRatio(pass, chars) >= MAX_SIMILARITY
  })
}

/** Django's exceeds_maximum_length_ratio: a part a tenth of the password's length or less cannot be similar enough. */
function exceedsMaximumLengthRatio(passwordLength: number, valueLength: number): boolean {
  return passwordLength >= 10 * valueLength && valueLength < (MAX_SIMILARITY / 2) * passwordLength
}

/** difflib.SequenceMatcher(a, b).quick_ratio(): 2 × (characters in common, with multiplicity) / total length. */
function quickRatio(a: string[], b: string[]): number {
  const available = new Map<string, number>()
  for (const char of b) available.set(char, (available.get(char) ?? 0) + 1)
  let matches = 0
  for (const char of a) {
    const left = available.get(char) ?? 0
    if (left > 0) {
      available.set(char, left - 1)
      matches++
    }
  }
  const total = a.length + b.length
  return total === 0 ? 1 : (2 * matches) / total
}
