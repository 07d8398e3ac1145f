import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DIALECTS, problemOf, testApp } from './helpers/app.js'
import { suite } from './helpers/suite.js'

for (const dialect of DIALECTS) {
  suite(`errors and protocol (${dialect.name})`, dialect.skip, () => {
    test('when a route does not exist, then 404 problem+json with a request id', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.get('/api/nope')
      const problem = problemOf(response, 404)
      assert.equal(problem.type, '/problems/route_not_found')
      assert.ok(response.headers['x-request-id'])
    })

    test('when the client sends a sane X-Request-Id, then it is echoed; a hostile one is replaced', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const given = await client.request({ method: 'GET', url: '/api/health', headers: { 'x-request-id': 'abc-123' } })
      assert.equal(given.headers['x-request-id'], 'abc-123')
      const hostile = await client.request({ method: 'GET', url: '/api/health', headers: { 'x-request-id': 'a\u0000b<script>' } })
      assert.notEqual(hostile.headers['x-request-id'], 'a\u0000b<script>')
      assert.match(String(hostile.headers['x-request-id']), /^[0-9a-f-]{36}$/)
    })

    test('when a JSON body is malformed, then 400 problem+json that says so, never a stack or a path', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const bodies = ['{', '{"username": }', '[1,2', 'nul', '{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {"x": 1}}}']
      for (const payload of bodies) {
        const response = await client.request({ method: 'POST', url: '/api/auth/sign-in', payload, headers: { 'content-type': 'application/json' } })
        const problem = problemOf(response, 400)
        assert.doesNotMatch(response.body, /at \w+ \(|node_modules|\/work\//, payload)
        assert.ok(problem.detail.length > 0)
      }
    })

    test('when the body is another JSON value than an object, then 400 names the problem', async (t) => {
      const { client } = await testApp(t, dialect.name)
      for (const payload of ['[]', '"text"', '42', 'null']) {
        const response = await client.request({ method: 'POST', url: '/api/auth/sign-up', payload, headers: { 'content-type': 'application/json' } })
        problemOf(response, 400)
      }
    })

    test('when the Content-Type is not one we read, then 415', async (t) => {
      const { client } = await testApp(t, dialect.name)
      // multipart/form-data is read only by the profile update routes, which take an avatar file.
      for (const type of ['text/plain', 'application/xml', 'application/json-patch+json', 'multipart/form-data; boundary=abc']) {
        const response = await client.request({ method: 'POST', url: '/api/auth/sign-in', payload: 'username=a', headers: { 'content-type': type } })
        problemOf(response, 415)
      }
    })

    test('when a body is over the JSON size limit, then 413', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const payload = JSON.stringify({ username: 'x'.repeat(100_000), password: 'y' })
      const response = await client.request({ method: 'POST', url: '/api/auth/sign-in', payload, headers: { 'content-type': 'application/json' } })
      problemOf(response, 413)
    })

    test('when fields have wrong types or are unknown, then every one is listed', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.send('POST', '/api/auth/sign-in', { username: 5, password: ['x'], extra: true })
      assert.deepEqual(Object.keys(problemOf(response, 400).errors ?? {}).sort(), ['extra', 'password', 'username'])
    })

    test('when strings carry control characters, then sign-up refuses them', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.send('POST', '/api/auth/sign-up', {
        username: 'ok_name',
        email: 'ok@example.com',
        password: 'correct-Horse-battery-9',
        first_name: 'bell\u0007',
        last_name: 'nul\u0000',
      })
      assert.deepEqual(Object.keys(problemOf(response, 400).errors ?? {}).sort(), ['first_name', 'last_name'])
    })

    test('when a trailing slash is added, then the route still answers', async (t) => {
      const { client } = await testApp(t, dialect.name)
      assert.equal((await client.get('/api/health/')).statusCode, 200)
    })

    test('when the health endpoint is asked, then it reports the database', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.get('/api/health')
      assert.equal(response.statusCode, 200)
      assert.deepEqual(response.json().checks.database, 'ok')
    })

    test('when the OpenAPI document is fetched, then it describes every endpoint from the route schemas', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const response = await client.get('/api/openapi.json')
      assert.equal(response.statusCode, 200)
      const document = response.json()
      assert.match(document.openapi, /^3\./)
      for (const path of ['/api/auth/sign-up', '/api/auth/sign-in', '/api/auth/refresh', '/api/auth/sign-out', '/api/users/me', '/api/users/{id}', '/api/users/{id}/password', '/api/users/', '/media/avatars/{name}', '/api/health']) {
        assert.ok(document.paths[path] ?? document.paths[path.replace(/\/$/, '')], path)
      }
      const user = document.paths['/api/users/me'].get.responses['200'].content['application/json'].schema
      assert.deepEqual(Object.keys(user.properties).sort(), ['avatar', 'date_joined', 'email', 'email_verified', 'first_name', 'id', 'is_active', 'is_staff', 'is_superuser', 'last_login', 'last_name', 'number_phone', 'username'])
      // OpenAPI 3.0 spells "string or null" as a nullable string, whatever the route schema's JSON Schema form.
      assert.deepEqual(user.properties.last_login, { type: 'string', format: 'date-time', nullable: true })
      assert.equal(user.properties.avatar.nullable, true)
      const docs = await client.get('/api/docs')
      assert.ok([200, 302].includes(docs.statusCode))
    })
  })
}
