import assert from 'node:assert/strict'
import { test } from 'node:test'
import { buildApp } from '../src/app.js'
import { ServiceKeys } from '../src/auth/service-keys.js'
import { SigningKeyStore } from '../src/auth/signing-keys.js'
import { createDb } from '../src/db/database.js'
import { migrateToLatest } from '../src/db/migrate.js'
import { DIALECTS, type DialectName, problemOf, testApp, testConfig } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { suite } from './helpers/suite.js'

// EdDSA (no JWT_SECRET, the default of `npm start`) and ES256, on both databases, through the real app.

const header = (token: string) => JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString())
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString()

async function keyApp(t: Parameters<typeof testApp>[0], dialect: DialectName, overrides: Parameters<typeof testApp>[2] = {}) {
  const built = await testApp(t, dialect, { jwtSecret: undefined, ...overrides })
  const db = createDb(built.config)
  deferCleanup(t, () => db.destroy())
  return { ...built, store: new SigningKeyStore(db), serviceKeys: new ServiceKeys(db) }
}

for (const dialect of DIALECTS) {
  suite(`signing keys on ${dialect.name}`, dialect.skip, () => {
    test('when no JWT_SECRET is set, then tokens are EdDSA under the one database key the JWKS publishes', async (t) => {
      const { client, store } = await keyApp(t, dialect.name)
      const session = await client.signUp()
      const head = header(session.access)
      assert.deepEqual(Object.keys(head).sort(), ['alg', 'kid', 'typ'])
      assert.equal(head.alg, 'EdDSA')
      assert.equal(head.typ, 'at+jwt')
      const jwks = await client.get('/.well-known/jwks.json')
      assert.equal(jwks.statusCode, 200)
      assert.equal(jwks.headers['cache-control'], 'public, max-age=300')
      assert.deepEqual(jwks.json().keys.map((key: { kid: string }) => key.kid), [head.kid])
      assert.doesNotMatch(jwks.body, /"d"|"k"/)
      assert.deepEqual((await store.list()).map((key) => [key.kid, key.alg, key.state]), [[head.kid, 'EdDSA', 'current']])
      assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
    })

    test('when JWT_ALGORITHM=ES256, then tokens are ES256 and verify; switching back to EdDSA rotates and keeps them valid', async (t) => {
      const { client, config } = await keyApp(t, dialect.name, { jwtAlgorithm: 'ES256' })
      const session = await client.signUp()
      assert.equal(header(session.access).alg, 'ES256')
      assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
      const key = (await client.get('/.well-known/jwks.json')).json().keys[0]
      assert.deepEqual([key.kty, key.crv, key.alg, typeof key.y], ['EC', 'P-256', 'ES256', 'string'])
      // A second instance on the same database configured for EdDSA: a new EdDSA key signs, the ES256 one verifies on.
      const other = await buildApp({ ...config, jwtAlgorithm: 'EdDSA' })
      deferCleanup(t, () => other.close())
      const me = await other.inject({ method: 'GET', url: '/api/users/me', headers: { authorization: `Bearer ${session.access}` } })
      assert.equal(me.statusCode, 200)
      const jwks = await other.inject({ method: 'GET', url: '/.well-known/jwks.json' })
      assert.deepEqual(jwks.json().keys.map((entry: { alg: string }) => entry.alg).sort(), ['ES256', 'EdDSA'])
    })

    // PostgreSQL only: SQLite instances are processes on one host, and in one process better-sqlite3's busy wait
    // would block the very event loop that holds the other connection's transaction.
    test('when instances start at once on an empty database, then they end with one signing key', { skip: dialect.name === 'sqlite' && 'in-process SQLite connections cannot wait for each other' }, async (t) => {
      const config = await testConfig(t, dialect.name, { jwtSecret: undefined })
      // The schema first (its own race is the migration lock's), so the three race for the first key alone.
      const db = createDb(config)
      await migrateToLatest(db.kysely)
      await db.destroy()
      const apps = await Promise.all([buildApp(config), buildApp(config), buildApp(config)])
      deferCleanup(t, () => Promise.all(apps.map((app) => app.close())))
      const kids = await Promise.all(apps.map(async (app) => (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys.map((key: { kid: string }) => key.kid)))
      assert.equal(kids[0].length, 1)
      assert.deepEqual(kids[1], kids[0])
      assert.deepEqual(kids[2], kids[0])
    })

    test('when keys rotate, then old tokens verify until retired, new ones carry the new kid, and a revoked key stops at once', async (t) => {
      const { app, client, store } = await keyApp(t, dialect.name)
      const before = await client.signUp()
      const oldKid = header(before.access).kid
      assert.equal((await client.get('/api/users/me', before.access)).statusCode, 200, 'in the verified cache from now on')
      const newKid = await store.rotate('EdDSA', 900)
      const after = await client.signUp()
      assert.equal(header(after.access).kid, newKid, 'the instance signs with the new key without a restart')
      assert.equal((await client.get('/api/users/me', before.access)).statusCode, 200, 'the old key still verifies')
      assert.equal((await client.get('/api/users/me', after.access)).statusCode, 200)
      const kids = () => client.get('/.well-known/jwks.json').then((reply) => reply.json().keys.map((key: { kid: string }) => key.kid).sort())
      assert.deepEqual(await kids(), [oldKid, newKid].sort())
      assert.deepEqual((await store.list()).map((key) => key.state).sort(), ['current', 'verifying'])

      await store.revoke(oldKid, 'EdDSA', 900)
      // The verified cache still holds the old token: the session query refuses its revoked kid anyway.
      problemOf(await client.get('/api/users/me', before.access), 401)
      assert.equal((await client.get('/api/users/me', after.access)).statusCode, 200)
      await new Promise((resolve) => setTimeout(resolve, 1100))
      assert.deepEqual(await kids(), [newKid], 'a revoked key leaves the JWKS')
      assert.deepEqual((await store.list()).find((key) => key.kid === oldKid)?.state, 'revoked')

      // Revoking the signing key itself rotates first: nobody is left without a key, and its tokens stop.
      const replaced = await store.revoke(newKid, 'EdDSA', 900)
      assert.ok(replaced.rotatedTo)
      problemOf(await client.get('/api/users/me', after.access), 401)
      const third = await client.signUp()
      assert.equal(header(third.access).kid, replaced.rotatedTo)
      assert.equal((await client.get('/api/users/me', third.access)).statusCode, 200)
      assert.ok(app)
    })

    test('when a superseded key passes its retirement time, then keys list says retired and it leaves the JWKS', async (t) => {
      const { client, store, config } = await keyApp(t, dialect.name)
      const before = await client.signUp()
      const oldKid = header(before.access).kid
      await store.rotate('EdDSA', config.accessTokenTtlSeconds)
      const retiring = (await store.list()).find((key) => key.kid === oldKid)
      assert.equal(retiring?.state, 'verifying')
      // retires_at is one access-token lifetime plus the clock skew after the rotation (15m30s here).
      const lifetime = Date.parse(retiring?.retiresAt as string) - Date.now()
      assert.ok(lifetime > 925_000 && lifetime <= 930_000, `retires in ${lifetime} ms`)
      // Standing in for 15 minutes passing: the same row as then, written now.
      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      await db.kysely.updateTable('signing_keys').set({ retires_at: new Date(Date.now() - 1000).toISOString() }).where('kid', '=', oldKid).execute()
      await new Promise((resolve) => setTimeout(resolve, 1100))
      const jwks = (await client.get('/.well-known/jwks.json')).json()
      assert.ok(!jwks.keys.some((key: { kid: string }) => key.kid === oldKid))
      assert.equal((await store.list()).find((key) => key.kid === oldKid)?.state, 'retired')
      problemOf(await client.get('/api/users/me', before.access), 401)
    })

    test('when the pool has one connection, then sign-ups and sign-ins still get tokens (the key is read through their transaction)', async (t) => {
      const { client } = await keyApp(t, dialect.name, { databasePoolSize: 1, databaseAcquireTimeoutMs: 1000 })
      const sessions = await Promise.all([client.signUp(), client.signUp(), client.signUp()])
      for (const session of sessions) assert.equal((await client.get('/api/users/me', session.access)).statusCode, 200)
    })

    test('when a service introspects tokens, then it learns whether each is live now (RFC 7662)', async (t) => {
      const { client, serviceKeys, config } = await keyApp(t, dialect.name, { jwtAudience: ['https://api.example.com'], jwtIssuer: 'https://id.example.com' })
      const secret = await serviceKeys.create('billing')
      assert.match(secret, /^psk_[A-Za-z0-9_-]{43}$/)
      const session = await client.signUp()
      const introspect = (payload: string, type: string, credential: string | null = secret) =>
        client.request({
          method: 'POST',
          url: '/api/auth/introspect',
          payload,
          headers: { 'content-type': type, ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
        })
      const formType = 'application/x-www-form-urlencoded'

      for (const credential of [null, 'psk_wrong', `psk_${'A'.repeat(43)}`, session.access]) {
        const refused = await introspect(form({ token: session.access }), formType, credential)
        problemOf(refused, 401)
        assert.match(String(refused.headers['www-authenticate']), /^Bearer/)
      }
      const live = await introspect(form({ token: session.access, token_type_hint: 'access_token' }), formType)
      assert.equal(live.statusCode, 200, live.body)
      assert.equal(live.headers['cache-control'], 'no-store')
      const claims = JSON.parse(Buffer.from(session.access.split('.')[1] as string, 'base64url').toString())
      assert.deepEqual(live.json(), {
        active: true,
        sub: String(session.user.id),
        sid: claims.sid,
        exp: claims.exp,
        iat: claims.iat,
        iss: 'https://id.example.com',
        aud: 'https://api.example.com',
        amr: ['pwd'],
      })
      const asJson = await introspect(JSON.stringify({ token: session.access }), 'application/json')
      assert.deepEqual(asJson.json(), live.json())
      for (const token of ['garbage', session.refresh, `${session.access}x`]) {
        assert.deepEqual((await introspect(form({ token }), formType)).json(), { active: false }, token)
      }
      problemOf(await introspect(form({}), formType), 400)

      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: session.refresh })).statusCode, 204)
      assert.deepEqual((await introspect(form({ token: session.access }), formType)).json(), { active: false }, 'a signed-out session is inactive at once')
      assert.equal(await serviceKeys.revoke('billing'), true)
      problemOf(await introspect(form({ token: session.access }), formType), 401)
      assert.deepEqual((await serviceKeys.list()).map((key) => [key.name, typeof key.revoked]), [['billing', 'string']])
      assert.ok(config)
    })
  })
}

test('when the OpenAPI document is read, then the JWKS and introspection routes are described with their statuses', async (t) => {
  const { app } = await testApp(t)
  await app.ready()
  const spec = app.swagger() as unknown as { paths: Record<string, Record<string, { operationId?: string; responses: Record<string, unknown> }>> }
  assert.equal(spec.paths['/.well-known/jwks.json']?.get?.operationId, 'getJwks')
  const introspect = spec.paths['/api/auth/introspect']?.post
  assert.equal(introspect?.operationId, 'introspectToken')
  assert.deepEqual(Object.keys(introspect?.responses ?? {}).sort(), ['200', '400', '401', '413', '415', '500', '503'])
})

test('when the signing variables are wrong, then the config error names the variable', async () => {
  const { loadConfig } = await import('../src/config.js')
  assert.throws(() => loadConfig({ JWT_ALGORITHM: 'HS256' }), /^Error: JWT_ALGORITHM="HS256" is invalid: expected EdDSA or ES256, or HS256 together with JWT_SECRET$/)
  assert.throws(() => loadConfig({ JWT_ALGORITHM: 'RS256' }), /JWT_ALGORITHM="RS256" is invalid/)
  assert.throws(() => loadConfig({ JWT_AUDIENCE: 'https://a.example, two words' }), /JWT_AUDIENCE=/)
  assert.throws(() => loadConfig({ JWT_ISSUER: 'has space' }), /JWT_ISSUER=/)
  const config = loadConfig({ JWT_AUDIENCE: 'https://a.example, https://b.example', JWT_ISSUER: 'https://id.example' })
  assert.deepEqual([config.jwtAlgorithm, config.jwtAudience, config.jwtIssuer], [undefined, ['https://a.example', 'https://b.example'], 'https://id.example'])
})
