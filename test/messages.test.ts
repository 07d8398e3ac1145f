import assert from 'node:assert/strict'
import { test } from 'node:test'
import { humanSize } from '../src/human-size.js'
import { GOOD_PASSWORD, problemOf, testApp } from './helpers/app.js'
import { multipart } from './helpers/images.js'
import { freePort } from './helpers/throwaway-servers.js'

test('when sizes are shown to people, then they are in binary units', () => {
  assert.equal(humanSize(5 * 1024 * 1024), '5 MiB')
  assert.equal(humanSize(256 * 1024), '256 KiB')
  assert.equal(humanSize(1536), '1.5 KiB')
  assert.equal(humanSize(25 * 1024 * 1024 + 10 * 1024), '25 MiB')
  assert.equal(humanSize(900), '900 bytes')
})

test('when an avatar is over the limit, then the 413 says the limit in MiB', async (t) => {
  const { client } = await testApp(t, 'sqlite', { avatarMaxBytes: 5 * 1024 * 1024 })
  const me = await client.signUp()
  const body = multipart([{ name: 'avatar', filename: 'big.jpg', content: Buffer.alloc(5 * 1024 * 1024 + 1, 0xff), contentType: 'image/jpeg' }])
  const problem = problemOf(await client.send('PUT', `/api/users/${me.user.id}`, body.payload, me.access, body.headers), 413)
  assert.equal(problem.detail, 'The avatar may be at most 5 MiB.')
})

test('when a body type is not accepted, then the 415 lists the accepted types and does not echo the one sent', async (t) => {
  const { client } = await testApp(t)
  const me = await client.signUp()
  const update = problemOf(await client.send('PATCH', `/api/users/${me.user.id}`, '<x/>', me.access, { 'content-type': 'application/x-evil-type' }), 415)
  assert.equal(update.detail, 'This body type is not accepted here: send application/json, multipart/form-data or application/x-www-form-urlencoded.')
  const password = problemOf(await client.send('POST', `/api/users/${me.user.id}/password`, '<x/>', me.access, { 'content-type': 'application/x-evil-type' }), 415)
  assert.equal(password.detail, 'This body type is not accepted here: send application/json or application/x-www-form-urlencoded.')
})

test('when Redis does not answer, then the 503 says "Redis is not answering"', async (t) => {
  const port = await freePort()
  const { client } = await testApp(t, 'sqlite', { redisUrl: `redis://127.0.0.1:${port}` })
  const response = await client.send('POST', '/api/auth/sign-in', { username: 'nobody', password: GOOD_PASSWORD })
  assert.equal(problemOf(response, 503).detail, 'Redis is not answering. Try again in a few seconds.')
})

test('when the page loads, then it learns the avatar limit from /settings.js', async (t) => {
  const { app } = await testApp(t, 'sqlite', { avatarMaxBytes: 3 * 1024 * 1024 })
  const response = await app.inject({ method: 'GET', url: '/settings.js' })
  assert.equal(response.statusCode, 200)
  assert.match(response.headers['content-type'] as string, /^text\/javascript/)
  assert.equal(response.body, 'export const AVATAR_MAX_BYTES = 3145728\n')
  assert.match(response.headers['content-security-policy'] as string, /default-src 'self'/)
})
