import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Api, assertProblem, GOOD_PASSWORD, putMultipart, type Reply, type Session } from './client.js'
import { pngBytes } from './images.js'
import { avatarFiles, createSuperuser, dataDir, startServer } from './server.js'

// Concurrency: the database, not the order of arrival, decides who wins, and nobody ends half-way.

const CLAIMANTS = 10

test('races on a running server', async (t) => {
  const data = dataDir(t)
  await createSuperuser(data, 'root', GOOD_PASSWORD)
  const server = await startServer(t, { data })
  const api = new Api(server.url)
  const root = await api.signIn('root')
  const claimants: Session[] = []
  for (let n = 0; n < CLAIMANTS; n++) claimants.push(await api.signUp(`claimant${n}`))

  /** Everyone the staff list finds whose `field` equals `value` case-insensitively. */
  async function owners(field: 'username' | 'email', value: string): Promise<string[]> {
    const list = await api.call(`/api/users?search=${encodeURIComponent(value)}`, { token: root.access })
    assert.equal(list.status, 200, list.text)
    return list.json.results.filter((user: Record<string, string>) => user[field]?.toLowerCase() === value.toLowerCase()).map((user: { username: string }) => user.username)
  }

  function assertOneWinner(replies: Reply[], field: string, winStatus: number) {
    const winners = replies.filter((reply) => reply.status === winStatus)
    assert.equal(winners.length, 1, replies.map((reply) => `${reply.status} ${reply.text.slice(0, 120)}`).join('\n'))
    for (const loser of replies.filter((reply) => reply.status !== winStatus)) {
      const problem = assertProblem(loser, 400)
      assert.ok(problem.errors?.[field], `the refusal does not name ${field}: ${loser.text}`)
    }
  }

  await t.test('when many users claim one username at once (in different cases), then exactly one owns it', async () => {
    const replies = await Promise.all(
      claimants.map((claimant, n) =>
        api.call(`/api/users/${claimant.user.id}`, { method: 'PATCH', token: claimant.access, json: { username: n % 2 ? 'Contested' : 'CONTESTED' } }),
      ),
    )
    assertOneWinner(replies, 'username', 200)
    assert.equal((await owners('username', 'contested')).length, 1)
  })

  await t.test('when many users claim one email at once, then exactly one owns it', async () => {
    const replies = await Promise.all(
      claimants.map((claimant, n) =>
        api.call(`/api/users/${claimant.user.id}`, { method: 'PUT', token: claimant.access, json: { email: n % 2 ? 'Prize@Example.com' : 'prize@example.com' } }),
      ),
    )
    assertOneWinner(replies, 'email', 200)
    assert.equal((await owners('email', 'prize@example.com')).length, 1)
  })

  await t.test('when many sign-ups race for one username or one email, then exactly one account is created', async () => {
    const byName = await Promise.all(
      Array.from({ length: 8 }, (_, n) =>
        api.call('/api/auth/sign-up', { method: 'POST', json: { username: 'FirstCome', email: `first${n}@example.com`, password: GOOD_PASSWORD } }),
      ),
    )
    assertOneWinner(byName, 'username', 201)
    const byEmail = await Promise.all(
      Array.from({ length: 8 }, (_, n) =>
        api.call('/api/auth/sign-up', { method: 'POST', json: { username: `mailrace${n}`, email: 'Same@Example.com', password: GOOD_PASSWORD } }),
      ),
    )
    assertOneWinner(byEmail, 'email', 201)
    assert.equal((await owners('username', 'firstcome')).length, 1)
    assert.equal((await owners('email', 'same@example.com')).length, 1)
  })

  await t.test('when one user uploads many avatars at once, then the profile points to exactly one stored file and no other remains', async () => {
    const [uploader] = claimants as [Session]
    const images = await Promise.all(Array.from({ length: 8 }, (_, n) => pngBytes(20 + n, 20 + n)))
    const replies = await Promise.all(images.map((content) => putMultipart(api, uploader.user.id, uploader.access, [{ name: 'avatar', filename: 'a.png', content }])))
    for (const reply of replies) assert.equal(reply.status, 200, reply.text)
    const { avatar } = (await api.me(uploader.access)).json
    assert.ok(replies.some((reply) => reply.json.avatar === avatar), 'the final avatar is none of the answered ones')
    assert.deepEqual(avatarFiles(data), [avatar.split('/').pop()])
    const served = await fetch(`${server.url}${avatar}`)
    assert.equal(served.status, 200)
    assert.equal(served.headers.get('content-type'), 'image/webp')
  })

  await t.test('when one refresh token is presented many times at once, then every one gets the same successor and the session lives', async () => {
    const session = await api.signIn('claimant1')
    const replies = await Promise.all(Array.from({ length: 10 }, () => api.call('/api/auth/refresh', { method: 'POST', json: { refresh: session.refresh } })))
    assert.deepEqual(
      replies.map((reply) => reply.status),
      Array(10).fill(200),
      replies.map((reply) => reply.text.slice(0, 120)).join('\n'),
    )
    // Within the reuse grace a repeat is a retry, not a theft: one successor for all, and it works.
    const successors = new Set(replies.map((reply) => reply.json.refresh))
    assert.equal(successors.size, 1)
    const next = await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: [...successors][0] } })
    assert.equal(next.status, 200, next.text)
  })
})
