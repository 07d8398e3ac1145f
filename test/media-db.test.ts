import assert from 'node:assert/strict'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import type { Config } from '../src/config.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type TestClient, testApp } from './helpers/app.js'
import { image, multipart } from './helpers/images.js'
import { queryPostgres } from './helpers/postgres.js'
import { suite } from './helpers/suite.js'

/** Every row of the avatars table, read over a connection of the test's own. */
async function avatarRows(config: Config): Promise<{ name: string; content: Buffer }[]> {
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length), { readonly: true })
    try {
      return db.prepare('SELECT name, content FROM avatars ORDER BY name').all() as { name: string; content: Buffer }[]
    } finally {
      db.close()
    }
  }
  return queryPostgres('SELECT name, content FROM avatars ORDER BY name', [], { url: config.databaseUrl, schema: config.databaseSchema })
}

async function upload(client: TestClient, userId: number, access: string, fields: Record<string, string> = {}) {
  const { payload, headers } = multipart([
    ...Object.entries(fields).map(([name, value]) => ({ name, value })),
    { name: 'avatar', filename: 'me.png', content: await image('png'), contentType: 'image/png' },
  ])
  return client.send('PATCH', `/api/users/${userId}`, payload, access, headers)
}

const nameOf = (url: string) => url.split('/').pop() as string

for (const dialect of DIALECTS) {
  suite(`avatars in the database (${dialect.name})`, dialect.skip, () => {
    test('when an avatar is uploaded, then its bytes are a row of avatars, served with the fs headers, and nothing is on disk', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { mediaStorage: 'db' })
      const { access, user } = await client.signUp()
      const response = await upload(client, user.id, access)
      assert.equal(response.statusCode, 200, response.body)
      const avatar = response.json().avatar as string
      const rows = await avatarRows(config)
      assert.deepEqual(rows.map((row) => row.name), [nameOf(avatar)])
      const served = await client.get(avatar)
      assert.equal(served.statusCode, 200)
      assert.equal(served.headers['content-type'], 'image/webp')
      assert.equal(served.headers['cache-control'], 'public, max-age=31536000, immutable')
      assert.equal(served.headers['x-content-type-options'], 'nosniff')
      assert.deepEqual(served.rawPayload, rows[0]?.content)
      const avatarsDir = join(config.mediaRoot, 'avatars')
      assert.ok(!existsSync(avatarsDir) || readdirSync(avatarsDir).length === 0)
    })

    test('when an avatar is replaced, removed or its account deleted, then the old row goes in the same commit', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { mediaStorage: 'db' })
      const { access, user } = await client.signUp()
      const first = (await upload(client, user.id, access)).json().avatar as string
      const second = (await upload(client, user.id, access)).json().avatar as string
      assert.notEqual(first, second)
      assert.deepEqual((await avatarRows(config)).map((row) => row.name), [nameOf(second)])
      problemOf(await client.get(first), 404)

      const removed = await client.send('PATCH', `/api/users/${user.id}`, { avatar: null }, access)
      assert.equal(removed.json().avatar, null)
      assert.deepEqual(await avatarRows(config), [])
      problemOf(await client.get(second), 404)

      const third = (await upload(client, user.id, access)).json().avatar as string
      const deleted = await client.send('DELETE', `/api/users/${user.id}`, { current_password: GOOD_PASSWORD }, access)
      assert.equal(deleted.statusCode, 204)
      assert.deepEqual(await avatarRows(config), [])
      problemOf(await client.get(third), 404)
    })

    test('when uploads race for one username, then the losers leave no avatar row behind', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { mediaStorage: 'db' })
      const sessions = await Promise.all(Array.from({ length: 6 }, () => client.signUp()))
      // The losers fail on the unique index inside the transaction that also inserted their image.
      const responses = await Promise.all(sessions.map(({ access, user }) => upload(client, user.id, access, { username: 'wanted' })))
      assert.equal(responses.filter((response) => response.statusCode === 200).length, 1)
      for (const response of responses.filter((r) => r.statusCode !== 200)) {
        assert.ok(problemOf(response, 400).errors?.username)
      }
      const winner = responses.find((response) => response.statusCode === 200)?.json()
      assert.deepEqual((await avatarRows(config)).map((row) => row.name), [nameOf(winner.avatar)])
    })
  })
}
