import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { test } from 'node:test'
import { Api, assertProblem, GOOD_PASSWORD, multipart, type Part, putMultipart, requestFrom } from './client.js'
import { pngBytes } from './images.js'
import { avatarFiles, createSuperuser, dataDir, startServer } from './server.js'

// OWASP API4 (unrestricted resource consumption) and ASVS V2.2 (brute-force protection).

const AVATAR_MAX_BYTES = 64 * 1024

test('sign-in limits on a running server', async (t) => {
  const server = await startServer(t, {
    env: { SIGN_IN_MAX_FAILURES_PER_ACCOUNT: '3', SIGN_IN_MAX_FAILURES_PER_ADDRESS: '5', SIGN_IN_FAILURE_WINDOW: '10m' },
  })
  const api = new Api(server.url)
  await Promise.all([api.signUp('lockme'), api.signUp('bystander')])
  const signIn = (from: string, username: string, password: string) => requestFrom(from, `${server.url}/api/auth/sign-in`, 'POST', { username, password })

  /** 429 problem+json with a Retry-After of whole seconds within the window. */
  function assertLimited(reply: Awaited<ReturnType<typeof signIn>>) {
    assert.equal(reply.status, 429, JSON.stringify(reply.json))
    assert.match(String(reply.headers['content-type']), /^application\/problem\+json/)
    const retryAfter = Number(reply.headers['retry-after'])
    assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 600, `Retry-After: ${reply.headers['retry-after']}`)
  }

  await t.test('when one account fails too often, then it is locked from every address, even with the right password', async () => {
    for (let attempt = 0; attempt < 3; attempt++) assert.equal((await signIn('127.0.0.2', 'lockme', 'wrong-password-1')).status, 401)
    assertLimited(await signIn('127.0.0.2', 'lockme', GOOD_PASSWORD))
    // Another address, the right password: the account is still locked (a distributed guess gains nothing).
    assertLimited(await signIn('127.0.0.3', 'lockme', GOOD_PASSWORD))
    // Case does not open a second counter.
    assertLimited(await signIn('127.0.0.3', 'LOCKME', GOOD_PASSWORD))
    // Other accounts are not locked by it.
    assert.equal((await signIn('127.0.0.3', 'bystander', GOOD_PASSWORD)).status, 200)
  })

  await t.test('when one address fails on many accounts, then that address is limited and other addresses are not', async () => {
    for (let attempt = 0; attempt < 5; attempt++) assert.equal((await signIn('127.0.0.4', `nobody${attempt}`, 'wrong-password-1')).status, 401)
    assertLimited(await signIn('127.0.0.4', 'bystander', GOOD_PASSWORD))
    assert.equal((await signIn('127.0.0.5', 'bystander', GOOD_PASSWORD)).status, 200)
  })
})

test('request size bounds on a running server', async (t) => {
  const data = dataDir(t)
  await createSuperuser(data, 'root', GOOD_PASSWORD)
  const server = await startServer(t, { data, env: { AVATAR_MAX_BYTES: String(AVATAR_MAX_BYTES) } })
  const api = new Api(server.url)
  const user = await api.signUp('bounded')
  const root = await api.signIn('root')
  const path = `/api/users/${user.user.id}`
  const profile = async () => (await api.me(user.access)).text
  const before = await profile()
  const png = await pngBytes()

  const attacks: [string, () => Promise<{ status: number; text: string; headers: Headers; json: unknown }>, number[]][] = [
    ['a JSON body over 64 KiB', () => api.call(path, { method: 'PUT', token: user.access, json: { first_name: 'x'.repeat(70_000) } }), [413]],
    ['a form body over 64 KiB', () => api.call(path, { method: 'PUT', token: user.access, body: `first_name=${'x'.repeat(70_000)}`, headers: form }), [413]],
    [
      'an avatar one byte over AVATAR_MAX_BYTES',
      () => putMultipart(api, user.user.id, user.access, [{ name: 'avatar', filename: 'a.png', content: Buffer.concat([png, Buffer.alloc(AVATAR_MAX_BYTES + 1 - png.length)]) }]),
      [413],
    ],
    ['100 form fields in multipart', () => putMultipart(api, user.user.id, user.access, fields(100)), [413]],
    ['a 1 MiB text field in multipart', () => putMultipart(api, user.user.id, user.access, [{ name: 'first_name', value: 'x'.repeat(1024 * 1024) }]), [400, 413]],
    [
      'three file parts',
      () => putMultipart(api, user.user.id, user.access, [1, 2, 3].map((n) => ({ name: 'avatar', filename: `${n}.png`, content: png }))),
      [400, 413],
    ],
    [
      '50 empty file parts',
      () => putMultipart(api, user.user.id, user.access, Array.from({ length: 50 }, (_, n) => ({ name: `f${n}`, filename: '', content: '' }))),
      [400, 413],
    ],
    ['a header of 64 KiB', () => api.call(path, { method: 'PUT', token: user.access, json: {}, headers: { 'x-padding': 'x'.repeat(64 * 1024) } }), [431]],
    ['JSON nested 30000 deep', () => api.call(path, { method: 'PUT', token: user.access, body: deepJson(30_000), headers: json }), [400, 413]],
    [
      'JSON nested 20000 deep around a prototype key',
      () => api.call(path, { method: 'PUT', token: user.access, body: `{"a":${deepJson(20_000, '{"constructor":{"prototype":{"is_staff":true}}}')}}`, headers: json }),
      [400, 413],
    ],
  ]
  for (const [name, attack, statuses] of attacks) {
    await t.test(`when a client sends ${name}, then it gets ${statuses.join(' or ')}, never a 5xx, and nothing changes`, async () => {
      const reply = await attack()
      assert.ok(statuses.includes(reply.status), `${name}: ${reply.status} ${reply.text.slice(0, 300)}`)
      if (reply.status !== 431) assertProblem(reply as never, ...statuses)
      assert.equal(await profile(), before)
      assert.deepEqual(avatarFiles(data), [])
    })
  }

  await t.test('when a client streams a 20 MiB avatar, then the server answers 413 or hangs up without reading it all, and nothing changes', async () => {
    // Over a raw socket: the server may answer and close while we are still sending, which fetch reports as a failure.
    const { body, headers } = multipart([{ name: 'avatar', filename: 'a.png', content: Buffer.alloc(20 * 1024 * 1024, 7) }])
    const { answer, sentAll } = await rawRequest(server.url, `PUT ${path}`, { authorization: `Bearer ${user.access}`, ...headers }, body)
    if (answer !== '') assert.match(answer, /^HTTP\/1\.1 413 /)
    else assert.equal(sentAll, false, 'the server read 20 MiB and said nothing')
    assert.equal(await profile(), before)
    assert.deepEqual(avatarFiles(data), [])
  })

  await t.test('when the user list is asked for more than 100 per page or a bad page, then 400 names the parameter', async () => {
    for (const query of ['page_size=101', 'page_size=1000000', 'page_size=0', 'page_size=-1', 'page=0', 'page_size=abc', `search=${'x'.repeat(201)}`]) {
      const reply = await api.call(`/api/users?${query}`, { token: root.access })
      const problem = assertProblem(reply, 400)
      assert.ok(problem.errors && Object.keys(problem.errors).some((key) => query.startsWith(key)), `${query}: ${reply.text}`)
    }
  })

  await t.test('when the user list is asked for 100 per page, then it answers', async () => {
    const reply = await api.call('/api/users?page_size=100&page=1', { token: root.access })
    assert.equal(reply.status, 200, reply.text)
    assert.ok(reply.json.results.length <= 100)
  })

  await t.test('when a header is too large, then the 431 is a problem+json like every other error', async () => {
    const reply = await api.call(path, { method: 'PUT', token: user.access, json: {}, headers: { 'x-padding': 'x'.repeat(64 * 1024) } })
    assertProblem(reply, 431)
  })
})

test('a slow client on a running server', async (t) => {
  const server = await startServer(t, { env: { REQUEST_TIMEOUT: '2s' } })
  const api = new Api(server.url)
  const user = await api.signUp('slowloris')

  await t.test(
    'when an upload trickles in byte by byte, then the server cuts it off before it is finished and other clients are still served',
    async () => {
      const { body, headers } = multipart([{ name: 'avatar', filename: 'slow.png', content: Buffer.concat([await pngBytes(), Buffer.alloc(4000)]) }])
      // One byte every 50 ms: the first 400 bytes take 20 s, ten times the timeout; the rest never comes.
      const sent = body.subarray(0, 400)
      const { port, hostname } = new URL(server.url)
      const socket = connect(Number(port), hostname)
      await new Promise((resolve) => socket.once('connect', resolve))
      let answer = ''
      let closed = false
      socket.on('data', (chunk) => (answer += chunk))
      socket.on('close', () => (closed = true))
      socket.on('error', () => {})
      socket.write(
        `PUT /api/users/${user.user.id} HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: Bearer ${user.access}\r\n` +
          `Content-Type: ${headers['content-type']}\r\nContent-Length: ${body.length}\r\n\r\n`,
      )
      let meAnswered = 0
      let offset = 0
      for (; offset < sent.length && !closed && answer === ''; offset++) {
        socket.write(sent.subarray(offset, offset + 1))
        await new Promise((resolve) => setTimeout(resolve, 50))
        if (offset % 20 === 0 && (await api.me(user.access)).status === 200) meAnswered++
      }
      socket.destroy()
      assert.ok(closed || answer !== '', `the server was still waiting after ${offset} bytes`)
      if (answer !== '') assert.match(answer, /^HTTP\/1\.1 408 /)
      assert.ok(meAnswered > 0, 'GET /api/users/me was not answered meanwhile')
      assert.equal((await api.me(user.access)).json.avatar, null)
    },
  )
})

/** Sends a request over a raw socket, in chunks, until it is all sent or the server answers or hangs up. */
async function rawRequest(url: string, requestLine: string, headers: Record<string, string>, body: Buffer): Promise<{ answer: string; sentAll: boolean }> {
  const { port, hostname } = new URL(url)
  const socket = connect(Number(port), hostname)
  await new Promise((resolve) => socket.once('connect', resolve))
  let answer = ''
  let closed = false
  socket.on('data', (chunk) => (answer += chunk))
  const done = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  const head = Object.entries({ ...headers, host: hostname, 'content-length': String(body.length) }).map(([name, value]) => `${name}: ${value}\r\n`)
  socket.write(`${requestLine} HTTP/1.1\r\n${head.join('')}\r\n`)
  let offset = 0
  while (offset < body.length && !closed && answer === '') {
    const chunk = body.subarray(offset, offset + 64 * 1024)
    offset += chunk.length
    if (!socket.write(chunk)) await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), done])
  }
  const sentAll = offset >= body.length
  // Whatever the server says (or not) once it stops reading; then we hang up.
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))])
  socket.destroy()
  return { answer, sentAll }
}

const form = { 'content-type': 'application/x-www-form-urlencoded' }
const json = { 'content-type': 'application/json' }

function fields(count: number): Part[] {
  return Array.from({ length: count }, (_, n) => ({ name: `field${n}`, value: 'x' }))
}

/** `depth` nested arrays around `core`. */
function deepJson(depth: number, core = '1'): string {
  return `${'['.repeat(depth)}${core}${']'.repeat(depth)}`
}
