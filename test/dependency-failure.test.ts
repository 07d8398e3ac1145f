import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { GOOD_PASSWORD } from './helpers/app.js'
import { removeWhenDone } from './helpers/cleanup.js'
import { callServer, startServer, waitForHealth } from './helpers/processes.js'
import { suite } from './helpers/suite.js'
import { freePort, THROWAWAY_POSTGRES_SKIP, THROWAWAY_REDIS_SKIP, throwawayPostgres, throwawayRedis } from './helpers/throwaway-servers.js'

function assertUnavailable(response: Awaited<ReturnType<typeof callServer>>, dependency: string) {
  assert.equal(response.status, 503, JSON.stringify(response.json))
  assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal(response.json.type, '/problems/service_unavailable')
  assert.match(response.json.detail, new RegExp(dependency, 'i'))
  assert.equal(response.json.request_id, response.headers.get('x-request-id'))
  assert.ok(Number(response.headers.get('retry-after')) > 0)
  assert.doesNotMatch(JSON.stringify(response.json), /ECONNREFUSED|127\.0\.0\.1|stack/)
}

const signUpBody = { username: 'ivan', email: 'ivan@example.com', password: GOOD_PASSWORD }
const signInBody = { username: 'ivan', password: GOOD_PASSWORD }

suite('when Redis goes away', THROWAWAY_REDIS_SKIP, () => {
  test('when Redis stops mid-run, then sign-in gets 503, health names redis, and both recover when it returns', async (t) => {
    const redis = await throwawayRedis(t)
    const server = await startServer(t, { env: { REDIS_URL: redis.url } })
    const { access } = (await callServer(server, 'POST', '/api/auth/sign-up', signUpBody)).json
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', signInBody)).status, 200)

    await redis.stop()
    assertUnavailable(await callServer(server, 'POST', '/api/auth/sign-in', signInBody), 'redis')
    // Requests that do not count sign-in failures go on working.
    assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).status, 200)
    const health = await callServer(server, 'GET', '/api/health')
    assert.equal(health.status, 503)
    assert.deepEqual(health.json, { status: 'unavailable', checks: { database: 'ok', media: 'ok', redis: 'down' } })

    await redis.start()
    await waitForHealth(server.url, 200, Date.now() + 20_000, server.output)
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', signInBody)).status, 200)
    assert.equal(server.child.exitCode, null)
  })
})

suite('when Redis is down at start', THROWAWAY_REDIS_SKIP, () => {
  test('when the server starts without its Redis, then it serves, reports redis down, and picks Redis up once it runs', async (t) => {
    const redis = await throwawayRedis(t)
    await redis.stop()
    const server = await startServer(t, { env: { REDIS_URL: redis.url }, waitForHealthy: false })
    const health = await waitForHealth(server.url, 503, Date.now() + 20_000, server.output)
    assert.deepEqual(health, { status: 'unavailable', checks: { database: 'ok', media: 'ok', redis: 'down' } })
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-up', signUpBody)).status, 201)
    assertUnavailable(await callServer(server, 'POST', '/api/auth/sign-in', signInBody), 'redis')

    await redis.start()
    await waitForHealth(server.url, 200, Date.now() + 20_000, server.output)
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', signInBody)).status, 200)
  })
})

suite('when PostgreSQL goes away', THROWAWAY_POSTGRES_SKIP, () => {
  test('when PostgreSQL stops mid-run, then requests get 503, health names the database, and both recover when it returns', async (t) => {
    const postgres = await throwawayPostgres(t)
    const server = await startServer(t, { env: { DATABASE_URL: postgres.url } })
    const { access } = (await callServer(server, 'POST', '/api/auth/sign-up', signUpBody)).json
    assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).status, 200)

    await postgres.stop()
    assertUnavailable(await callServer(server, 'GET', '/api/users/me', undefined, access), 'database')
    assertUnavailable(await callServer(server, 'POST', '/api/auth/sign-in', signInBody), 'database')
    assertUnavailable(await callServer(server, 'PATCH', '/api/users/me', { first_name: 'Ivan' }, access), 'database')
    // Not a 202 for a reset mail that could not be recorded: the client is told to try again.
    assertUnavailable(await callServer(server, 'POST', '/api/auth/password-reset', { email: signUpBody.email }), 'database')
    const health = await callServer(server, 'GET', '/api/health')
    assert.equal(health.status, 503)
    assert.deepEqual(health.json, { status: 'unavailable', checks: { database: 'down', media: 'ok' } })

    await postgres.start()
    await waitForHealth(server.url, 200, Date.now() + 20_000, server.output)
    // The session written before the outage is still there: the same token works again.
    assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).status, 200)
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', signInBody)).status, 200)
    assert.equal(server.child.exitCode, null)
  })
})

test('when the database does not answer at start, then the server exits 1 with one line naming the cause', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-nodb-'))
  removeWhenDone(t, dir)
  const port = await freePort()
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: join(import.meta.dirname, '..'),
    env: { PATH: process.env.PATH, DATA_DIR: dir, PORT: '0', DATABASE_URL: `postgres://portrait:hunter22@127.0.0.1:${port}/portrait` },
    encoding: 'utf8',
    timeout: 60_000,
  })
  assert.equal(result.status, 1, result.stderr)
  assert.match(result.stderr.trim(), /^portrait: the database does not answer \(ECONNREFUSED\)[^\n]*$/)
  assert.doesNotMatch(result.stderr, /hunter22/)
})
