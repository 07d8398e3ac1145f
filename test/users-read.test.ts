import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DIALECTS, problemOf, testApp, USER_FIELDS } from './helpers/app.js'
import { setFlags } from './helpers/db.js'
import { suite } from './helpers/suite.js'

for (const dialect of DIALECTS) {
  suite(`reading profiles (${dialect.name})`, dialect.skip, () => {
    test('when a user reads /me or their own id, then they get exactly the documented fields and an ETag', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp({ first_name: 'Ada', number_phone: '+4412' })
      for (const url of ['/api/users/me', '/api/users/me/', `/api/users/${me.user.id}`, `/api/users/${me.user.id}/`]) {
        const response = await client.get(url, me.access)
        assert.equal(response.statusCode, 200, url)
        assert.match(String(response.headers['content-type']), /^application\/json/)
        assert.match(String(response.headers.etag), /^"[^"]+"$/, url)
        const user = response.json()
        assert.deepEqual(Object.keys(user).sort(), USER_FIELDS, url)
        assert.equal(user.id, me.user.id)
        assert.equal(user.first_name, 'Ada')
        assert.equal(user.number_phone, '+4412')
        assert.equal(user.avatar, null)
        assert.match(user.date_joined, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
        assert.match(user.last_login, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
        assert.deepEqual([user.is_active, user.is_staff, user.is_superuser], [true, false, false])
        assert.doesNotMatch(response.body, /argon2|password/)
      }
    })

    test('when there is no valid token, then 401 before anything else', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      for (const url of ['/api/users/me', `/api/users/${me.user.id}`, '/api/users/999999', '/api/users/abc', '/api/users']) {
        problemOf(await client.get(url), 401)
        problemOf(await client.get(url, 'garbage'), 401)
      }
    })

    test('when a normal user reads someone else, then 403; an unknown or non-integer id is 404 first', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const other = await client.signUp()
      problemOf(await client.get(`/api/users/${other.user.id}`, me.access), 403)
      for (const id of ['424242', 'abc', '1e3', '-1', '99999999999999999999', '1.5', '0']) {
        problemOf(await client.get(`/api/users/${id}`, me.access), 404)
      }
    })

    test('when staff or a superuser reads any profile, then they see it with the same ETag the owner sees', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const staff = await client.signUp()
      const admin = await client.signUp()
      await setFlags(config, staff.user.id, { is_staff: true })
      await setFlags(config, admin.user.id, { is_superuser: true })
      const user = await client.signUp({ last_name: 'Lovelace' })
      const own = await client.get(`/api/users/${user.user.id}`, user.access)
      for (const reader of [staff, admin]) {
        const response = await client.get(`/api/users/${user.user.id}`, reader.access)
        assert.equal(response.statusCode, 200)
        assert.equal(response.body, own.body)
        assert.equal(response.headers.etag, own.headers.etag)
      }
      // Staff shows up as such in their own profile, read-only flags and all.
      assert.equal((await client.get('/api/users/me', staff.access)).json().is_staff, true)
    })

    test('when the flags of the reader change, then the next request sees it (no stale privileges)', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const reader = await client.signUp()
      const user = await client.signUp()
      await setFlags(config, reader.user.id, { is_staff: true })
      assert.equal((await client.get(`/api/users/${user.user.id}`, reader.access)).statusCode, 200)
      await setFlags(config, reader.user.id, { is_staff: false })
      problemOf(await client.get(`/api/users/${user.user.id}`, reader.access), 403)
      await setFlags(config, reader.user.id, { is_active: false })
      problemOf(await client.get('/api/users/me', reader.access), 401)
    })
  })
}
