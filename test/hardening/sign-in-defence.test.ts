import assert from 'node:assert/strict'
import { test } from 'node:test'
import { REDIS_SKIP, testRedisPrefix } from '../helpers/redis.js'
import { Api, GOOD_PASSWORD, requestFrom } from './client.js'
import { startServer } from './server.js'

// Issue 12 §1, §2, §4 (and §3's IPv6 /64): the brute-force limits attacked over real sockets, on a real server
// process, once with the in-memory counts and once with the counts in Redis.

const ACCOUNT_LIMIT = 10
const ADDRESS_LIMIT = 20
const WRONG = 'wrong-password-1'

type Reply = Awaited<ReturnType<typeof requestFrom>>

/** How many replies had each status, e.g. { 401: 10, 429: 190 }. */
function tally(replies: Reply[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const reply of replies) counts[reply.status] = (counts[reply.status] ?? 0) + 1
  return counts
}

/** Every 429 is problem+json with a Retry-After of whole seconds within the window. */
function assertLimited(reply: Reply, windowSeconds = 600) {
  assert.equal(reply.status, 429, JSON.stringify(reply.json))
  assert.match(String(reply.headers['content-type']), /^application\/problem\+json/)
  const retryAfter = Number(reply.headers['retry-after'])
  assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= windowSeconds, `Retry-After: ${reply.headers['retry-after']}`)
}

/** Exactly `allowed` of `status` and the rest 429 (each with Retry-After). */
function assertBurst(replies: Reply[], status: number, allowed: number) {
  const counts = tally(replies)
  const expected: Record<number, number> = { 429: replies.length - allowed }
  if (allowed > 0) expected[status] = allowed
  assert.deepEqual(counts, expected, JSON.stringify(counts))
  for (const reply of replies) if (reply.status === 429) assertLimited(reply)
}

const STORES = [
  { name: 'memory', skip: false as string | false },
  { name: 'Redis', skip: REDIS_SKIP },
]

for (const store of STORES) {
  test(`sign-in defence on a running server (${store.name} store)`, { skip: store.skip }, async (t) => {
    const env: Record<string, string> = {
      SIGN_IN_MAX_FAILURES_PER_ACCOUNT: String(ACCOUNT_LIMIT),
      SIGN_IN_MAX_FAILURES_PER_ADDRESS: String(ADDRESS_LIMIT),
      SIGN_IN_FAILURE_WINDOW: '10m',
      // Requests from 127.0.0.1 name their client in X-Forwarded-For (the IPv6 test); other addresses are themselves.
      TRUST_PROXY: '127.0.0.1',
    }
    if (store.name === 'Redis') Object.assign(env, { REDIS_URL: process.env.TEST_REDIS_URL as string, REDIS_KEY_PREFIX: testRedisPrefix(t) })
    const server = await startServer(t, { env })
    const api = new Api(server.url)
    const signInUrl = `${server.url}/api/auth/sign-in`
    const signIn = (from: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
      requestFrom(from, signInUrl, 'POST', body, headers)

    // The owner signs up on the web page (device cookie) and signs in once from an API client (device_token).
    const webSignUp = await api.call('/api/auth/sign-up', {
      method: 'POST',
      headers: { 'x-portrait-web': '1' },
      json: { username: 'victim', email: 'victim@example.com', password: GOOD_PASSWORD },
    })
    assert.equal(webSignUp.status, 201, webSignUp.text)
    const deviceCookie = webSignUp.headers.getSetCookie().find((cookie) => cookie.startsWith('portrait_device=')) ?? ''
    const cookieHeader = deviceCookie.split(';')[0] as string
    const apiDevice = (await api.signIn('victim')) as unknown as { device_token: string }
    const attacker = (await api.signUp('attacker')) as unknown as { device_token: string }

    await t.test('when a client signs in, then it gets proof of it: an HttpOnly cookie for the web page, device_token for an API client', () => {
      assert.equal(webSignUp.json.device_token, undefined, 'the web page gets its proof as a cookie, not in the body')
      assert.match(deviceCookie, /^portrait_device=/, webSignUp.headers.getSetCookie().join('\n'))
      assert.match(deviceCookie, /HttpOnly/i)
      assert.match(deviceCookie, /SameSite=Strict/i)
      assert.match(deviceCookie, /Path=\/api\/auth\/sign-in/i)
      assert.match(apiDevice.device_token, /^\d+\.[\w-]+\.[\w-]+$/)
    })

    await t.test('when 200 wrong guesses for one account arrive at once from four addresses, then at most the limit are checked and the rest get 429', async () => {
      const from = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']
      const replies = await Promise.all(Array.from({ length: 200 }, (_, n) => signIn(from[n % 4] as string, { username: 'victim', password: WRONG })))
      assertBurst(replies, 401, ACCOUNT_LIMIT)
    })

    await t.test('when the account is locked, then the email opens no second count and a client without proof gets 429 even with the right password', async () => {
      assertLimited(await signIn('127.0.0.6', { email: 'VICTIM@example.com', password: WRONG }))
      assertLimited(await signIn('127.0.0.6', { username: 'victim', password: GOOD_PASSWORD }))
      // Proof for another account, or a forged one, does not count as proof for this one.
      assertLimited(await signIn('127.0.0.6', { username: 'victim', password: GOOD_PASSWORD, device_token: attacker.device_token }))
      const [id, nonce, mac] = String(apiDevice.device_token).split('.')
      assertLimited(await signIn('127.0.0.6', { username: 'victim', password: GOOD_PASSWORD, device_token: `${id}.${nonce}.${'A'.repeat(43)}` }))
      const otherNonce = `${id}.${'B'.repeat(22)}.${mac}`
      assertLimited(await signIn('127.0.0.6', { username: 'victim', password: GOOD_PASSWORD, device_token: otherNonce }))
    })

    await t.test('when the owner signs in from a device that signed in before, then the lockout does not keep them out', async () => {
      const viaApi = await signIn('127.0.0.7', { username: 'victim', password: GOOD_PASSWORD, device_token: apiDevice.device_token })
      assert.equal(viaApi.status, 200, JSON.stringify(viaApi.json))
      assert.equal(viaApi.json.device_token, apiDevice.device_token)
      const viaWeb = await signIn('127.0.0.7', { email: 'victim@example.com', password: GOOD_PASSWORD }, { 'x-portrait-web': '1', cookie: cookieHeader })
      assert.equal(viaWeb.status, 200, JSON.stringify(viaWeb.json))
      assert.equal(viaWeb.json.device_token, undefined)
      // The cookie is honoured only with the web page's header (as the refresh cookie is).
      assertLimited(await signIn('127.0.0.7', { username: 'victim', password: GOOD_PASSWORD }, { cookie: cookieHeader }))
    })

    await t.test('when a trusted device itself guesses wrong too often, then it is locked by its own limit and the other device is not', async () => {
      const replies = await Promise.all(
        Array.from({ length: 40 }, () => signIn('127.0.0.8', { username: 'victim', password: WRONG, device_token: apiDevice.device_token })),
      )
      assertBurst(replies, 401, ACCOUNT_LIMIT)
      assertLimited(await signIn('127.0.0.8', { username: 'victim', password: GOOD_PASSWORD, device_token: apiDevice.device_token }))
      const viaWeb = await signIn('127.0.0.8', { username: 'victim', password: GOOD_PASSWORD }, { 'x-portrait-web': '1', cookie: cookieHeader })
      assert.equal(viaWeb.status, 200, JSON.stringify(viaWeb.json))
    })

    await t.test('when the right password comes inside a run of guesses, then it signs in but does not reset the failures before it', async () => {
      await api.signUp('steady')
      for (let n = 0; n < ACCOUNT_LIMIT - 1; n++) assert.equal((await signIn('127.0.0.16', { username: 'steady', password: WRONG })).status, 401)
      assert.equal((await signIn('127.0.0.17', { username: 'steady', password: GOOD_PASSWORD })).status, 200)
      const replies = await Promise.all(Array.from({ length: 10 }, () => signIn('127.0.0.16', { username: 'steady', password: WRONG })))
      assertBurst(replies, 401, 1)
    })

    await t.test('when one address guesses 150 unknown accounts at once, then at most its limit are checked', async () => {
      const replies = await Promise.all(Array.from({ length: 150 }, (_, n) => signIn('127.0.0.9', { username: `nobody${n}`, password: WRONG })))
      assertBurst(replies, 401, ADDRESS_LIMIT)
    })

    await t.test('when guesses come from many IPv6 addresses of one /64, then they share one address count', async () => {
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, n) =>
          signIn('127.0.0.1', { username: `v6-${n}`, password: WRONG }, { 'x-forwarded-for': `2001:db8:7:8:${n.toString(16)}:${(n * 7).toString(16)}::${n + 1}` }),
        ),
      )
      assertBurst(replies, 401, ADDRESS_LIMIT)
      // The same /64 written another way is still that /64; the next /64 is someone else.
      assertLimited(await signIn('127.0.0.1', { username: 'v6-x', password: WRONG }, { 'x-forwarded-for': '2001:0db8:0007:0008:ffff:ffff:ffff:ffff' }))
      const neighbour = await signIn('127.0.0.1', { username: 'v6-y', password: WRONG }, { 'x-forwarded-for': '2001:db8:7:9::1' })
      assert.equal(neighbour.status, 401)
    })

    await t.test('when a signed-in attacker guesses current_password 40 times at once, then at most the account limit are checked, on change and delete alike', async () => {
      const owner = await api.signUp('changer')
      const url = `${server.url}/api/users/${owner.user.id}`
      const headers = { authorization: `Bearer ${owner.access}` }
      const changes = await Promise.all(
        Array.from({ length: 40 }, () => requestFrom('127.0.0.10', `${url}/password`, 'POST', { current_password: WRONG, new_password: 'another-Good-pass-7' }, headers)),
      )
      assertBurst(changes, 400, ACCOUNT_LIMIT)
      for (const reply of changes) if (reply.status === 400) assert.deepEqual(Object.keys(reply.json.errors), ['current_password'])
      // The same account count: deletion is locked too, and so is sign-in without proof, right password or not.
      const deletes = await Promise.all(Array.from({ length: 40 }, () => requestFrom('127.0.0.10', url, 'DELETE', { current_password: WRONG }, headers)))
      assertBurst(deletes, 400, 0)
      assertLimited(await requestFrom('127.0.0.10', `${url}/password`, 'POST', { current_password: GOOD_PASSWORD, new_password: 'another-Good-pass-7' }, headers))
      assertLimited(await signIn('127.0.0.11', { username: 'changer', password: GOOD_PASSWORD }))
      // The account is still there and still opens with its password from the device that signed up.
      const proof = (owner as unknown as { device_token: string }).device_token
      assert.equal((await signIn('127.0.0.11', { username: 'changer', password: GOOD_PASSWORD, device_token: proof })).status, 200)
    })

    await t.test('when other fields are invalid too, then a right and a wrong current_password get the same answer', async () => {
      const owner = await api.signUp('uniform')
      const headers = { authorization: `Bearer ${owner.access}` }
      const change = (current_password: string) =>
        requestFrom('127.0.0.12', `${server.url}/api/users/${owner.user.id}/password`, 'POST', { current_password, new_password: 'short' }, headers)
      const [right, wrong] = [await change(GOOD_PASSWORD), await change(WRONG)]
      assert.equal(right.status, 400)
      assert.deepEqual({ status: wrong.status, errors: wrong.json.errors }, { status: right.status, errors: right.json.errors })
      const remove = (current_password: string) =>
        requestFrom('127.0.0.12', `${server.url}/api/users/${owner.user.id}`, 'DELETE', { current_password }, { ...headers, 'if-match': '"stale"' })
      const [rightDelete, wrongDelete] = [await remove(GOOD_PASSWORD), await remove(WRONG)]
      assert.equal(rightDelete.status, 412)
      assert.deepEqual({ status: wrongDelete.status, type: wrongDelete.json.type }, { status: rightDelete.status, type: rightDelete.json.type })
    })

    await t.test('when 31 sign-ups come from one address at once, then 30 get an account and one gets 429', async () => {
      const replies = await Promise.all(
        Array.from({ length: 31 }, (_, n) =>
          requestFrom('127.0.0.13', `${server.url}/api/auth/sign-up`, 'POST', { username: `bulk${n}`, email: `bulk${n}@example.com`, password: GOOD_PASSWORD }),
        ),
      )
      assertBurst(replies, 201, 30)
      const other = await requestFrom('127.0.0.14', `${server.url}/api/auth/sign-up`, 'POST', { username: 'elsewhere', email: 'elsewhere@example.com', password: GOOD_PASSWORD })
      assert.equal(other.status, 201)
    })

    await t.test('when sign-in is posted as a form (as a cross-site page could), then 415 and no attempt is made', async () => {
      for (const [type, body] of [
        ['application/x-www-form-urlencoded', `username=attacker&password=${GOOD_PASSWORD}`],
        ['text/plain', JSON.stringify({ username: 'attacker', password: GOOD_PASSWORD })],
      ]) {
        const reply = await api.call('/api/auth/sign-in', { method: 'POST', body, headers: { 'content-type': type as string } })
        assert.equal(reply.status, 415, reply.text)
        assert.match(reply.headers.get('content-type') ?? '', /^application\/problem\+json/)
      }
      assert.equal((await signIn('127.0.0.15', { username: 'attacker', password: GOOD_PASSWORD })).status, 200)
    })

    await t.test('when the password changes, then every device proof issued before is void: a former holder of the password cannot keep a guess budget of its own', async () => {
      const owner = await api.signUp('rekeyed')
      // Someone who knew the password signs in 20 times and keeps the 20 proofs (before: 20 budgets of 10 guesses each).
      const proofs: string[] = []
      for (let n = 0; n < 20; n++) {
        const reply = await signIn('127.0.0.16', { username: 'rekeyed', password: GOOD_PASSWORD })
        assert.equal(reply.status, 200, JSON.stringify(reply.json))
        proofs.push(reply.json.device_token)
      }
      const newPassword = 'another-Good-pass-8'
      const change = await requestFrom('127.0.0.17', `${server.url}/api/users/${owner.user.id}/password`, 'POST', { current_password: GOOD_PASSWORD, new_password: newPassword }, { authorization: `Bearer ${owner.access}` })
      assert.equal(change.status, 204, JSON.stringify(change.json))
      // One wrong guess per old proof, at once: they share the account's count like any client without proof.
      const guesses = await Promise.all(proofs.map((device_token, n) => signIn(`127.0.1.${n + 1}`, { username: 'rekeyed', password: WRONG, device_token })))
      assertBurst(guesses, 401, ACCOUNT_LIMIT)
      // The owner's new password with an old proof: the account is locked, and the proof is no way around it.
      assertLimited(await signIn('127.0.0.18', { username: 'rekeyed', password: newPassword, device_token: proofs[0] }))
    })
  })
}
