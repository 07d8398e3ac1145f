import { createHash, randomBytes, timingSafeEqual, webcrypto } from 'node:crypto'
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose'

export const JWT_ALGORITHM = 'HS256'

export interface AccessClaims {
  userId: number
  sessionId: string
}

/** Signs and verifies access tokens with one key imported once at start. */
export class AccessTokens {
  private constructor(
    private readonly key: webcrypto.CryptoKey,
    private readonly ttlSeconds: number,
  ) {}

  static async create(secret: string, ttlSeconds: number): Promise<AccessTokens> {
    const key = await webcrypto.subtle.importKey(
      'raw',
      new TextEncoder().encode(secret),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    )
    return new AccessTokens(key, ttlSeconds)
  }

  issue({ userId, sessionId }: AccessClaims): Promise<string> {
    return new SignJWT({ sid: sessionId, typ: 'access' })
      .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT' })
      .setSubject(String(userId))
      .setJti(randomToken(12))
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.key)
  }

  /** The claims of a valid access token, or undefined for anything else (bad signature, algorithm, expiry, type). */
  async verify(token: string): Promise<AccessClaims | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.key, { algorithms: [JWT_ALGORITHM], requiredClaims: ['exp', 'sub'] })
      if (payload.typ !== 'access' || typeof payload.sid !== 'string' || !/^[1-9]\d{0,15}$/.test(payload.sub ?? '')) {
        return undefined
      }
      return { userId: Number(payload.sub), sessionId: payload.sid }
    } catch (error) {
      if (error instanceof joseErrors.JOSEError) return undefined
      throw error
    }
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

export function parseRefreshToken(token: string): { sessionId: string; hash: string } | undefined {
  const match = REFRESH_TOKEN.exec(token)
  if (!match) return undefined
  return { sessionId: match[1] as string, hash: hashSecret(match[2] as string) }
}

export function newSessionId(): string {
  return randomToken(16)
}
