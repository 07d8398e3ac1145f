import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import { DIALECTS, GOOD_PASSWORD } from './helpers/app.js'
import { freshSchema } from './helpers/postgres.js'
import { type ServerProcess, startServer } from './helpers/processes.js'
import { suite } from './helpers/suite.js'

// Clients that misbehave (hang up mid-body, keep sending after a refusal, send URLs the router refuses) are
// the client's problem: never a 5xx, never an error-level log line, and the status always reaches the client.

/** The server's log as parsed JSON lines (non-JSON lines are skipped). */
function logLines(server: ServerProcess): Record<string, unknown>[] {
  return server
    .output()
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line)]
      } catch {
        return []
      }
    })
}

async function waitFor(what: string, check: () => boolean, server: ServerProcess, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${server.output().slice(-4000)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Sends the head and part of a body, waits until the server has seen them, then resets the connection (RST). */
async function abortMidBody(port: number, head: string, partialBody: string): Promise<void> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`${head}\r\n\r\n${partialBody}`)
  await new Promise((resolve) => setTimeout(resolve, 150))
  socket.resetAndDestroy()
}

async function signUp(url: string, username: string): Promise<{ access: string; user: { id: number } }> {
  const response = await fetch(`${url}/api/auth/sign-up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: GOOD_PASSWORD }),
  })
  assert.equal(response.status, 201)
  return response.json()
}

for (const dialect of DIALECTS) {
  suite(`client aborts (${dialect.name})`, dialect.skip, () => {
    test('when a client resets the connection mid-body, then it is no 503 and no error-level log line', async (t) => {
      const env: Record<string, string> = dialect.name === 'postgres' ? { DATABASE_URL: process.env.TEST_DATABASE_URL as string, DATABASE_SCHEMA: await freshSchema(t) } : {}
      const server = await startServer(t, { env })
      const port = Number(new URL(server.url).port)
      const { access } = await signUp(server.url, `abort${process.pid}`)
      const ids: string[] = []
      for (let i = 0; i < 3; i++) {
        ids.push(`abort-json-${i}`)
        await abortMidBody(
          port,
          `POST /api/auth/sign-in HTTP/1.1\r\nHost: x\r\nX-Request-Id: abort-json-${i}\r\nContent-Type: application/json\r\nContent-Length: 5000`,
          '{"username":"someone","password":"',
        )
        ids.push(`abort-multipart-${i}`)
        await abortMidBody(
          port,
          `PUT /api/users/me HTTP/1.1\r\nHost: x\r\nX-Request-Id: abort-multipart-${i}\r\nAuthorization: Bearer ${access}\r\n` +
            'Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 500000',
          '--XyZ\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n',
        )
      }
      // Each aborted request leaves a log line under its request id; then none of them may be a server fault.
      await waitFor('a log line for each aborted request', () => ids.every((id) => logLines(server).some((line) => line.reqId === id)), server)
      const lines = logLines(server).filter((line) => ids.includes(line.reqId as string))
      for (const line of lines) {
        assert.ok((line.level as number) < 50, `error-level line for an aborted request: ${JSON.stringify(line)}`)
        assert.ok(!('status' in line) || (line.status as number) < 500, `5xx for an aborted request: ${JSON.stringify(line)}`)
        assert.ok(!JSON.stringify(line).includes('database'), `aborted request blamed on the database: ${JSON.stringify(line)}`)
      }
      assert.ok(!logLines(server).some((line) => (line.level as number) >= 50), 'an error-level line was logged')
      const health = await fetch(`${server.url}/api/health`)
      assert.equal(health.status, 200)
    })
  })
}

/** A streamed multipart body of `bytes` bytes in the avatar part, as a browser or Node's fetch sends it. */
function avatarForm(bytes: number): FormData {
  const form = new FormData()
  form.append('first_name', 'Streamed')
  form.append('avatar', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), 'avatar.png')
  return form
}

/** `tries` fetches of the same request; each outcome counted (a status, or the fetch error and its cause). */
async function outcomes(tries: number, send: () => Promise<Response>): Promise<Record<string, number>> {
  const seen: Record<string, number> = {}
  for (let i = 0; i < tries; i++) {
    let outcome: string
    try {
      const response = await send()
      await response.arrayBuffer()
      outcome = String(response.status)
    } catch (error) {
      outcome = `${(error as Error).message} (${((error as Error).cause as { code?: string } | undefined)?.code})`
    }
    seen[outcome] = (seen[outcome] ?? 0) + 1
  }
  return seen
}

test('when a streamed upload is refused before its body is read, then fetch gets the status every time (lingering close)', async (t) => {
  const server = await startServer(t, { env: { AVATAR_MAX_BYTES: String(64 * 1024) } })
  const { url } = server
  const { access, user } = await signUp(url, `linger${process.pid}`)
  const other = await signUp(url, `lingerother${process.pid}`)
  const cases: [string, number, () => Promise<Response>][] = [
    ['PUT /api/users/1, no token, 100 KB avatar', 401, () => fetch(`${url}/api/users/${user.id}`, { method: 'PUT', body: avatarForm(100_000) })],
    [
      'PUT /api/users/1, invalid token',
      401,
      () => fetch(`${url}/api/users/${user.id}`, { method: 'PUT', body: avatarForm(100_000), headers: { authorization: 'Bearer not-a-token' } }),
    ],
    [
      "PUT another user's profile",
      403,
      () => fetch(`${url}/api/users/${other.user.id}`, { method: 'PUT', body: avatarForm(100_000), headers: { authorization: `Bearer ${access}` } }),
    ],
    [
      'PUT /api/users/me, avatar over AVATAR_MAX_BYTES',
      413,
      () => fetch(`${url}/api/users/me`, { method: 'PUT', body: avatarForm(150_000), headers: { authorization: `Bearer ${access}` } }),
    ],
    ['multipart to a JSON route', 415, () => fetch(`${url}/api/auth/sign-in`, { method: 'POST', body: avatarForm(100_000) })],
    ['multipart to no route', 404, () => fetch(`${url}/api/no-such-route`, { method: 'POST', body: avatarForm(100_000) })],
    [
      'JSON over the 64 KiB limit',
      413,
      () => fetch(`${url}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'x'.repeat(150_000) }) }),
    ],
  ]
  for (const [name, status, send] of cases) {
    assert.deepEqual(await outcomes(20, send), { [status]: 20 }, name)
  }
})

test('when a huge body is refused, then the server drains only a bounded part of it and closes', async (t) => {
  const server = await startServer(t)
  const port = Number(new URL(server.url).port)
  const declared = 256 * 1024 * 1024
  const socket = net.connect(port, '127.0.0.1')
  let response = ''
  socket.on('data', (chunk) => (response += chunk))
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`PUT /api/users/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`)
  const chunk = Buffer.alloc(64 * 1024)
  let sent = 0
  let open = true
  socket.once('close', () => (open = false))
  // Write as fast as the server takes it; the server must stop taking it long before the declared length.
  while (open && sent < declared) {
    if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed])
    sent += chunk.length
  }
  await closed
  assert.ok(sent < 64 * 1024 * 1024, `the server read ${sent} bytes of a refused body`)
  assert.match(response, /^HTTP\/1\.1 401 /)
  assert.match(response, /connection: close/i)
})

/** One request over a socket of its own, the path sent exactly as given. */
function rawRequest(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => (text += chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }))
    })
    request.on('error', reject)
    request.end(body)
  })
}

test('when the router refuses a request itself, then the answer is problem+json with X-Request-Id and echoes no input', async (t) => {
  const server = await startServer(t)
  const port = Number(new URL(server.url).port)
  const long = '7'.repeat(300)
  const cases: { method: string; path: string; status: number; echo: string; headers?: Record<string, string>; body?: string }[] = [
    { method: 'GET', path: `/api/users/${long}`, status: 414, echo: '7777777777' },
    { method: 'DELETE', path: `/api/users/${long}`, status: 414, echo: '7777777777' },
    { method: 'GET', path: '/%', status: 400, echo: '/%' },
    { method: 'GET', path: '/api/users/%zzmarker', status: 400, echo: 'zzmarker' },
    { method: 'GET', path: '/media/avatars/%E0%A4%Amarker', status: 400, echo: 'marker' },
    { method: 'POST', path: '/%', status: 400, echo: '/%', headers: { 'content-type': 'application/json' }, body: '{"a":1}' },
    { method: 'GET', path: '/api/no-such-route-marker', status: 404, echo: 'marker' },
    { method: 'PROPFIND', path: '/api/users/marker', status: 404, echo: 'marker' },
    { method: 'OPTIONS', path: '/api/users/marker', status: 404, echo: 'marker' },
    { method: 'HEAD', path: '/api/no-such-route-marker', status: 404, echo: 'marker' },
    { method: 'GET', path: '/api/health', status: 417, echo: 'bogus-marker', headers: { expect: 'bogus-marker' } },
  ]
  for (const { method, path, status, echo, headers, body } of cases) {
    const name = `${method} ${path.slice(0, 40)}`
    const response = await rawRequest(port, method, path, headers, body)
    assert.equal(response.status, status, `${name}: ${response.body}`)
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name)
    const requestId = response.headers['x-request-id']
    assert.ok(requestId, `${name}: no X-Request-Id`)
    assert.ok(!response.body.includes(echo), `${name} echoes its input: ${response.body}`)
    if (method === 'HEAD') continue
    const problem = JSON.parse(response.body)
    assert.equal(problem.status, status, name)
    assert.equal(problem.request_id, requestId, name)
    for (const key of ['type', 'title', 'detail']) assert.equal(typeof problem[key], 'string', `${name}: ${key}`)
  }
  // The server is still fine afterwards.
  assert.equal((await rawRequest(port, 'GET', '/api/health')).status, 200)
})
