import assert from 'node:assert/strict'
import { test } from 'node:test'
import { passwordProblems } from '../src/auth/passwords.js'
import { DIALECTS, testApp } from './helpers/app.js'

const similar = (password: string, attributes: { username?: string; email?: string }) =>
  passwordProblems(password, attributes).filter((problem) => /too similar/.test(problem))

test('when a long passphrase merely contains a part of the email, then it is accepted as Django accepts it', () => {
  // Each contains a 3+ character part of the email ("com", "net", "example"), which the old substring rule refused.
  const cases: [string, string, string][] = [
    ['Outcome-Purple-Dinosaur-42', 'kate', 'kate@example.com'],
    ['Netherlands-Tulip-88', 'joost', 'joost@host.net'],
    ['correct horse welcome battery', 'sam', 'sam@example.com'],
    ['my-example-is-long-enough-9', 'lee', 'lee@example.org'],
  ]
  for (const [password, username, email] of cases) assert.deepEqual(similar(password, { username, email }), [], password)
})

test("when a password is like the username or email, then it is refused as in Django's own tests", () => {
  // django/tests/auth_tests/test_validators.py: user testclient / testclient@example.com.
  const user = { username: 'testclient', email: 'testclient@example.com' }
  assert.deepEqual(similar('testclient', user), ['This password is too similar to the username.'])
  assert.deepEqual(similar('example.com', user), ['This password is too similar to the email.'])
  // quick_ratio counts characters in any order, as Django does.
  assert.deepEqual(similar('tneilctset', user), ['This password is too similar to the username.'])
  assert.deepEqual(similar('TestClient2024', user), ['This password is too similar to the username.'])
  assert.deepEqual(similar('alicesmith99', { username: 'alicesmith' }), ['This password is too similar to the username.'])
  // Only one similarity message, for the first attribute that matches.
  assert.equal(similar('testclient@example.com', user).length, 1)
})

const sqlite = DIALECTS.find((dialect) => dialect.name === 'sqlite')
test('when someone signs up over HTTP with a passphrase containing "com" of their email, then the account is created', { skip: sqlite?.skip }, async (t) => {
  const { client } = await testApp(t, 'sqlite')
  const response = await client.send('POST', '/api/auth/sign-up', { username: 'kate', email: 'kate@example.com', password: 'Outcome-Purple-Dinosaur-42' })
  assert.equal(response.statusCode, 201, response.body)
})
