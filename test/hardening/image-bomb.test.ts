import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Api, assertProblem, GOOD_PASSWORD, multipart, type Reply } from './client.js'
import { jpegBytes, jpegScanBomb, progressiveJpegBytes } from './images.js'
import { startServer } from './server.js'

// Issue 11 §3: one crafted JPEG held a core for minutes, and two of them took every libuv thread, so
// sign-ins (argon2 runs on the same threads) stalled. UV_THREADPOOL_SIZE=2 stands in for a host with
// four or more CPUs, where the image slots used to equal or exceed libuv's four threads.

// Far longer than a refusal takes, far shorter than the minute and more each bomb held a core before.
const DEADLINE_MS = 15_000

/** A request that must complete within DEADLINE_MS; a hung one fails the test instead of holding it. */
async function within(api: Api, path: string, init: { method: string; token?: string; json?: unknown; body?: Buffer; headers?: Record<string, string> }): Promise<Reply> {
  const headers: Record<string, string> = { ...init.headers }
  if (init.token) headers.authorization = `Bearer ${init.token}`
  if (init.json !== undefined) headers['content-type'] = 'application/json'
  const body = init.json !== undefined ? JSON.stringify(init.json) : init.body
  try {
    const response = await fetch(`${api.url}${path}`, { method: init.method, headers, body: body as BodyInit | undefined, signal: AbortSignal.timeout(DEADLINE_MS) })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text, json: JSON.parse(text) }
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') assert.fail(`${init.method} ${path} did not complete within ${DEADLINE_MS / 1000} s`)
    throw error
  }
}

test('scan bombs against a running server with a two-thread libuv pool', async (t) => {
  const server = await startServer(t, { env: { UV_THREADPOOL_SIZE: '2' } })
  const api = new Api(server.url)
  const uploader = await api.signUp('bomber')
  const other = await api.signUp('bystander')
  // 20,000 copies of one AC scan: 1.6 MB, a minute and more of one core on the code before this fix.
  const bomb = await jpegScanBomb(20_000)
  const upload = (content: Buffer) => {
    const { body, headers } = multipart([{ name: 'avatar', filename: 'photo.jpg', content, contentType: 'image/jpeg' }])
    return within(api, `/api/users/${uploader.user.id}`, { method: 'PATCH', token: uploader.access, body, headers })
  }

  await t.test('when the pool has two threads, then one image runs at a time, leaving a thread to hashing and file I/O', () => {
    const line = server.output().split('\n').find((entry) => entry.includes('libuv thread pool sized'))
    assert.ok(line, server.output())
    const { threadPoolSize, imageConcurrency } = JSON.parse(line)
    assert.deepEqual({ threadPoolSize, imageConcurrency }, { threadPoolSize: 2, imageConcurrency: 1 })
  })

  await t.test('when a JPEG repeats a scan 20,000 times, then it is refused with 400 on avatar at once and nothing changes', async () => {
    const reply = await upload(bomb)
    const problem = assertProblem(reply, 400)
    assert.match(problem.errors?.avatar?.[0] ?? '', /too many scans \(100 at most\)/)
    assert.equal((await api.me(uploader.access)).json.avatar, null)
  })

  await t.test('when an ordinary progressive or baseline JPEG is uploaded, then it is stored', async () => {
    for (const content of [await progressiveJpegBytes(), await jpegBytes(640, 480)]) {
      const reply = await upload(content)
      assert.equal(reply.status, 200, reply.text)
      assert.match(reply.json.avatar, /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
    }
  })

  await t.test('when two scan bombs are in flight, then a sign-in started meanwhile completes normally', async () => {
    const bombs = Promise.allSettled([upload(bomb), upload(bomb)])
    const session = await within(api, '/api/auth/sign-in', { method: 'POST', json: { username: other.user.username, password: GOOD_PASSWORD } })
    assert.equal(session.status, 200, session.text)
    assert.equal(typeof session.json.access, 'string')
    for (const outcome of await bombs) {
      assert.equal(outcome.status, 'fulfilled', String((outcome as PromiseRejectedResult).reason))
      assertProblem((outcome as PromiseFulfilledResult<Reply>).value, 400)
    }
    assert.equal((await api.me(session.json.access)).status, 200)
  })
})
