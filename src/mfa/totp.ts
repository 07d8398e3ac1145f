import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { Secret, TOTP } from 'otpauth'

/** RFC 6238 as every authenticator app reads it: SHA-1, 30-second steps, 6 digits. */
const PERIOD_SECONDS = 30
const DIGITS = 6
/** Codes of the step before and after the current one are accepted too (clock drift, a code typed late). */
const WINDOW_STEPS = 1
const SECRET_BYTES = 20
const CODE = /^\d{6}$/

/** The issuer the authenticator app shows beside the account. */
export const TOTP_ISSUER = 'Portrait'

function totpOf(base32: string, label = 'account'): TOTP {
  return new TOTP({ issuer: TOTP_ISSUER, label, algorithm: 'SHA1', digits: DIGITS, period: PERIOD_SECONDS, secret: Secret.fromBase32(base32) })
}

/** A new secret: 20 random bytes (RFC 4226 §4's recommended length), as base32. */
export function newTotpSecret(): string {
  return new Secret({ buffer: randomBytes(SECRET_BYTES).buffer }).base32
}

/** The otpauth:// URI an authenticator app reads (from the QR code, or typed in). */
export function otpauthUri(base32: string, label: string): string {
  return totpOf(base32, label).toString()
}

/**
 * The time step of `code` if it is the code of the current step or of one step either side, else undefined.
 * The caller accepts it only if that step is later than the last one accepted (see MfaRepository.acceptStep).
 */
export function matchingStep(base32: string, code: string, now = Date.now()): number | undefined {
  if (!CODE.test(code)) return undefined
  // otpauth compares every candidate in constant time.
  const delta = totpOf(base32).validate({ token: code, timestamp: now, window: WINDOW_STEPS })
  return delta === null ? undefined : Math.floor(now / 1000 / PERIOD_SECONDS) + delta
}

/**
 * Encrypts TOTP secrets at rest: AES-256-GCM under a key derived (HKDF-SHA256) from the server secret, with
 * the user id as associated data, so a ciphertext copied onto another user's row does not decrypt.
 */
export class TotpSecretBox {
  private readonly key: Buffer

  constructor(serverSecret: string) {
    this.key = Buffer.from(hkdfSync('sha256', serverSecret, '', 'portrait totp secret v1', 32))
  }

  seal(base32: string, userId: number): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    cipher.setAAD(Buffer.from(`user:${userId}`))
    const body = Buffer.concat([cipher.update(base32, 'utf8'), cipher.final()])
    return `v1.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`
  }

  /** The secret, or undefined when it does not decrypt (another server secret, another row's ciphertext). */
  open(sealed: string, userId: number): string | undefined {
    if (!sealed.startsWith('v1.')) return undefined
    const bytes = Buffer.from(sealed.slice(3), 'base64url')
    if (bytes.length < 29) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12))
      decipher.setAAD(Buffer.from(`user:${userId}`))
      decipher.setAuthTag(bytes.subarray(12, 28))
      return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8')
    } catch {
      return undefined
    }
  }
}
