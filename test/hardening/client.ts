import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { GOOD_PASSWORD, USER_FIELDS } from '../helpers/app.js'

export { GOOD_PASSWORD, USER_FIELDS }

export interface Reply {
  status: number
  headers: Headers
  text: string
  /** The parsed body, whatever JSON came back. */
  json: any
}

export interface Session {
  access: string
  refresh: string
  user: { id: number; username: string; email: string; avatar: string | null; [field: string]: unknown }
}

/** fetch over a real socket, returning the body both as text (byte comparisons) and parsed. */
export async function call(
  url: string,
  init: { method?: string; token?: string; json?: unknown; body?: BodyInit | Buffer; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...init.headers }
  if (init.token) headers.authorization = `Bearer ${init.token}`
  let body = init.body
  if (init.json !== undefined) {
    headers['content-type'] ??= 'application/json'
    body = JSON.stringify(init.json)
  }
  const response = await fetch(url, { method: init.method ?? 'GET', headers, body: body as BodyInit | undefined, signal: AbortSignal.timeout(120_000) })
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {}
  return { status: response.status, headers: response.headers, text, json }
}

/** A client bound to one server's base URL. */
export class Api {
  constructor(readonly url: string) {}

  call(path: string, init: Parameters<typeof call>[1] = {}): Promise<Reply> {
    return call(`${this.url}${path}`, init)
  }

  async signUp(username: string, extra: Record<string, unknown> = {}): Promise<Session> {
    const reply = await this.call('/api/auth/sign-up', {
      method: 'POST',
      json: { username, email: `${username}@example.com`, password: GOOD_PASSWORD, ...extra },
    })
    assert.equal(reply.status, 201, `sign-up of ${username}: ${reply.text}`)
    return reply.json
  }

  async signIn(username: string, password = GOOD_PASSWORD): Promise<Session> {
    const reply = await this.call('/api/auth/sign-in', { method: 'POST', json: { username, password } })
    assert.equal(reply.status, 200, `sign-in of ${username}: ${reply.text}`)
    return reply.json
  }

  me(token: string): Promise<Reply> {
    return this.call('/api/users/me', { token })
  }
}

/** Asserts the RFC 9457 shape (SPEC §7) and a status in the given set; returns the problem. */
export function assertProblem(reply: Reply, ...statuses: number[]) {
  assert.ok(statuses.includes(reply.status), `expected ${statuses.join('/')}, got ${reply.status}: ${reply.text.slice(0, 500)}`)
  assert.match(reply.headers.get('content-type') ?? '', /^application\/problem\+json/, reply.text.slice(0, 200))
  for (const key of ['type', 'title', 'status', 'detail', 'request_id']) assert.ok(key in reply.json, `problem lacks ${key}`)
  assert.equal(reply.json.status, reply.status)
  return reply.json as { type: string; status: number; detail: string; errors?: Record<string, string[]> }
}

/** A user object has exactly the documented fields, nothing more (no hash, no version). */
export function assertUserShape(user: unknown): void {
  assert.ok(user && typeof user === 'object', 'not a user object')
  assert.deepEqual(Object.keys(user).sort(), USER_FIELDS)
}

export type Part =
  | { name: string; value: string | Buffer }
  | { name: string; filename: string; content: Buffer | string; contentType?: string }

export const BOUNDARY = '----hardening-boundary-q7Yc2K'

/** A multipart/form-data body built byte for byte, so broken and hostile ones can be built too. */
export function multipart(parts: Part[]): { body: Buffer; headers: Record<string, string> } {
  const chunks: Buffer[] = []
  for (const part of parts) {
    let head = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${part.name}"`
    if ('filename' in part) head += `; filename="${part.filename}"\r\nContent-Type: ${part.contentType ?? 'application/octet-stream'}`
    const content = 'filename' in part ? part.content : part.value
    chunks.push(Buffer.from(`${head}\r\n\r\n`), Buffer.from(content), Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`))
  return { body: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` } }
}

/** PUT a multipart body to /api/users/{id}. */
export function putMultipart(api: Api, id: number, token: string, parts: Part[], method = 'PUT'): Promise<Reply> {
  const { body, headers } = multipart(parts)
  return api.call(`/api/users/${id}`, { method, token, body, headers })
}

/** A request from a chosen loopback source address (127.0.0.0/8), so per-address limits can be tested on one machine. */
export function requestFrom(
  localAddress: string,
  url: string,
  method: string,
  json: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: any }> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify(json))
    const sent = { 'content-type': 'application/json', 'content-length': String(body.length), ...headers }
    const req = httpRequest(url, { method, localAddress, headers: sent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString() || 'null') }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Decodes a JWT's payload without checking it (the test forges variants of real tokens). */
export function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString())
}
