import { randomInt } from 'node:crypto'
import { hashSecret } from '../auth/tokens.js'

/** Lower-case letters and digits without the ones read alike (0 o, 1 l i): 31 symbols, about 5 bits each. */
const ALPHABET = '23456789abcdefghjkmnpqrstuvwxyz'
export const RECOVERY_CODE_COUNT = 10
const LENGTH = 10

/** Ten new codes, each `xxxxx-xxxxx` (about 49 random bits), for showing once. */
export function newRecoveryCodes(): string[] {
  return Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const chars = Array.from({ length: LENGTH }, () => ALPHABET[randomInt(ALPHABET.length)]).join('')
    return `${chars.slice(0, 5)}-${chars.slice(5)}`
  })
}

/**
 * The stored form of a code as typed: case, spaces and hyphens do not matter. Undefined when it cannot be one
 * of ours, so nothing is looked up for it.
 */
export function recoveryCodeHash(typed: string): string | undefined {
  const code = typed.toLowerCase().replace(/[\s-]/g, '')
  if (code.length !== LENGTH || [...code].some((char) => !ALPHABET.includes(char))) return undefined
  return hashSecret(code)
}
