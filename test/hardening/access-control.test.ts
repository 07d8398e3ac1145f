import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Api, assertProblem, assertUserShape, GOOD_PASSWORD, multipart, putMultipart, type Reply, type Session } from './client.js'
import { pngBytes } from './images.js'
import { avatarFiles, createSuperuser, type DataDir, dataDir, startServer } from './server.js'

// OWASP API1 (broken object-level authorization) and API3 (broken object-property-level authorization),
// against a real server process over real sockets.

const READ_ONLY_ATTEMPT = {
  id: 999_999,
  is_staff: true,
  is_superuser: true,
  is_active: false,
  date_joined: '2000-01-01T00:00:00.000Z',
  last_login: '2000-01-01T00:00:00.000Z',
}

test('access control on a running server', async (t) => {
  const data: DataDir = dataDir(t)
  await createSuperuser(data, 'root', GOOD_PASSWORD)
  await createSuperuser(data, 'root2', GOOD_PASSWORD)
  const server = await startServer(t, { data })
  const api = new Api(server.url)
  const superuser = await api.signIn('root')
  const [staff, alice, bob] = (await Promise.all([api.signUp('staffer'), api.signUp('alice'), api.signUp('bob')])) as [Session, Session, Session]
  const promoted = await api.call(`/api/users/${staff.user.id}`, { method: 'PATCH', token: superuser.access, json: { is_staff: true } })
  assert.equal(promoted.status, 200, promoted.text)
  assert.equal(promoted.json.is_staff, true)
  // bob gets an avatar, so a successful attack on it would show.
  const upload = await putMultipart(api, bob.user.id, bob.access, [{ name: 'avatar', filename: 'a.png', content: await pngBytes() }])
  assert.equal(upload.status, 200, upload.text)

  /** Bob's profile bytes, his avatar files and his password, so an attack that changed anything shows. */
  async function victimState() {
    const me = await api.me(bob.access)
    assert.equal(me.status, 200)
    return { profile: me.text, files: avatarFiles(data) }
  }

  await t.test('when another user tries every {id} route on a victim, then each answers 403 and the victim is unchanged', async () => {
    const before = await victimState()
    const victim = `/api/users/${bob.user.id}`
    const form = multipart([
      { name: 'first_name', value: 'pwned' },
      { name: 'avatar', filename: 'x.png', content: await pngBytes() },
    ])
    const attempts: [string, string, Parameters<Api['call']>[1]][] = [
      ['GET', victim, {}],
      ['PUT', victim, { json: { first_name: 'pwned', email: 'attacker@example.com' } }],
      ['PATCH', victim, { json: { first_name: 'pwned', avatar: null } }],
      ['PUT', victim, { body: form.body, headers: form.headers }],
      ['PATCH', victim, { body: 'first_name=pwned', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
      ['POST', `${victim}/password`, { json: { current_password: GOOD_PASSWORD, new_password: 'attacker-Chosen-77' } }],
      ['DELETE', victim, { json: { current_password: GOOD_PASSWORD } }],
      ['DELETE', victim, {}],
      // Same id spelt differently must resolve to the same authorization decision.
      ['PATCH', `/api/users/0${bob.user.id}`, { json: { first_name: 'pwned' } }],
      ['PATCH', `${victim}/`, { json: { first_name: 'pwned' } }],
    ]
    for (const [method, path, init] of attempts) {
      const reply = await api.call(path, { ...init, method, token: alice.access })
      assertProblem(reply, 403)
    }
    // Staff may read anyone, and nothing more.
    assert.equal((await api.call(victim, { token: staff.access })).status, 200)
    for (const [method, path, init] of attempts.slice(1)) {
      assertProblem(await api.call(path, { ...init, method, token: staff.access }), 403)
    }
    // A superuser may not change another user's password, nor act on another superuser's account flags.
    assertProblem(await api.call(`${victim}/password`, { method: 'POST', token: superuser.access, json: { current_password: GOOD_PASSWORD, new_password: 'attacker-Chosen-77' } }), 403)
    assertProblem(await api.call(`/api/users/${superuser.user.id}`, { method: 'PATCH', token: staff.access, json: { is_superuser: false } }), 403)

    assert.deepEqual(await victimState(), before)
    await api.signIn('bob') // the password still works
  })

  await t.test('when an id does not exist or is not an integer, then every {id} route answers 404 and never 500', async () => {
    const ids = ['999999', '0', '-1', 'abc', '1e3', '0x2', '2.0', '%20', '%00', '99999999999999999999', `${bob.user.id}%2F..`, '..%2Fme']
    for (const id of ids) {
      for (const [method, suffix, json] of [
        ['GET', '', undefined],
        ['PUT', '', { first_name: 'x' }],
        ['PATCH', '', { first_name: 'x' }],
        ['DELETE', '', {}],
        ['POST', '/password', { current_password: GOOD_PASSWORD, new_password: 'attacker-Chosen-77' }],
      ] as const) {
        const reply = await api.call(`/api/users/${id}${suffix}`, { method, token: alice.access, json })
        assertProblem(reply, 404)
      }
    }
  })

  await t.test('when read-only fields are sent as JSON, a form or multipart, then they are ignored and nothing but the allowed field changes', async () => {
    const before = await api.me(alice.access)
    const asStrings = Object.fromEntries(Object.entries(READ_ONLY_ATTEMPT).map(([key, value]) => [key, String(value)]))
    const bodies: [string, Parameters<Api['call']>[1]][] = [
      ['json', { json: { ...READ_ONLY_ATTEMPT, first_name: 'Alice' } }],
      ['form', { body: new URLSearchParams({ ...asStrings, first_name: 'Alice2' }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
      ['multipart', multipartInit({ ...asStrings, first_name: 'Alice3' })],
    ]
    for (const [kind, init] of bodies) {
      for (const method of ['PUT', 'PATCH']) {
        const reply = await api.call(`/api/users/${alice.user.id}`, { ...init, method, token: alice.access })
        assert.equal(reply.status, 200, `${kind} ${method}: ${reply.text}`)
        assertUserShape(reply.json)
        const { first_name: _changed, ...rest } = reply.json
        const { first_name: _old, ...expected } = before.json
        assert.deepEqual(rest, expected, `${kind} ${method} changed a read-only field`)
      }
    }
    assert.equal((await api.me(alice.access)).json.is_staff, false)
    assertProblem(await api.call('/api/users', { token: alice.access }), 403)
  })

  await t.test('when a password is sent through the profile endpoint in any encoding, then it is refused and the old password still works', async () => {
    const before = await api.me(alice.access)
    const attempts: Parameters<Api['call']>[1][] = [
      { json: { password: 'attacker-Chosen-77' } },
      { body: 'password=attacker-Chosen-77', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      multipartInit({ password: 'attacker-Chosen-77' }),
    ]
    for (const init of attempts) assertProblem(await api.call(`/api/users/${alice.user.id}`, { ...init, method: 'PATCH', token: alice.access }), 400)
    assert.equal((await api.me(alice.access)).text, before.text)
    assertProblem(await api.call('/api/auth/sign-in', { method: 'POST', json: { username: 'alice', password: 'attacker-Chosen-77' } }), 401)
    await api.signIn('alice')
  })

  await t.test('when sign-up carries privilege fields, then no privileged account comes out of it', async () => {
    const reply = await api.call('/api/auth/sign-up', {
      method: 'POST',
      json: { username: 'mallory', email: 'mallory@example.com', password: GOOD_PASSWORD, ...READ_ONLY_ATTEMPT, is_active: true, id: 1 },
    })
    if (reply.status === 201) {
      assert.equal(reply.json.user.is_staff, false)
      assert.equal(reply.json.user.is_superuser, false)
      assert.notEqual(reply.json.user.id, 1)
    } else {
      assertProblem(reply, 400)
      assertProblem(await api.call('/api/auth/sign-in', { method: 'POST', json: { username: 'mallory', password: GOOD_PASSWORD } }), 401)
    }
  })

  await t.test('when a superuser tries to demote, deactivate or unstaff another superuser, then 403 and the target can still not be deleted', async () => {
    const other = await api.signIn('root2')
    const url = `/api/users/${other.user.id}`
    const before = (await api.me(other.access)).text
    const attempts: [string, unknown, Record<string, string>?][] = [
      ['is_superuser false', { is_superuser: false }],
      ['is_staff false', { is_staff: false }],
      ['is_active false', { is_active: false }],
      ['all three with a name', { first_name: 'Demoted', is_superuser: false, is_staff: false, is_active: false }],
      ['as a form', 'is_superuser=false', { 'content-type': 'application/x-www-form-urlencoded' }],
    ]
    for (const [why, body, headers] of attempts) {
      for (const method of ['PATCH', 'PUT']) {
        const reply = await api.call(url, {
          method,
          token: superuser.access,
          ...(typeof body === 'string' ? { body, headers } : { json: body }),
        })
        assert.equal(reply.status, 403, `${method} ${why}: ${reply.status} ${reply.text}`)
        assertProblem(reply, 403)
      }
    }
    assert.equal((await api.me(other.access)).text, before, 'the other superuser is unchanged')
    // The demote-then-delete path stays closed.
    assertProblem(await api.call(url, { method: 'DELETE', token: superuser.access, json: {} }), 403)
    // Sending the current values back (a PUT of what was read) is no change and still works.
    const read = await api.call(url, { token: superuser.access })
    const putBack = await api.call(url, { method: 'PUT', token: superuser.access, json: { ...read.json, first_name: 'Second' } })
    assert.equal(putBack.status, 200, putBack.text)
    assert.deepEqual([putBack.json.is_superuser, putBack.json.is_staff, putBack.json.is_active], [true, true, true])
    // On a non-superuser a superuser still sets flags.
    const target = await api.signUp('flagged')
    const staffed = await api.call(`/api/users/${target.user.id}`, { method: 'PATCH', token: superuser.access, json: { is_staff: true } })
    assert.equal(staffed.status, 200, staffed.text)
    assert.equal(staffed.json.is_staff, true)
  })

  await t.test('when a staff member (not superuser) sets their own flags, then nothing changes', async () => {
    const reply = await api.call(`/api/users/${staff.user.id}`, { method: 'PATCH', token: staff.access, json: { is_superuser: true, is_staff: false } })
    assert.equal(reply.status, 200, reply.text)
    assert.equal(reply.json.is_superuser, false)
    assert.equal(reply.json.is_staff, true)
  })

  await t.test('when any endpoint returns a user or tokens, then it shows only the documented fields', async () => {
    const signUp = await api.call('/api/auth/sign-up', { method: 'POST', json: { username: 'carol', email: 'carol@example.com', password: GOOD_PASSWORD } })
    const signIn = await api.call('/api/auth/sign-in', { method: 'POST', json: { email: 'carol@example.com', password: GOOD_PASSWORD } })
    const refresh = await api.call('/api/auth/refresh', { method: 'POST', json: { refresh: signIn.json.refresh } })
    for (const reply of [signUp, signIn]) {
      // device_token: proof of this sign-in for the sign-in limit (issue 12 §2, README "Sign-in limits").
      assert.deepEqual(Object.keys(reply.json).sort(), ['access', 'device_token', 'refresh', 'user'], reply.text)
      assertUserShape(reply.json.user)
    }
    assert.deepEqual(Object.keys(refresh.json).sort(), ['access', 'refresh'])
    const carol: Session = signIn.json
    const users: Reply[] = [
      await api.me(carol.access),
      await api.call(`/api/users/${carol.user.id}`, { token: carol.access }),
      await api.call(`/api/users/${carol.user.id}`, { method: 'PUT', token: carol.access, json: { last_name: 'C' } }),
      await api.call(`/api/users/${carol.user.id}`, { method: 'PATCH', token: carol.access, ...multipartInit({ last_name: 'D' }) }),
      await api.call(`/api/users/${bob.user.id}`, { token: staff.access }),
    ]
    for (const reply of users) {
      assert.equal(reply.status, 200, reply.text)
      assertUserShape(reply.json)
    }
    const list = await api.call('/api/users', { token: staff.access })
    assert.equal(list.status, 200)
    assert.deepEqual(Object.keys(list.json).sort(), ['count', 'count_exact', 'next', 'previous', 'results'])
    assert.ok(list.json.results.length >= 5)
    for (const user of list.json.results) assertUserShape(user)
    for (const reply of [signUp, signIn, refresh, ...users, list]) {
      assert.doesNotMatch(reply.text, /argon2|password|version|username_lower|email_lower/i)
    }
  })
})

function multipartInit(fields: Record<string, string>) {
  const { body, headers } = multipart(Object.entries(fields).map(([name, value]) => ({ name, value })))
  return { body, headers }
}
