import type { FastifyRequest } from 'fastify'
import { AppError } from '../errors.js'
import type { UserRow } from '../users/users.table.js'
import type { SessionsRepository } from './sessions.repository.js'
import type { AccessTokens } from './tokens.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The signed-in user, set by `authenticate`. */
    actor: UserRow
    /** The session the access token belongs to. */
    sessionId: string
  }
}

// The scheme is case-insensitive and followed by one or more spaces (RFC 7235 §2.1); the `i` flag costs
// nothing measurable on this one exec per request.
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i

/**
 * The onRequest hook of every authenticated route: a valid access token (signature, algorithm,
 * expiry, type) of a live session of an existing, active user — checked in one indexed query.
 */
export function createAuthenticate(tokens: AccessTokens, sessions: SessionsRepository) {
  return async function authenticate(request: FastifyRequest): Promise<void> {
    const header = request.headers.authorization
    if (header === undefined) {
      throw new AppError('not_authenticated', { detail: 'Send an access token: Authorization: Bearer <token>.', headers: CHALLENGE })
    }
    const token = BEARER.exec(header)?.[1]
    let claims = token === undefined ? undefined : tokens.verify(token)
    // A promise only for a kid this instance has not seen yet (a rotation elsewhere): the keyset is re-read first.
    if (claims instanceof Promise) claims = await claims
    const actor = claims && (await sessions.findLiveSessionUser(claims.sessionId, claims.userId, new Date().toISOString(), claims.kid))
    if (!claims || !actor) {
      throw new AppError('invalid_token', { detail: 'The access token is invalid, expired or revoked.', headers: CHALLENGE })
    }
    request.actor = actor
    request.sessionId = claims.sessionId
  }
}

const CHALLENGE = { 'www-authenticate': 'Bearer' }
