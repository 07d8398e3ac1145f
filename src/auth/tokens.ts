import { createHash, createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual, webcrypto } from 'node:crypto'
import { SignJWT } from 'jose'

export const JWT_ALGORITHM = 'HS256'
/** The header `typ` we issue, and the only one accepted. */
const JWT_TYPE = 'JWT'
/** How far another instance's clock may run ahead of ours when it issues a token. */
export const CLOCK_SKEW_SECONDS = 30

export interface AccessClaims {
  userId: number
  sessionId: string
}

const USER_ID = /^[1-9]\d{0,15}$/
// About 4 MB at most: enough for every client active within one access-token lifetime on one instance.
const VERIFIED_CACHE_SIZE = 10_000

/**
 * Signs access tokens with jose and verifies them with node:crypto, each key imported once at start.
 *
 * Why not jose's jwtVerify: it verifies through WebCrypto, an asynchronous crypto job per call that cost
 * 41 µs of CPU against 4.4 µs for the synchronous HMAC below (bench: 50,000 verifications on one core),
 * and 30 % of the server's busy time under GET /api/users/me (BENCHMARKS.md). The checks are jose's:
 * an exact HS256 header, no `crit`, a required numeric `exp` in the future, `nbf` if present. Beyond jose:
 * the header's `typ` must be the one we issue, `iat` is required and not in the future, and `exp` no
 * further away than the TTL allows (both within CLOCK_SKEW_SECONDS), so a token minted with a leaked key
 * cannot be made to live for years.
 */
export class AccessTokens {
  /**
   * Tokens that passed every check, with their expiry: a client sends the same token for its whole
   * lifetime, and a hit (0.5 µs) skips the HMAC and both JSON parses (4.7 µs). Only genuine tokens get in,
   * at most VERIFIED_CACHE_SIZE of them (oldest out first), and a hit still checks expiry. Revocation is
   * untouched: every request still looks up its live session.
   */
  private readonly verified = new Map<string, { claims: AccessClaims; exp: number }>()

  private constructor(
    private readonly signingKey: webcrypto.CryptoKey,
    private readonly verifyingKey: KeyObject,
    private readonly ttlSeconds: number,
  ) {}

  static async create(secret: string, ttlSeconds: number): Promise<AccessTokens> {
    const key = await webcrypto.subtle.importKey(
      'raw',
      new TextEncoder().encode(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    )
    return new AccessTokens(key, createSecretKey(Buffer.from(secret, 'utf8')), ttlSeconds)
  }

  issue({ userId, sessionId }: AccessClaims): Promise<string> {
    return new SignJWT({ sid: sessionId, typ: 'access' })
      .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT' })
      .setSubject(String(userId))
      .setJti(randomToken(12))
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.signingKey)
  }

  /** The claims of a valid access token, or undefined for anything else (bad signature, algorithm, expiry, type). */
  verify(token: string): AccessClaims | undefined {
    const now = Math.floor(Date.now() / 1000)
    const known = this.verified.get(token)
    if (known) {
      if (known.exp > now) return known.claims
      this.verified.delete(token)
      return undefined
    }
    const claims = this.check(token, now)
    if (claims) {
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string)
      this.verified.set(token, claims)
      return claims.claims
    }
    return undefined
  }

  private check(token: string, now: number): { claims: AccessClaims; exp: number } | undefined {
    const headerEnd = token.indexOf('.')
    const payloadEnd = token.lastIndexOf('.')
    if (headerEnd <= 0 || payloadEnd === headerEnd || token.indexOf('.', headerEnd + 1) !== payloadEnd) return undefined
    // The signature first: nothing an attacker wrote is parsed before it proves to come from us.
    const expected = createHmac('sha256', this.verifyingKey).update(token.slice(0, payloadEnd)).digest('base64url')
    const presented = token.slice(payloadEnd + 1)
    if (presented.length !== expected.length || !timingSafeEqual(Buffer.from(presented), Buffer.from(expected))) return undefined
    const header = decodeJsonObject(token.slice(0, headerEnd))
    if (header?.alg !== JWT_ALGORITHM || header.typ !== JWT_TYPE || header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) return undefined
    const payload = decodeJsonObject(token.slice(headerEnd + 1, payloadEnd))
    if (!payload) return undefined
    const { exp, nbf, iat, typ, sub, sid } = payload
    // Both bounds only loosen as time passes, so a token in the verified cache stays valid until its exp.
    if (typeof exp !== 'number' || !(exp > now) || !(exp <= now + this.ttlSeconds + CLOCK_SKEW_SECONDS)) return undefined
    if (typeof iat !== 'number' || !(iat <= now + CLOCK_SKEW_SECONDS)) return undefined
    if (nbf !== undefined && (typeof nbf !== 'number' || !(nbf <= now))) return undefined
    if (typ !== 'access' || typeof sid !== 'string' || typeof sub !== 'string' || !USER_ID.test(sub)) return undefined
    return { claims: { userId: Number(sub), sessionId: sid }, exp }
  }
}

function decodeJsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** URL-safe random string of `bytes` random bytes. */
export function randomToken(bytes: number): string {
  return randomBytes(bytes).toString('base64url')
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

/** Constant-time equality of two hex digests. */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex')
  const right = Buffer.from(b, 'hex')
  return left.length === right.length && timingSafeEqual(left, right)
}

const REFRESH_TOKEN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/

/** A refresh token is `<session id>.<secret>`; only a hash of the secret is stored. */
export function newRefreshToken(sessionId: string): { token: string; hash: string } {
  const secret = randomToken(32)
  return { token: `${sessionId}.${secret}`, hash: hashSecret(secret) }
}

export function parseRefreshToken(token: string): { sessionId: string; secret: string; hash: string } | undefined {
  const match = REFRESH_TOKEN.exec(token)
  if (!match) return undefined
  const secret = match[2] as string
  return { sessionId: match[1] as string, secret, hash: hashSecret(secret) }
}

/**
 * The successor of a refresh secret is an HMAC of it under a server key, so a refresh repeated within the
 * grace gets the very same successor again without any secret being stored: the session keeps only the
 * hashes of both. Knowing a secret without the key tells nothing about its successor.
 */
export class RefreshSuccessors {
  private readonly key: KeyObject

  constructor(serverSecret: string) {
    // A key of its own, derived from the JWT secret, so no HMAC here can ever pass for an access-token signature.
    this.key = createSecretKey(createHmac('sha256', serverSecret).update('portrait refresh-token successor v1').digest())
  }

  /** The token that replaces `presented` (a parsed refresh token): 32 bytes, as long as a random secret. */
  of(presented: { sessionId: string; secret: string }): { token: string; hash: string } {
    const secret = createHmac('sha256', this.key).update(`${presented.sessionId}.${presented.secret}`).digest('base64url')
    return { token: `${presented.sessionId}.${secret}`, hash: hashSecret(secret) }
  }
}

export function newSessionId(): string {
  return randomToken(16)
}
