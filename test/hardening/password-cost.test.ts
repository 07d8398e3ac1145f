import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Api, assertProblem } from './client.js'
import { startServer } from './server.js'

// The password rules run on the event loop, before any limit (a refused sign-up reserves nothing). The
// similarity check compared a password of any length with the username and email: sign-up's body is judged
// by the service, not capped by the schema, so a 60,000-character password built to match the email in
// runs of 149 took 6.5 s of event loop per request (every other request waited), unauthenticated, unlimited.

const EMAIL = `${'a'.repeat(64)}@example.com`
const BOMB = `${'a'.repeat(149)}b`.repeat(400)

test('when sign-ups send 60,000-character passwords made to be compared slowly, then they are refused as too long at once and the server keeps answering', async (t) => {
  const server = await startServer(t)
  const api = new Api(server.url)
  const bombs = Array.from({ length: 4 }, () =>
    api.call('/api/auth/sign-up', { method: 'POST', json: { username: 'a'.repeat(150), email: EMAIL, password: BOMB } }),
  )
  // Before: the four held the event loop for about 26 s one after another, health included. A generous
  // deadline, only to fail a server that stopped answering.
  const health = await fetch(`${server.url}/api/health`, { signal: AbortSignal.timeout(5000) }).then(
    (response) => response.status,
    (error: Error) => error.name,
  )
  const replies = await Promise.all(bombs)
  assert.equal(health, 200)
  for (const reply of replies) {
    const problem = assertProblem(reply, 400)
    // Too long is the whole answer: a password over the limit is not compared with anything.
    assert.deepEqual(problem.errors?.password, ['This password is too long. It must contain at most 128 characters.'])
  }
  // A password within the limit is still compared with the email.
  const similar = await api.call('/api/auth/sign-up', { method: 'POST', json: { username: 'someone', email: EMAIL, password: `${'a'.repeat(60)}b` } })
  assert.deepEqual(assertProblem(similar, 400).errors?.password, ['This password is too similar to the email.'])
})
