import { createHash, createHmac, createSecretKey, type KeyObject, randomBytes, sign, timingSafeEqual, verify } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import { CLOCK_SKEW_SECONDS, type Keyset, KID, type LoadedKey } from './signing-keys.js'

export { CLOCK_SKEW_SECONDS }
/** The header `typ` we issue, and the only one accepted (RFC 9068 §2.1). */
export const JWT_TYPE = 'at+jwt'

export interface AccessClaims {
  userId: number
  sessionId: string
  /** RFC 8176 authentication methods of the session (`pwd`, `otp`, `hwk`, …). */
  amr?: readonly string[]
}

/** What a verified access token says, for the session check and for introspection. */
export interface VerifiedAccess extends AccessClaims {
  kid: string
  iat: number
  exp: number
}

export interface AccessTokenOptions {
  ttlSeconds: number
  /** `iss`: JWT_ISSUER, else PUBLIC_URL, else the listening origin (asked at each use, fixed once known). */
  issuer: () => string
  /** `aud`: JWT_AUDIENCE; empty means tokens carry no aud and one carrying any is refused. */
  audience: readonly string[]
}

const USER_ID = /^[1-9]\d{0,15}$/
// About 4 MB at most: enough for every client active within one access-token lifetime on one instance.
const VERIFIED_CACHE_SIZE = 10_000
/** Signature lengths in base64url: HMAC-SHA256 32 bytes; Ed25519 and P-256 (r‖s) 64 bytes. */
const SIGNATURE_LENGTH = { HS256: 43, EdDSA: 86, ES256: 86 } as const
const HEADER_MAX = 256
const UNKNOWN_KID = Symbol('unknown kid')

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * Signs and verifies access tokens with node:crypto against the keyset (EdDSA, ES256 or HS256), each key
 * imported once.
 *
 * Why not jose's jwtVerify: it verifies through WebCrypto, an asynchronous crypto job per call that cost
 * 41 µs of CPU against 4.4 µs for the synchronous HMAC (bench: 50,000 verifications on one core); an
 * Ed25519 crypto.verify is synchronous too. The checks are jose's and more: the header must be exactly
 * {alg, typ: "at+jwt", kid} — a kid we know, the algorithm of that very key (no `none`, no HS256 signed
 * with a public key), no `crit`, `jku`, `jwk`, `x5u` or anything else; a required numeric `exp` in the
 * future, `nbf` if present, `iat` required and not in the future, `exp` no further away than the TTL allows
 * (both within CLOCK_SKEW_SECONDS), so a token minted with a leaked key cannot be made to live for years;
 * `iss` ours and `aud` one of ours (or absent when none is configured).
 */
export class AccessTokens {
  /**
   * Tokens that passed every check: a client sends the same token for its whole lifetime, and a hit (0.5 µs)
   * skips the signature (an Ed25519 verification costs about 50 µs) and both JSON parses. Only genuine tokens
   * get in, at most VERIFIED_CACHE_SIZE of them (oldest out first), and a hit still checks expiry and that
   * its key still verifies here. Revocation is untouched: every request still looks up its live session,
   * and that query refuses a revoked kid.
   */
  private readonly verified = new Map<string, VerifiedAccess>()

  constructor(
    readonly keyset: Keyset,
    private readonly options: AccessTokenOptions,
  ) {}

  /**
   * `executor`: the connection (or transaction) the caller holds. The current signing key is read through it,
   * so a token issued inside a transaction needs no second connection (with a pool of N, N sign-ups in
   * their transactions would otherwise wait for one another).
   */
  async issue({ userId, sessionId, amr = ['pwd'] }: AccessClaims, executor: Kysely<Database>): Promise<string> {
    const key = await this.keyset.signer(executor)
    const now = Math.floor(Date.now() / 1000)
    const { audience } = this.options
    const payload = {
      sid: sessionId,
      typ: 'access',
      sub: String(userId),
      amr,
      jti: randomToken(12),
      iat: now,
      exp: now + this.options.ttlSeconds,
      iss: this.options.issuer(),
      ...(audience.length === 0 ? {} : { aud: audience.length === 1 ? audience[0] : audience }),
    }
    const input = `${encode({ alg: key.alg, typ: JWT_TYPE, kid: key.kid })}.${encode(payload)}`
    return `${input}.${signatureOf(key, input).toString('base64url')}`
  }

  /**
   * The claims of a valid access token, or undefined for anything else (bad signature, algorithm, key,
   * expiry, type, issuer, audience). Synchronous except for a kid this instance has not seen yet: then a
   * promise, settled after the keyset was re-read (at most once a second).
   */
  verify(token: string): VerifiedAccess | undefined | Promise<VerifiedAccess | undefined> {
    const now = Math.floor(Date.now() / 1000)
    const known = this.verified.get(token)
    if (known) {
      if (known.exp > now && this.keyset.get(known.kid) !== undefined) return known
      this.verified.delete(token)
      return undefined
    }
    const claims = this.check(token, now)
    if (claims === UNKNOWN_KID) {
      return this.keyset.reloadThrottled().then(() => {
        const again = this.check(token, Math.floor(Date.now() / 1000))
        return again === UNKNOWN_KID ? undefined : this.remember(token, again)
      })
    }
    return this.remember(token, claims)
  }

  private remember(token: string, claims: VerifiedAccess | undefined): VerifiedAccess | undefined {
    if (claims) {
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string)
      this.verified.set(token, claims)
    }
    return claims
  }

  private check(token: string, now: number): VerifiedAccess | undefined | typeof UNKNOWN_KID {
    const headerEnd = token.indexOf('.')
    const payloadEnd = token.lastIndexOf('.')
    if (headerEnd <= 0 || headerEnd > HEADER_MAX || payloadEnd === headerEnd || token.indexOf('.', headerEnd + 1) !== payloadEnd) return undefined
    // The header names the key; nothing else an attacker wrote is parsed before the signature proves it ours.
    const header = decodeJsonObject(token.slice(0, headerEnd))
    if (!header || Object.keys(header).length !== 3 || header.typ !== JWT_TYPE || typeof header.kid !== 'string') return undefined
    const key = this.keyset.get(header.kid)
    if (!key) return KID.test(header.kid) ? UNKNOWN_KID : undefined
    if (header.alg !== key.alg) return undefined
    const signature = token.slice(payloadEnd + 1)
    if (signature.length !== SIGNATURE_LENGTH[key.alg] || !signatureMatches(key, token.slice(0, payloadEnd), signature)) return undefined
    const payload = decodeJsonObject(token.slice(headerEnd + 1, payloadEnd))
    if (!payload) return undefined
    const { exp, nbf, iat, typ, sub, sid, iss, aud, amr } = payload
    // Both bounds only loosen as time passes, so a token in the verified cache stays valid until its exp.
    if (typeof exp !== 'number' || !(exp > now) || !(exp <= now + this.options.ttlSeconds + CLOCK_SKEW_SECONDS)) return undefined
    if (typeof iat !== 'number' || !(iat <= now + CLOCK_SKEW_SECONDS)) return undefined
    if (nbf !== undefined && (typeof nbf !== 'number' || !(nbf <= now))) return undefined
    if (typ !== 'access' || typeof sid !== 'string' || typeof sub !== 'string' || !USER_ID.test(sub)) return undefined
    if (iss !== this.options.issuer() || !this.audienceMatches(aud)) return undefined
    // Signed by us, so only its shape is checked; introspection passes it on.
    const methods = Array.isArray(amr) && amr.every((method) => typeof method === 'string') ? { amr: amr as string[] } : {}
    return { userId: Number(sub), sessionId: sid, kid: key.kid, iat, exp, ...methods }
  }

  private audienceMatches(aud: unknown): boolean {
    const { audience } = this.options
    if (audience.length === 0) return aud === undefined
    if (typeof aud === 'string') return audience.includes(aud)
    return Array.isArray(aud) && aud.length > 0 && aud.some((entry) => typeof entry === 'string' && audience.includes(entry))
  }
}

function signatureOf(key: LoadedKey, input: string): Buffer {
  if (key.alg === 'HS256') return createHmac('sha256', key.signKey).update(input).digest()
  if (key.alg === 'EdDSA') return sign(null, Buffer.from(input), key.signKey)
  return sign('sha256', Buffer.from(input), { key: key.signKey, dsaEncoding: 'ieee-p1363' })
}

function signatureMatches(key: LoadedKey, input: string, signature: string): boolean {
  const presented = Buffer.from(signature, 'base64url')
  // One spelling per signature: the unused low bits of the last character must be zero.
  if (presented.toString('base64url') !== signature) return false
  if (key.alg === 'HS256') {
    const expected = createHmac('sha256', key.verifyKey).update(input).digest()
    return presented.length === expected.length && timingSafeEqual(presented, expected)
  }
  if (key.alg === 'EdDSA') return verify(null, Buffer.from(input), key.verifyKey, presented)
  return verify('sha256', Buffer.from(input), { key: key.verifyKey, dsaEncoding: 'ieee-p1363' }, presented)
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
