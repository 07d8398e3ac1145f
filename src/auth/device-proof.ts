import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isWebClient } from './refresh-cookie.js'

/**
 * Proof that a client signed in to an account before (OWASP "device cookies"): `<user id>.<nonce>.<mac>`, where
 * the mac is HMAC-SHA256 over `<user id>.<nonce>` and the account's password hash with a key derived from the
 * JWT secret. Nothing is stored: the mac makes it unforgeable and binds it to one account and its current
 * password, so a password change (after a compromise, say) takes every earlier proof's own limit away from
 * whoever kept one; the random nonce names the device for its own limit.
 * It opens nothing by itself — it only decides which failure count a sign-in attempt is judged by.
 */
export class DeviceProofs {
  private readonly key: Buffer

  constructor(secret: string) {
    // A key of its own, so a device proof can never be confused with anything else signed with the secret.
    this.key = createHmac('sha256', secret).update('portrait device proof v1').digest()
  }

  /** A proof for this user's current password; `device` (a nonce from `verify`) keeps naming the same device. */
  issue(user: ProofSubject, device = randomBytes(16).toString('base64url')): string {
    const body = `${user.id}.${device}`
    return `${body}.${this.mac(body, user).toString('base64url')}`
  }

  /** The device's id (its nonce) when `token` is a proof issued for this user since its password last changed, else undefined. */
  verify(token: unknown, user: ProofSubject): string | undefined {
    if (typeof token !== 'string') return undefined
    const match = PROOF.exec(token)
    if (!match || Number(match[1]) !== user.id) return undefined
    const given = Buffer.from(match[3] as string, 'base64url')
    const expected = this.mac(`${match[1]}.${match[2]}`, user)
    return given.length === expected.length && timingSafeEqual(given, expected) ? (match[2] as string) : undefined
  }

  private mac(body: string, user: ProofSubject): Buffer {
    return createHmac('sha256', this.key).update(`${body}.${user.password_hash}`).digest()
  }
}

/** The account a proof is for: its id, and its password hash (a new password makes every earlier proof void). */
export interface ProofSubject {
  id: number
  password_hash: string
}

const PROOF = /^(\d{1,16})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/

/** The web page keeps its device proof in an HttpOnly cookie sent only to sign-in, honoured only with `x-portrait-web: 1`. */
export const DEVICE_COOKIE = 'portrait_device'
const DEVICE_COOKIE_PATH = '/api/auth/sign-in'
const DEVICE_COOKIE_MAX_AGE = 365 * 86400

/** The proof from the body (API clients), or from the cookie for the web page. */
export function presentedDeviceProof(request: FastifyRequest, bodyToken: string | undefined): string | undefined {
  if (bodyToken !== undefined) return bodyToken
  return isWebClient(request) ? request.cookies[DEVICE_COOKIE] : undefined
}

/** The web page gets the proof as a cookie; an API client gets `device_token` to store and send with later sign-ins. */
export function deliverDeviceProof(
  request: FastifyRequest,
  reply: FastifyReply,
  token: string,
  secure: boolean,
): { device_token?: string } {
  if (!isWebClient(request)) return { device_token: token }
  reply.setCookie(DEVICE_COOKIE, token, {
    httpOnly: true,
    sameSite: 'strict',
    secure: secure || request.protocol === 'https',
    path: DEVICE_COOKIE_PATH,
    maxAge: DEVICE_COOKIE_MAX_AGE,
  })
  return {}
}
