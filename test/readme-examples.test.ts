import assert from 'node:assert/strict'
import { test } from 'node:test'
import { testApp } from './helpers/app.js'

// The README's example session, as the service answers it (key order included).
test("when the README's example session is run, then the answers have the keys in the order it shows and every call works", async (t) => {
  const { client } = await testApp(t)
  const up = await client.send('POST', '/api/auth/sign-up', { username: 'ada', email: 'ada@example.com', password: 'analytical-Engine-1843', first_name: 'Ada', last_name: 'Lovelace' })
  assert.equal(up.statusCode, 201)
  assert.deepEqual(Object.keys(up.json()), ['access', 'user', 'refresh', 'device_token'])
  assert.deepEqual(Object.keys(up.json().user), ['id', 'username', 'email', 'first_name', 'last_name', 'number_phone', 'avatar', 'date_joined', 'last_login', 'is_active', 'is_staff', 'is_superuser', 'email_verified'])
  assert.equal(up.json().user.last_name, 'Lovelace')
  const signIn = await client.send('POST', '/api/auth/sign-in', { username: 'ada', password: 'analytical-Engine-1843' })
  assert.deepEqual(Object.keys(signIn.json()), ['access', 'user', 'refresh', 'device_token'])
  const { access, refresh } = signIn.json()
  // PUT and PATCH /api/users/me, as /api/users/{id}.
  const patched = await client.send('PATCH', '/api/users/me', { first_name: 'Augusta Ada' }, access)
  assert.equal(patched.statusCode, 200, patched.body)
  assert.equal(patched.json().first_name, 'Augusta Ada')
  const put = await client.send('PUT', '/api/users/me', { number_phone: '0123456789' }, access)
  assert.equal(put.statusCode, 200, put.body)
  const rotated = await client.send('POST', '/api/auth/refresh', { refresh })
  assert.deepEqual(Object.keys(rotated.json()), ['access', 'refresh'])
  // Sign out with the refresh token the refresh call returned: 204, and that session is over.
  const out = await client.send('POST', '/api/auth/sign-out', { refresh: rotated.json().refresh })
  assert.equal(out.statusCode, 204)
  assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: rotated.json().refresh })).statusCode, 401)
})
