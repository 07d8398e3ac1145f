import assert from 'node:assert/strict'
import { test } from 'node:test'
import sharp from 'sharp'
import { GOOD_PASSWORD, TEST_JWT_SECRET } from './helpers/app.js'
import { freshSchema, POSTGRES_SKIP, queryPostgres } from './helpers/postgres.js'
import { startServer } from './helpers/processes.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { suite } from './helpers/suite.js'

const skip = POSTGRES_SKIP || REDIS_SKIP

async function call(base: string, method: string, path: string, body?: unknown, access?: string) {
  const headers: Record<string, string> = access ? { authorization: `Bearer ${access}` } : {}
  let payload: BodyInit | undefined
  if (body instanceof FormData) payload = body
  else if (body !== undefined) {
    headers['content-type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  const response = await fetch(`${base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(15_000) })
  const bytes = Buffer.from(await response.arrayBuffer())
  const json = response.headers.get('content-type')?.includes('json') ? JSON.parse(bytes.toString()) : undefined
  return { status: response.status, headers: response.headers, bytes, json }
}

suite('two instances on one PostgreSQL schema, one Redis and MEDIA_STORAGE=db', skip, () => {
  test('when a user moves between instances, then sessions, avatars and sign-in limits are shared', async (t) => {
    const schema = await freshSchema(t)
    const env = {
      DATABASE_URL: process.env.TEST_DATABASE_URL as string,
      DATABASE_SCHEMA: schema,
      REDIS_URL: process.env.TEST_REDIS_URL as string,
      REDIS_KEY_PREFIX: testRedisPrefix(t),
      MEDIA_STORAGE: 'db',
      JWT_SECRET: TEST_JWT_SECRET,
      SIGN_IN_MAX_FAILURES_PER_ACCOUNT: '4',
    }
    // Started together: both migrate the same empty schema at once, which the migration lock must serialise.
    const [a, b] = await Promise.all([startServer(t, { env }), startServer(t, { env })])
    assert.notEqual(a.url, b.url)

    const signUp = await call(a.url, 'POST', '/api/auth/sign-up', { username: 'hana', email: 'hana@example.com', password: GOOD_PASSWORD })
    assert.equal(signUp.status, 201)
    const userId = signUp.json.user.id
    const signIn = await call(b.url, 'POST', '/api/auth/sign-in', { username: 'hana', password: GOOD_PASSWORD })
    assert.equal(signIn.status, 200)
    const { access, refresh } = signIn.json

    const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#3366cc' } }).png().toBuffer()
    const form = new FormData()
    form.append('first_name', 'Hana')
    form.append('avatar', new Blob([png], { type: 'image/png' }), 'me.png')
    const updated = await call(a.url, 'PATCH', `/api/users/${userId}`, form, access)
    assert.equal(updated.status, 200, updated.bytes.toString())
    const avatarPath = updated.json.avatar as string
    assert.match(avatarPath, /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
    const stored = await queryPostgres<{ content: Buffer }>('SELECT content FROM avatars WHERE name = $1', [avatarPath.split('/').pop()], { schema })
    assert.equal(stored.length, 1)

    const image = await call(b.url, 'GET', avatarPath)
    assert.equal(image.status, 200)
    assert.equal(image.headers.get('content-type'), 'image/webp')
    assert.equal(image.headers.get('cache-control'), 'public, max-age=31536000, immutable')
    assert.equal(image.headers.get('x-content-type-options'), 'nosniff')
    assert.deepEqual(image.bytes, stored[0]?.content)
    assert.equal((await sharp(image.bytes).metadata()).width, 64)
    assert.equal((await call(b.url, 'GET', '/api/users/me', undefined, access)).json.first_name, 'Hana')

    assert.equal((await call(b.url, 'POST', '/api/auth/sign-out', { refresh })).status, 204)
    const refused = await call(a.url, 'GET', '/api/users/me', undefined, access)
    assert.equal(refused.status, 401)
    assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/)

    for (const [i, server] of [a, b, a, b].entries()) {
      const failed = await call(server.url, 'POST', '/api/auth/sign-in', { username: 'hana', password: `wrong-password-${i}` })
      assert.equal(failed.status, 401, `failure ${i + 1}`)
    }
    for (const server of [a, b]) {
      const blocked = await call(server.url, 'POST', '/api/auth/sign-in', { username: 'hana', password: GOOD_PASSWORD })
      assert.equal(blocked.status, 429)
      assert.ok(Number(blocked.headers.get('retry-after')) > 0)
    }
  })
})
