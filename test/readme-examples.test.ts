import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
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

// The newcomer's way to a reset link without SMTP (README, "Resetting a forgotten password"): the README's own
// command line, run on the newest .eml the server wrote, must print a link whose token resets the password.
test("when the README's outbox recipe reads the newest .eml, then it prints a reset link that works", async (t) => {
  const { client, config } = await testApp(t)
  const email = 'ada@example.com'
  assert.equal((await client.send('POST', '/api/auth/sign-up', { username: 'ada', email, password: 'analytical-Engine-1843' })).statusCode, 201)
  assert.equal((await client.send('POST', '/api/auth/password-reset', { email })).statusCode, 202)
  const outbox = join(config.dataDir, 'outbox')
  const newest = async () => {
    for (let tries = 0; tries < 100; tries++) {
      const files = existsSync(outbox) ? readdirSync(outbox).filter((name) => name.endsWith('.eml')) : []
      const reset = files.map((name) => join(outbox, name)).filter((file) => readFileSync(file, 'utf8').includes('reset your password'))
      if (reset.length > 0) return reset[0] as string
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error('no reset mail in the outbox')
  }
  const file = await newest()
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  const recipe = /^node -e "(.*)" "\$\(ls -t data\/outbox\/\*\.eml \| head -1\)"$/m.exec(readme)
  assert.ok(recipe, 'the README shows the node -e line')
  // Inside double quotes the shell drops a backslash only before $, `, " and another backslash.
  const link = execFileSync(process.execPath, ['-e', (recipe[1] as string).replace(/\\([$`"\\])/g, '$1'), file], { encoding: 'utf8' }).trim()
  const token = new URL(link).hash.replace(/^#token=/, '')
  const confirmed = await client.send('POST', '/api/auth/password-reset/confirm', { token, new_password: 'a-New-long-passphrase-7' })
  assert.equal(confirmed.statusCode, 204, link)
})
