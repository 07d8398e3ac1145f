import assert from 'node:assert/strict'
import { test } from 'node:test'
import { bearer, DIALECTS, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { query, setFlags } from './helpers/db.js'
import { REDIS_SKIP, testRedisPrefix } from './helpers/redis.js'
import { suite } from './helpers/suite.js'

// Issue 18: a person sees their own sessions (device, masked address, last use) and ends any of them, and reads
// their security activity; staff read anyone's activity. Everything over HTTP, on both dialects.

const FIREFOX_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:131.0) Gecko/20100101 Firefox/131.0'
const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'

interface SessionView {
  id: string
  current: boolean
  device: string
  address: string | null
  created_at: string
  last_used_at: string | null
  amr: string[]
}
interface Entry {
  id: number
  type: string
  at: string
  address: string | null
  device: string
  details: Record<string, unknown>
}

async function signIn(client: TestClient, username: string, options: { userAgent?: string; password?: string; deviceToken?: string; address?: string } = {}) {
  return client.request({
    method: 'POST',
    url: '/api/auth/sign-in',
    payload: { username, password: options.password ?? GOOD_PASSWORD, ...(options.deviceToken ? { device_token: options.deviceToken } : {}) },
    headers: options.userAgent ? { 'user-agent': options.userAgent } : {},
    ...(options.address ? { remoteAddress: options.address } : {}),
  })
}

async function sessionsOf(client: TestClient, access: string): Promise<SessionView[]> {
  const response = await client.get('/api/users/me/sessions', access)
  assert.equal(response.statusCode, 200, response.body)
  return response.json().results
}

async function activityOf(client: TestClient, access: string, url = '/api/users/me/activity?limit=100'): Promise<Entry[]> {
  const response = await client.get(url, access)
  assert.equal(response.statusCode, 200, response.body)
  return response.json().results
}

/** Waits until the user's activity satisfies `done` (a failed sign-in is recorded just after its answer). */
async function eventually(client: TestClient, access: string, done: (entries: Entry[]) => boolean): Promise<Entry[]> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const entries = await activityOf(client, access)
    if (done(entries)) return entries
    if (Date.now() > deadline) throw new Error(`activity never matched: ${JSON.stringify(entries.map((entry) => entry.type))}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const types = (entries: Entry[]) => entries.map((entry) => entry.type)

for (const dialect of DIALECTS) {
  suite(`sessions and security activity (${dialect.name})`, dialect.skip, () => {
    test('when a user is signed in on two devices, then the list labels both, masks the addresses and flags the current one', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const mac = (await signIn(client, owner.user.username, { userAgent: FIREFOX_MAC, address: '203.0.113.77' })).json() as Session
      const windows = (await signIn(client, owner.user.username, { userAgent: CHROME_WINDOWS, address: '2001:db8:1:2:3:4:5:6' })).json() as Session

      const sessions = await sessionsOf(client, windows.access)
      assert.equal(sessions.length, 3)
      const [newest, middle, oldest] = sessions as [SessionView, SessionView, SessionView]
      assert.deepEqual(
        sessions.map((session) => [session.device, session.address, session.current]),
        [
          ['Chrome 130 on Windows', '2001:db8:1:2::/64', true],
          ['Firefox 131 on macOS', '203.0.113.0/24', false],
          ['Unknown device', '127.0.0.0/24', false],
        ],
      )
      assert.ok(newest.created_at >= middle.created_at && middle.created_at >= oldest.created_at, 'newest first')
      for (const session of sessions) {
        assert.deepEqual(session.amr, ['pwd'])
        assert.equal(session.last_used_at, session.created_at, 'last used at sign-in until a refresh')
        assert.match(session.id, /^[A-Za-z0-9_-]{22}$/)
        // The listing never shows the refresh token's first half (the real session id).
        for (const token of [owner.refresh, mac.refresh, windows.refresh]) assert.ok(!token.startsWith(session.id))
      }
      assert.equal((await sessionsOf(client, mac.access)).find((session) => session.current)?.device, 'Firefox 131 on macOS')
    })

    test('when a session is refreshed, then its last use moves and no other session changes; GET /me changes nothing', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const other = (await signIn(client, owner.user.username)).json() as Session
      const before = await sessionsOf(client, owner.access)
      assert.equal((await client.get('/api/users/me', other.access)).statusCode, 200)
      assert.deepEqual(await sessionsOf(client, owner.access), before, 'an authenticated request writes nothing')
      await new Promise((resolve) => setTimeout(resolve, 5))
      const refreshed = await client.send('POST', '/api/auth/refresh', { refresh: other.refresh })
      assert.equal(refreshed.statusCode, 200)
      const after = await sessionsOf(client, owner.access)
      const otherBefore = before.find((session) => !session.current) as SessionView
      const otherAfter = after.find((session) => session.id === otherBefore.id) as SessionView
      assert.ok((otherAfter.last_used_at as string) > (otherBefore.last_used_at as string))
      assert.deepEqual(
        after.find((session) => session.current),
        before.find((session) => session.current),
      )
    })

    test('when a user ends another of their sessions, then its tokens stop at once and the end is recorded', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const lost = (await signIn(client, owner.user.username, { userAgent: FIREFOX_MAC })).json() as Session
      const target = (await sessionsOf(client, owner.access)).find((session) => !session.current) as SessionView

      const ended = await client.send('DELETE', `/api/users/me/sessions/${target.id}`, undefined, owner.access)
      assert.equal(ended.statusCode, 204)
      problemOf(await client.get('/api/users/me', lost.access), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: lost.refresh }), 401)
      assert.deepEqual(
        (await sessionsOf(client, owner.access)).map((session) => session.current),
        [true],
      )
      problemOf(await client.send('DELETE', `/api/users/me/sessions/${target.id}`, undefined, owner.access), 404)
      const [revoked] = await activityOf(client, owner.access)
      assert.equal(revoked?.type, 'session_revoked')
      assert.deepEqual(revoked?.details, { device: 'Firefox 131 on macOS' })
    })

    test("when a user names another user's session, an unknown id or the real session id, then it is 404 and nothing ends", async (t) => {
      const { client } = await testApp(t, dialect.name)
      const alice = await client.signUp()
      const bob = await client.signUp()
      const [bobs] = await sessionsOf(client, bob.access)
      const realId = bob.refresh.split('.')[0] as string
      for (const id of [bobs?.id as string, 'A'.repeat(22), realId]) {
        const response = problemOf(await client.send('DELETE', `/api/users/me/sessions/${id}`, undefined, alice.access), 404)
        assert.equal(response.type, '/problems/not_found')
      }
      problemOf(await client.send('DELETE', `/api/users/me/sessions/${realId}`, undefined, bob.access), 404)
      assert.equal((await client.get('/api/users/me', bob.access)).statusCode, 200)
      problemOf(await client.send('DELETE', `/api/users/me/sessions/${bobs?.id}`, undefined), 401)
      problemOf(await client.get('/api/users/me/sessions'), 401)
    })

    test('when a user signs in, fails, signs out and changes password and email, then each is recorded newest first', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const first = await signIn(client, owner.user.username, { userAgent: FIREFOX_MAC, address: '198.51.100.9' })
      const { device_token: deviceToken } = first.json() as { device_token: string }
      const again = (await signIn(client, owner.user.username, { userAgent: FIREFOX_MAC, deviceToken })).json() as Session
      await signIn(client, owner.user.username, { password: 'wrong-password-1', address: '198.51.100.10' })
      await eventually(client, owner.access, (entries) => entries.some((entry) => entry.type === 'sign_in_failed'))

      assert.equal((await client.send('POST', '/api/auth/sign-out', { refresh: again.refresh })).statusCode, 204)
      const viaBearer = (await signIn(client, owner.user.username)).json() as Session
      assert.equal((await client.send('POST', '/api/auth/sign-out', {}, viaBearer.access)).statusCode, 204)
      const changed = await client.send(
        'POST',
        `/api/users/${owner.user.id}/password`,
        { current_password: GOOD_PASSWORD, new_password: 'another-Horse-battery-7' },
        owner.access,
      )
      assert.equal(changed.statusCode, 204)
      assert.equal((await client.send('PATCH', '/api/users/me', { email: `new-${owner.user.email}` }, owner.access)).statusCode, 200)
      assert.equal((await client.send('PATCH', '/api/users/me', { first_name: 'Only a name' }, owner.access)).statusCode, 200)

      const entries = await activityOf(client, owner.access)
      assert.deepEqual(types(entries), ['email_changed', 'password_changed', 'sign_out', 'sign_in', 'sign_out', 'sign_in_failed', 'sign_in', 'sign_in'])
      const ids = entries.map((entry) => entry.id)
      assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first, by id')
      const byType = (type: string) => entries.filter((entry) => entry.type === type)
      const [bearerSignIn, provenSignIn, firstSignIn] = byType('sign_in') as [Entry, Entry, Entry]
      assert.deepEqual(firstSignIn.details, { amr: 'pwd', new_device: true }, 'no device proof: a new device')
      assert.deepEqual(provenSignIn.details, { amr: 'pwd' }, 'with the proof of the first sign-in: a known device')
      assert.deepEqual(bearerSignIn.details, { amr: 'pwd', new_device: true })
      assert.equal(firstSignIn.device, 'Firefox 131 on macOS')
      assert.equal(firstSignIn.address, '198.51.100.0/24')
      assert.equal(byType('sign_in_failed')[0]?.address, '198.51.100.0/24')
      assert.deepEqual(byType('email_changed')[0]?.details, {}, 'no email address in the entry')
      for (const entry of entries) assert.ok(!JSON.stringify(entry).includes(owner.user.email))
    })

    test('when a superuser changes the email and the user signs out everywhere, then the entries say so', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const root = await client.signUp()
      await setFlags(config, root.user.id, { is_superuser: true, is_staff: true })
      assert.equal((await client.send('PATCH', `/api/users/${owner.user.id}`, { email: `moved-${owner.user.email}` }, root.access)).statusCode, 200)
      const [changed] = await activityOf(client, owner.access)
      assert.deepEqual([changed?.type, changed?.details], ['email_changed', { by: root.user.id }])
      assert.equal((await client.send('POST', '/api/auth/sign-out', { all: true }, owner.access)).statusCode, 204)
      const fresh = (await signIn(client, owner.user.username)).json() as Session
      assert.deepEqual(types(await activityOf(client, fresh.access)).slice(0, 3), ['sign_in', 'sign_out_all', 'email_changed'])
    })

    test('when an account is signed in to from a device never seen before, then a notice is mailed in the same transaction; a known device gets none', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const notices = async () =>
        (await query<{ to_address: string; subject: string }>(config, 'SELECT to_address, subject FROM mail_outbox ORDER BY id')).filter(
          (mail) => mail.subject === 'Portrait: a new sign-in to your account',
        )
      const first = await signIn(client, owner.user.username, { userAgent: FIREFOX_MAC, address: '203.0.113.77' })
      assert.equal(first.statusCode, 200)
      const sent = await notices()
      assert.equal(sent.length, 1)
      assert.equal(sent[0]?.to_address, owner.user.email)
      const { device_token: deviceToken } = first.json() as { device_token: string }
      assert.equal((await signIn(client, owner.user.username, { deviceToken })).statusCode, 200)
      assert.equal((await signIn(client, owner.user.username, { password: 'wrong-password-1' })).statusCode, 401)
      await eventually(client, owner.access, (entries) => entries.some((entry) => entry.type === 'sign_in_failed'))
      assert.equal((await notices()).length, 1, 'a known device and a wrong password mail nothing')
    })

    test('when a client that keeps no device proof signs in again from the same address and browser, then it is no new device; another browser is', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const notices = async () => (await query<{ subject: string }>(config, 'SELECT subject FROM mail_outbox ORDER BY id')).filter((mail) => mail.subject.includes('new sign-in'))
      const script = { userAgent: 'backup-script/1.0', address: '203.0.113.8' }
      for (let i = 0; i < 3; i++) assert.equal((await signIn(client, owner.user.username, script)).statusCode, 200)
      assert.equal((await notices()).length, 1, 'one notice, for the first of three sign-ins')
      assert.equal((await signIn(client, owner.user.username, { ...script, address: '203.0.113.9' })).statusCode, 200)
      assert.equal((await signIn(client, owner.user.username, { ...script, userAgent: FIREFOX_MAC })).statusCode, 200)
      assert.equal((await notices()).length, 3, 'a new address and a new browser each get one')
      const signIns = (await activityOf(client, owner.access)).filter((entry) => entry.type === 'sign_in')
      assert.deepEqual(
        signIns.map((entry) => entry.details.new_device ?? false),
        [true, true, false, false, true],
      )
    })

    test('when a rotated-out refresh token comes back after the grace, then the session it ends is recorded as revoked', async (t) => {
      const { client } = await testApp(t, dialect.name, { refreshReuseGraceSeconds: 0 })
      const owner = await client.signUp()
      const stolen = (await signIn(client, owner.user.username)).json() as Session
      assert.equal((await client.send('POST', '/api/auth/refresh', { refresh: stolen.refresh })).statusCode, 200)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: stolen.refresh }), 401)
      const [revoked] = await activityOf(client, owner.access)
      assert.deepEqual([revoked?.type, revoked?.details], ['session_revoked', { reason: 'refresh_token_reused' }])
      assert.equal((await sessionsOf(client, owner.access)).length, 1)
    })

    test('when a wrong password is sent for an existing login, then it is recorded there and the answer equals an unknown login\'s', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const strip = (body: string) => ({ ...JSON.parse(body), request_id: undefined })
      const wrong = await signIn(client, owner.user.username, { password: 'wrong-password-1' })
      const unknown = await signIn(client, `${owner.user.username}-nobody`, { password: 'wrong-password-1' })
      assert.equal(wrong.statusCode, 401)
      assert.equal(unknown.statusCode, wrong.statusCode)
      assert.deepEqual(strip(unknown.body), strip(wrong.body))
      assert.deepEqual(Object.keys(unknown.headers).sort(), Object.keys(wrong.headers).sort())
      const entries = await eventually(client, owner.access, (found) => found.some((entry) => entry.type === 'sign_in_failed'))
      assert.deepEqual(types(entries), ['sign_in_failed'])
      await new Promise((resolve) => setTimeout(resolve, 50))
      const rows = await query<{ n: number }>(config, 'SELECT COUNT(*) AS n FROM security_activity')
      assert.equal(Number(rows[0]?.n), 1, 'the unknown login recorded nothing anywhere')
    })

    test('when an account is locked and a flood keeps trying, then the lockout is recorded once', async (t) => {
      const { client, config } = await testApp(t, dialect.name, {
        signInLimits: { maxFailuresPerAccount: 2, maxFailuresPerAddress: 1000, windowSeconds: 900 },
      })
      const owner = await client.signUp()
      for (let n = 0; n < 2; n++) assert.equal((await signIn(client, owner.user.username, { password: 'wrong-password-1' })).statusCode, 401)
      const refused = await Promise.all(Array.from({ length: 20 }, () => signIn(client, owner.user.username, { password: 'wrong-password-1' })))
      assert.ok(refused.every((response) => response.statusCode === 429))
      assert.equal((await signIn(client, owner.user.username)).statusCode, 429)
      const entries = await eventually(client, owner.access, (found) => found.filter((entry) => entry.type === 'sign_in_failed').length === 2)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const locked = (await activityOf(client, owner.access)).filter((entry) => entry.type === 'account_locked')
      assert.equal(locked.length, 1, JSON.stringify(types(entries)))
      // A refusal for an unknown login locks no account and records nothing.
      for (let n = 0; n < 3; n++) await signIn(client, 'nobody-at-all', { password: 'wrong-password-1' })
      const rows = await query<{ n: number }>(config, "SELECT COUNT(*) AS n FROM security_activity WHERE type = 'account_locked'")
      assert.equal(Number(rows[0]?.n), 1)
    })

    test("when only the address's limit refuses, then no account is recorded as locked", async (t) => {
      const { client, config } = await testApp(t, dialect.name, {
        signInLimits: { maxFailuresPerAccount: 100, maxFailuresPerAddress: 2, windowSeconds: 900 },
      })
      const [first, second] = [await client.signUp(), await client.signUp()]
      for (const user of [first, first]) assert.equal((await signIn(client, user.user.username, { password: 'wrong-password-1' })).statusCode, 401)
      assert.equal((await signIn(client, second.user.username, { password: 'wrong-password-1' })).statusCode, 429)
      await eventually(client, first.access, (found) => found.length === 2)
      await new Promise((resolve) => setTimeout(resolve, 50))
      const rows = await query<{ n: number }>(config, "SELECT COUNT(*) AS n FROM security_activity WHERE type = 'account_locked'")
      assert.equal(Number(rows[0]?.n), 0)
    })

    test('when two instances share Redis counts and one database, then a lockout both refuse is recorded once', { skip: REDIS_SKIP }, async (t) => {
      const limits = { maxFailuresPerAccount: 2, maxFailuresPerAddress: 1000, windowSeconds: 900 }
      const shared = { redisUrl: process.env.TEST_REDIS_URL, redisKeyPrefix: testRedisPrefix(t), signInLimits: limits }
      const a = await testApp(t, dialect.name, shared)
      const b = await testApp(t, dialect.name, { ...shared, databaseUrl: a.config.databaseUrl, databaseSchema: a.config.databaseSchema })
      const owner = await a.client.signUp()
      for (let n = 0; n < 2; n++) assert.equal((await signIn(a.client, owner.user.username, { password: 'wrong-password-1' })).statusCode, 401)
      for (const client of [a.client, b.client, a.client, b.client]) {
        assert.equal((await signIn(client, owner.user.username, { password: 'wrong-password-1' })).statusCode, 429)
      }
      await eventually(a.client, owner.access, (found) => found.some((entry) => entry.type === 'account_locked'))
      await new Promise((resolve) => setTimeout(resolve, 50))
      const locked = (await activityOf(b.client, owner.access)).filter((entry) => entry.type === 'account_locked')
      assert.equal(locked.length, 1)
    })

    test('when there are more entries than a page, then next pages through all of them, older each time', async (t) => {
      const { client } = await testApp(t, dialect.name, { publicUrl: 'https://accounts.example.com' })
      const owner = await client.signUp()
      for (let n = 0; n < 5; n++) await signIn(client, owner.user.username)
      const seen: number[] = []
      let url: string | null = '/api/users/me/activity?limit=2'
      let pages = 0
      while (url) {
        const response = await client.get(url.replace('https://accounts.example.com', ''), owner.access)
        assert.equal(response.statusCode, 200, response.body)
        const body = response.json() as { results: Entry[]; next: string | null }
        assert.ok(body.results.length <= 2)
        seen.push(...body.results.map((entry) => entry.id))
        if (body.next) assert.match(body.next, /^https:\/\/accounts\.example\.com\/api\/users\/me\/activity\?before=\d+&limit=2$/)
        url = body.next
        pages += 1
      }
      assert.equal(seen.length, 5)
      assert.equal(pages, 3)
      assert.deepEqual(seen, [...seen].sort((a, b) => b - a))
      for (const bad of ['?limit=0', '?limit=101', '?before=x', '?before=0']) {
        problemOf(await client.get(`/api/users/me/activity${bad}`, owner.access), 400)
      }
      problemOf(await client.get('/api/users/me/activity'), 401)
    })

    test("when staff read a user's activity, then they see it; anyone else gets 403, an unknown id 404", async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      const staff = await client.signUp()
      const stranger = await client.signUp()
      await setFlags(config, staff.user.id, { is_staff: true })
      await signIn(client, owner.user.username, { userAgent: CHROME_WINDOWS })
      const read = await client.get(`/api/users/${owner.user.id}/activity`, staff.access)
      assert.equal(read.statusCode, 200, read.body)
      assert.deepEqual(types(read.json().results), ['sign_in'])
      assert.equal(read.json().results[0].device, 'Chrome 130 on Windows')
      assert.equal((await client.get(`/api/users/${owner.user.id}/activity`, owner.access)).statusCode, 200)
      problemOf(await client.get(`/api/users/${owner.user.id}/activity`, stranger.access), 403)
      problemOf(await client.get('/api/users/99999999/activity', staff.access), 404)
      problemOf(await client.get('/api/users/99999999/activity', stranger.access), 404)
      problemOf(await client.get(`/api/users/${owner.user.id}/activity`), 401)
    })

    test('when entries pass ACTIVITY_RETENTION, then the running app purges them and keeps the recent ones', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { activityPurgeIntervalMs: 50, activityRetentionSeconds: 3600 })
      const owner = await client.signUp()
      for (let n = 0; n < 3; n++) await signIn(client, owner.user.username)
      const [newest] = await activityOf(client, owner.access)
      const old = new Date(Date.now() - 2 * 3600_000).toISOString()
      await query(config, 'UPDATE security_activity SET at = ? WHERE user_id = ? AND id <> ?', [old, owner.user.id, newest?.id])
      await eventually(client, owner.access, (entries) => entries.length === 1)
      assert.deepEqual(
        (await activityOf(client, owner.access)).map((entry) => entry.id),
        [newest?.id],
      )
    })

    test('when an account is deleted, then its activity goes with it', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const owner = await client.signUp()
      await signIn(client, owner.user.username)
      const deleted = await client.request({
        method: 'DELETE',
        url: `/api/users/${owner.user.id}`,
        payload: { current_password: GOOD_PASSWORD },
        headers: bearer(owner.access),
      })
      assert.equal(deleted.statusCode, 204)
      const rows = await query<{ n: number }>(config, 'SELECT COUNT(*) AS n FROM security_activity WHERE user_id = ?', [owner.user.id])
      assert.equal(Number(rows[0]?.n), 0)
    })
  })
}
