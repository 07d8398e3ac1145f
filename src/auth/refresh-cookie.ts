import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * The web page keeps its refresh token in an HttpOnly, SameSite=Strict cookie no script can read.
 * The cookie is honoured only with this header: a cross-site form cannot send it, and a cross-site
 * script cannot either without passing CORS — so cookie-carrying writes are safe from CSRF.
 */
export const WEB_CLIENT_HEADER = 'x-portrait-web'
export const REFRESH_COOKIE = 'portrait_refresh'
const COOKIE_PATH = '/api/auth'

export function isWebClient(request: FastifyRequest): boolean {
  return request.headers[WEB_CLIENT_HEADER] === '1'
}

export function setRefreshCookie(request: FastifyRequest, reply: FastifyReply, token: string, ttlSeconds: number): void {
  reply.setCookie(REFRESH_COOKIE, token, {
    httpOnly: true,
    sameSite: 'strict',
    secure: request.protocol === 'https',
    path: COOKIE_PATH,
    maxAge: ttlSeconds,
  })
}

export function clearRefreshCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(REFRESH_COOKIE, { httpOnly: true, sameSite: 'strict', secure: request.protocol === 'https', path: COOKIE_PATH })
}

/** The refresh token from the body, or from the cookie for the web page. */
export function presentedRefreshToken(request: FastifyRequest, bodyToken: string | undefined): string | undefined {
  if (bodyToken !== undefined) return bodyToken
  return isWebClient(request) ? request.cookies[REFRESH_COOKIE] : undefined
}
