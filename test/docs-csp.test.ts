import assert from 'node:assert/strict'
import { test } from 'node:test'
import { testApp } from './helpers/app.js'

// The browser test (test/browser/docs-page.test.ts) shows Swagger UI working under this policy;
// this one holds the policy itself, and runs without Chromium.

test('when /api/docs is served, then it and its assets carry a strict CSP and load only same-origin scripts and styles', async (t) => {
  const { client } = await testApp(t)
  const page = await client.get('/api/docs')
  assert.equal(page.statusCode, 200)
  const html = page.body
  const sources = [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)="([^"]+)"/g)].map((match) => match[1] as string)
  assert.ok(sources.some((source) => source.endsWith('swagger-ui-bundle.js')), html)
  for (const source of sources) assert.ok(!/^[a-z]+:|^\/\//i.test(source), `${source} is not same-origin`)
  assert.doesNotMatch(html, /<script>|<script [^>]*>[^<\s]|<style|\son[a-z]+=/i, 'no inline script, style or handler')

  for (const path of ['/api/docs', '/api/docs/', '/api/docs/static/swagger-ui-bundle.js', '/api/docs/static/swagger-initializer.js', '/api/docs/json']) {
    const reply = await client.get(path)
    assert.equal(reply.statusCode, 200, path)
    const csp = String(reply.headers['content-security-policy'] ?? '')
    const directives = new Map(csp.split(';').map((part) => part.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...values]) => [name, values]))
    assert.deepEqual(directives.get('default-src'), ["'none'"], `${path}: ${csp}`)
    assert.deepEqual(directives.get('script-src'), ["'self'"], path)
    assert.deepEqual(directives.get('frame-ancestors'), ["'none'"], path)
    assert.deepEqual(directives.get('base-uri'), ["'none'"], path)
    assert.deepEqual(directives.get('connect-src'), ["'self'"], path)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/, path)
  }
})

test('when /api/docs loads, then it shows Portrait and reads /api/openapi.json', async (t) => {
  const { client } = await testApp(t)
  const initializer = (await client.get('/api/docs/static/swagger-initializer.js')).body
  assert.match(initializer, /"url":\s*"\/api\/openapi\.json"/)
  // Portrait's own mark replaces the top bar's logo.
  assert.match(initializer, /data:image\/svg\+xml;base64,/)
  assert.match((await client.get('/api/docs')).body, /<title>Portrait API<\/title>/)
  const info = (await client.get('/api/openapi.json')).json().info
  assert.equal(info.title, 'Portrait')
  assert.match(info.description, /Authorize/)
  assert.ok(info.license?.name)
})

