import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GOOD_PASSWORD, problemOf, testApp, uniqueName } from './helpers/app.js'

// Behind a TLS-terminating proxy every request reaches us as plain http: PUBLIC_URL, not the request,
// says whether the refresh cookie must be Secure.

const WEB = { 'x-portrait-web': '1' }

function setCookie(headers: Record<string, unknown>): string {
  const value = headers['set-cookie']
  return Array.isArray(value) ? value.join('\n') : String(value)
}

test('when PUBLIC_URL is https, then the refresh cookie is Secure, __Secure- prefixed, read under that name only, and cleared the same way', async (t) => {
  const { client } = await testApp(t, 'sqlite', { publicUrl: 'https://id.example.com' })
  const username = uniqueName('tls')
  await client.signUp({ username })
  // Plain http, as from a proxy that terminated TLS.
  const signIn = await client.send('POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD }, undefined, WEB)
  assert.equal(signIn.statusCode, 200, signIn.body)
  const cookie = setCookie(signIn.headers)
  assert.match(cookie, /^__Secure-portrait_refresh=[^;]+;/)
  for (const attribute of [/; Secure/, /; HttpOnly/, /; SameSite=Strict/, /; Path=\/api\/auth/]) assert.match(cookie, attribute)
  const value = (cookie.split(';')[0] as string).split('=')[1] as string

  // The unprefixed name (which a plain-http response could have planted) is not read.
  const unprefixed = await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: `portrait_refresh=${value}`, ...WEB } })
  assert.deepEqual([unprefixed.statusCode, unprefixed.body], [204, ''], 'no session: as with no cookie at all')
  const refreshed = await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: `__Secure-portrait_refresh=${value}`, ...WEB } })
  assert.equal(refreshed.statusCode, 200, refreshed.body)
  const next = setCookie(refreshed.headers)
  assert.match(next, /^__Secure-portrait_refresh=[^;]+;.*; Secure/)

  const signOut = await client.request({ method: 'POST', url: '/api/auth/sign-out', headers: { cookie: next.split(';')[0] as string, ...WEB } })
  assert.equal(signOut.statusCode, 204)
  // Browsers drop a __Secure- cookie only when the clearing one is Secure too.
  assert.match(setCookie(signOut.headers), /^__Secure-portrait_refresh=;.*Expires=Thu, 01 Jan 1970.*; Secure/)
})

test('when PUBLIC_URL is http or unset, then the cookie keeps its plain name and is Secure only on https requests', async (t) => {
  for (const publicUrl of [undefined, 'http://127.0.0.1:8000']) {
    const { client } = await testApp(t, 'sqlite', { publicUrl })
    const username = uniqueName('plain')
    await client.signUp({ username })
    const signIn = await client.send('POST', '/api/auth/sign-in', { username, password: GOOD_PASSWORD }, undefined, WEB)
    const cookie = setCookie(signIn.headers)
    assert.match(cookie, /^portrait_refresh=/, String(publicUrl))
    assert.doesNotMatch(cookie, /Secure/, String(publicUrl))
  }
})

test('when the web page asks for a session without a cookie, then 204 (nobody signed in); an API client without a token still gets 401', async (t) => {
  const { client } = await testApp(t)
  const web = await client.request({ method: 'POST', url: '/api/auth/refresh', headers: WEB })
  assert.deepEqual([web.statusCode, web.body, web.headers['set-cookie']], [204, '', undefined])
  problemOf(await client.request({ method: 'POST', url: '/api/auth/refresh', payload: {} }), 401)
  // A cookie that is no longer valid is still an error, and is cleared.
  const stale = await client.request({ method: 'POST', url: '/api/auth/refresh', headers: { cookie: 'portrait_refresh=spent', ...WEB } })
  problemOf(stale, 401)
  assert.match(setCookie(stale.headers), /^portrait_refresh=;/)
})
