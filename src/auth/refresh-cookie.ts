import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * The web page keeps its refresh token in an HttpOnly, SameSite=Strict cookie no script can read.
 * The cookie is honoured only with this header: a cross-site form cannot send it, and a cross-site
 * script cannot either without passing CORS — so cookie-carrying writes are safe from CSRF.
 */
export const WEB_CLIENT_HEADER = 'x-portrait-web'
export const REFRESH_COOKIE = 'portrait_refresh'
const COOKIE_PATH = '/api/auth'

/** The cookie's name and whether it is always Secure, decided once from PUBLIC_URL. */
export interface RefreshCookieSettings {
  name: string
  alwaysSecure: boolean
}

/**
 * Behind a TLS-terminating proxy the request itself is plain http, so PUBLIC_URL decides: when it is
 * https the cookie is always Secure and carries the `__Secure-` prefix, which browsers accept only from
 * a secure origin with Secure set — a cookie planted over plain http cannot pass for it. Only the
 * configured name is read.
 */
export function refreshCookieSettings(publicUrl: string | undefined): RefreshCookieSettings {
  const https = publicUrl?.startsWith('https:') === true
  return { name: https ? `__Secure-${REFRESH_COOKIE}` : REFRESH_COOKIE, alwaysSecure: https }
}

export function isWebClient(request: FastifyRequest): boolean {
  return request.headers[WEB_CLIENT_HEADER] === '1'
}

function attributes(request: FastifyRequest, cookie: RefreshCookieSettings) {
  return { httpOnly: true, sameSite: 'strict', secure: cookie.alwaysSecure || request.protocol === 'https', path: COOKIE_PATH } as const
}

export function setRefreshCookie(request: FastifyRequest, reply: FastifyReply, token: string, ttlSeconds: number, cookie: RefreshCookieSettings): void {
  reply.setCookie(cookie.name, token, { ...attributes(request, cookie), maxAge: ttlSeconds })
}

export function clearRefreshCookie(request: FastifyRequest, reply: FastifyReply, cookie: RefreshCookieSettings): void {
  reply.clearCookie(cookie.name, attributes(request, cookie))
}

/** The refresh token from the body, or from the cookie for the web page. */
export function presentedRefreshToken(request: FastifyRequest, bodyToken: string | undefined, cookie: RefreshCookieSettings): string | undefined {
  if (bodyToken !== undefined) return bodyToken
  return isWebClient(request) ? request.cookies[cookie.name] : undefined
}
