import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DIALECTS, GOOD_PASSWORD, problemOf, type TestClient, testApp } from './helpers/app.js'
import { setFlags } from './helpers/db.js'
import { multipart } from './helpers/images.js'
import { suite } from './helpers/suite.js'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }

/** The profile as the API shows it, byte for byte: what "nothing changed" is compared against. */
async function profileBytes(client: TestClient, id: number, access: string): Promise<string> {
  const response = await client.get(`/api/users/${id}`, access)
  assert.equal(response.statusCode, 200)
  return response.body
}

/** 200 characters: a 64-character local part and a 135-character domain. */
const LONGEST_EMAIL = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(7)}`

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString()
}

for (const dialect of DIALECTS) {
  suite(`profile update (${dialect.name})`, dialect.skip, () => {
    test('when PUT or PATCH sends one field as JSON, then only that field changes', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp({ first_name: 'Ann', last_name: 'Lee', number_phone: '+123' })
      for (const method of ['PUT', 'PATCH'] as const) {
        const response = await client.send(method, `/api/users/${me.user.id}`, { first_name: method }, me.access)
        assert.equal(response.statusCode, 200)
        const user = response.json()
        assert.equal(user.first_name, method)
        assert.equal(user.last_name, 'Lee')
        assert.equal(user.number_phone, '+123')
        assert.equal(user.username, me.user.username)
        assert.equal(user.email, me.user.email)
      }
    })

    test('when the update arrives urlencoded or as multipart text fields, then it is applied the same way', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp({ first_name: 'Ann' })
      const url = `/api/users/${me.user.id}`
      const urlencoded = await client.send('PUT', url, form({ last_name: '  Form  ', number_phone: '0123456789' }), me.access, FORM)
      assert.equal(urlencoded.statusCode, 200, urlencoded.body)
      assert.deepEqual(
        [urlencoded.json().first_name, urlencoded.json().last_name, urlencoded.json().number_phone],
        ['Ann', 'Form', '0123456789'],
      )
      const { payload, headers } = multipart([
        { name: 'first_name', value: 'Multi' },
        { name: 'email', value: 'Multi@Example.org' },
      ])
      const multi = await client.send('PATCH', url, payload, me.access, headers)
      assert.equal(multi.statusCode, 200, multi.body)
      assert.deepEqual([multi.json().first_name, multi.json().last_name, multi.json().email], ['Multi', 'Form', 'Multi@Example.org'])
    })

    test('when the body is empty in any form, then 200 with the user unchanged', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp({ first_name: 'Same' })
      const url = `/api/users/${me.user.id}`
      const before = await profileBytes(client, me.user.id, me.access)
      const empties: [string, () => ReturnType<TestClient['request']>][] = [
        ['no body', () => client.request({ method: 'PUT', url, headers: { authorization: `Bearer ${me.access}` } })],
        ['zero-length JSON', () => client.send('PUT', url, '', me.access, JSON_TYPE)],
        ['{}', () => client.send('PATCH', url, {}, me.access)],
        ['empty urlencoded', () => client.send('PATCH', url, '', me.access, FORM)],
        ['multipart without parts', () => client.send('PUT', url, multipart([]).payload, me.access, multipart([]).headers)],
      ]
      for (const [name, send] of empties) {
        const response = await send()
        assert.equal(response.statusCode, 200, `${name}: ${response.body}`)
        assert.equal(response.body, before, name)
      }
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
    })

    test('when the content type is not JSON, a form or multipart, then 415', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const before = await profileBytes(client, me.user.id, me.access)
      const bodies: [string, string][] = [
        ['text/plain', 'first_name=Nope'],
        ['application/xml', '<first_name>Nope</first_name>'],
        ['image/png', 'not really'],
        ['multipart/mixed; boundary=abc', '--abc--'],
      ]
      for (const [type, body] of bodies) {
        for (const method of ['PUT', 'PATCH'] as const) {
          const response = await client.send(method, `/api/users/${me.user.id}`, body, me.access, { 'content-type': type })
          assert.equal(response.statusCode, 415, `${method} ${type}: ${response.body}`)
          problemOf(response, 415)
        }
      }
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
    })

    test('when several things are wrong at once, then the checks run 401, 404, 403, 415/413, 400 in that order', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const other = await client.signUp()
      const url = `/api/users/${other.user.id}`
      const badJson = { username: 'has space', nonsense: 1 }
      const big = multipart([{ name: 'avatar', filename: 'big.jpg', content: Buffer.alloc(6 * 1024 * 1024, 1) }])
      problemOf(await client.send('PUT', url, badJson), 401)
      problemOf(await client.send('PUT', url, badJson, 'not.a.token'), 401)
      problemOf(await client.send('PUT', '/api/users/987654', 'x', undefined, { 'content-type': 'text/plain' }), 401)
      problemOf(await client.send('PUT', '/api/users/987654', badJson, me.access), 404)
      problemOf(await client.send('PUT', '/api/users/987654', big.payload, me.access, big.headers), 404)
      problemOf(await client.send('PUT', url, badJson, me.access), 403)
      problemOf(await client.send('PUT', url, '<x/>', me.access, { 'content-type': 'application/xml' }), 403)
      problemOf(await client.send('PATCH', url, big.payload, me.access, big.headers), 403)
      problemOf(await client.send('PUT', `/api/users/${me.user.id}`, '<x/>', me.access, { 'content-type': 'application/xml' }), 415)
      problemOf(await client.send('PUT', `/api/users/${me.user.id}`, big.payload, me.access, big.headers), 413)
      problemOf(await client.send('PUT', `/api/users/${me.user.id}`, badJson, me.access), 400)
      // Bodies over the 64 KiB JSON/form limit: 403 for someone else's profile, 413 for your own.
      const hugeJson = { first_name: 'x'.repeat(70 * 1024) }
      const hugeForm = `last_name=${'y'.repeat(70 * 1024)}`
      problemOf(await client.send('PATCH', url, hugeJson, me.access), 403)
      problemOf(await client.send('PATCH', url, hugeForm, me.access, FORM), 403)
      problemOf(await client.send('PATCH', `/api/users/${me.user.id}`, hugeJson, me.access), 413)
      problemOf(await client.send('PATCH', `/api/users/${me.user.id}`, hugeForm, me.access, FORM), 413)
    })

    test('when the signed-in user PUTs or PATCHes /api/users/me, then their own profile changes under the same rules', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const put = await client.send('PUT', '/api/users/me', { first_name: '  Me  ' }, me.access)
      assert.equal(put.statusCode, 200)
      assert.equal(put.json().first_name, 'Me')
      assert.ok(put.headers.etag)
      const patch = await client.send('PATCH', '/api/users/me', { number_phone: '+', is_staff: true }, me.access)
      assert.deepEqual(Object.keys(problemOf(patch, 400).errors ?? {}), ['number_phone'])
      const stale = await client.send('PATCH', '/api/users/me', { last_name: 'X' }, me.access, { 'if-match': '"stale"' })
      problemOf(stale, 412)
      problemOf(await client.send('PATCH', '/api/users/me', { last_name: 'X' }), 401)
      const after = (await client.get('/api/users/me', me.access)).json()
      assert.deepEqual([after.first_name, after.last_name, after.number_phone, after.is_staff], ['Me', '', '', false])
    })

    test('when the id is not a plain integer of an existing user, then 404 on every method', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      for (const id of ['abc', '1e3', '-1', '99999999999999999999', '1.5', '0x1', '%20']) {
        const url = `/api/users/${id}`
        problemOf(await client.get(url, me.access), 404)
        problemOf(await client.send('PUT', url, { first_name: 'x' }, me.access), 404)
        problemOf(await client.send('PATCH', url, { first_name: 'x' }, me.access), 404)
        problemOf(await client.send('DELETE', url, { current_password: GOOD_PASSWORD }, me.access), 404)
        problemOf(await client.send('POST', `${url}/password`, { current_password: GOOD_PASSWORD, new_password: 'x' }, me.access), 404)
      }
      assert.equal((await client.get('/api/users/me', me.access)).statusCode, 200)
    })

    test('when a field value is on the edge of its rule, then the valid side is stored and the invalid side is refused', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const emoji = '😀'
      const valid: [string, string, string][] = [
        ['username', 'Zoë.o+k-_@9', 'Zoë.o+k-_@9'],
        ['username', 'u'.repeat(150), 'u'.repeat(150)],
        ['username', '  padded  ', 'padded'],
        ['email', 'Someone@Example.COM', 'Someone@Example.COM'],
        ['email', LONGEST_EMAIL, LONGEST_EMAIL],
        ['first_name', '', ''],
        ['first_name', ' \t\n Ann \n\t ', 'Ann'],
        ['first_name', emoji.repeat(200), emoji.repeat(200)],
        ['last_name', `  ${'l'.repeat(200)}\n`, 'l'.repeat(200)],
        ['last_name', 'Ünïcödé', 'Ünïcödé'],
        ['number_phone', '', ''],
        ['number_phone', '0123456789', '0123456789'],
        ['number_phone', '+123456789', '+123456789'],
      ]
      for (const [field, sent, stored] of valid) {
        const response = await client.send('PATCH', url, { [field]: sent }, me.access)
        assert.equal(response.statusCode, 200, `${field}=${JSON.stringify(sent)}: ${response.body}`)
        assert.equal(response.json()[field], stored, field)
      }
      const before = await profileBytes(client, me.user.id, me.access)
      const invalid: [string, unknown][] = [
        ['username', ''],
        ['username', '   '],
        ['username', 'has space'],
        ['username', 'semi;colon'],
        ['username', 'u'.repeat(151)],
        ['username', 'é'.repeat(151)],
        ['email', 'not-an-email'],
        ['email', 'a@b'],
        ['email', '@example.com'],
        ['email', 'two@@example.com'],
        ['email', `${'a'.repeat(190)}@example.com`],
        ['email', `${LONGEST_EMAIL}d`],
        ['email', ''],
        ['first_name', emoji.repeat(201)],
        ['first_name', 'x'.repeat(201)],
        ['last_name', 'tab\tinside'],
        ['last_name', 'new\nline'],
        ['first_name', 'nul\u0000byte'],
        ['first_name', 'del\u007f'],
        ['first_name', 'c1\u0085'],
        ['first_name', 'lone \ud800 surrogate'],
        ['number_phone', '+'],
        ['number_phone', '12345678901'],
        ['number_phone', '+1234567890'],
        ['number_phone', '12-34'],
        ['number_phone', '1+2'],
        ['number_phone', '١٢٣'],
        ['first_name', 5],
        ['first_name', null],
        ['username', ['a']],
        ['email', { address: 'a@example.com' }],
        ['number_phone', 123],
      ]
      for (const [field, sent] of invalid) {
        const problem = problemOf(await client.send('PATCH', url, { [field]: sent }, me.access), 400)
        assert.deepEqual(Object.keys(problem.errors ?? {}), [field], `${field}=${JSON.stringify(sent)}`)
      }
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
    })

    test('when a username or email belongs to someone else in another case, then 400 on that field; your own in another case is fine', async (t) => {
      const { client } = await testApp(t, dialect.name)
      await client.signUp({ username: 'Taken', email: 'Taken@Example.com' })
      const me = await client.signUp({ username: 'mine', email: 'mine@example.com' })
      const url = `/api/users/${me.user.id}`
      const problem = problemOf(await client.send('PATCH', url, { username: 'tAKEN', email: 'taken@EXAMPLE.com' }, me.access), 400)
      assert.deepEqual(Object.keys(problem.errors ?? {}).sort(), ['email', 'username'])
      const own = await client.send('PATCH', url, { username: 'MINE', email: 'Mine@Example.com' }, me.access)
      assert.equal(own.statusCode, 200)
      assert.deepEqual([own.json().username, own.json().email], ['MINE', 'Mine@Example.com'])
    })

    test('when many users race for one username, then exactly one gets it and the rest get 400, never 500', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const racers = []
      for (let i = 0; i < 10; i++) racers.push(await client.signUp())
      const responses = await Promise.all(
        racers.map((racer) => client.send('PATCH', `/api/users/${racer.user.id}`, { username: 'Wanted' }, racer.access)),
      )
      const statuses = responses.map((response) => response.statusCode)
      assert.equal(statuses.filter((status) => status === 200).length, 1, statuses.join(','))
      for (const response of responses.filter((r) => r.statusCode !== 200)) {
        assert.deepEqual(Object.keys(problemOf(response, 400).errors ?? {}), ['username'])
      }
      const owners = []
      for (const racer of racers) {
        if ((await client.get('/api/users/me', racer.access)).json().username.toLowerCase() === 'wanted') owners.push(racer.user.id)
      }
      assert.equal(owners.length, 1)
    })

    test('when many users race for one email in different cases, then exactly one gets it', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const racers = []
      for (let i = 0; i < 6; i++) racers.push(await client.signUp())
      const responses = await Promise.all(
        racers.map((racer, i) =>
          client.send('PUT', `/api/users/${racer.user.id}`, { email: i % 2 ? 'RACE@example.com' : 'race@EXAMPLE.com' }, racer.access),
        ),
      )
      assert.deepEqual(responses.map((r) => r.statusCode).sort(), [200, 400, 400, 400, 400, 400])
    })

    test('when a client PUTs back what it read, read-only fields included, then 200 and nothing changes', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp({ first_name: 'Round', last_name: 'Trip' })
      const read = await client.get(`/api/users/${me.user.id}`, me.access)
      const response = await client.send('PUT', `/api/users/${me.user.id}`, read.json(), me.access)
      assert.equal(response.statusCode, 200, response.body)
      const tampered = { ...read.json(), id: 999, date_joined: '2000-01-01T00:00:00.000Z', last_login: null, is_active: false, is_staff: true, is_superuser: true }
      const ignored = await client.send('PATCH', `/api/users/${me.user.id}`, tampered, me.access)
      assert.equal(ignored.statusCode, 200, ignored.body)
      const after = (await client.get(`/api/users/${me.user.id}`, me.access)).json()
      assert.deepEqual({ ...after }, { ...read.json() })
    })

    test('when a normal user sends account flags in any content type, then they are ignored', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const flags = { is_active: 'false', is_staff: 'true', is_superuser: 'true' }
      const bodies: [unknown, Record<string, string>][] = [
        [{ is_active: false, is_staff: true, is_superuser: true, first_name: 'A' }, JSON_TYPE],
        [form({ ...flags, first_name: 'B' }), FORM],
        [multipart(Object.entries({ ...flags, first_name: 'C' }).map(([name, value]) => ({ name, value }))).payload, multipart([]).headers],
      ]
      for (const [payload, headers] of bodies) {
        const response = await client.send('PATCH', url, payload, me.access, headers)
        assert.equal(response.statusCode, 200, response.body)
        assert.deepEqual([response.json().is_active, response.json().is_staff, response.json().is_superuser], [true, false, false])
      }
      assert.equal((await client.get('/api/users/me', me.access)).json().first_name, 'C')
      // Not staff after all: the list stays closed.
      problemOf(await client.get('/api/users', me.access), 403)
    })

    test('when unknown fields or password are sent, then 400 naming each of them and nothing changes', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const before = await profileBytes(client, me.user.id, me.access)
      const json = problemOf(await client.send('PATCH', url, { first_name: 'Ok', nickname: 'x', password: GOOD_PASSWORD }, me.access), 400)
      assert.deepEqual(Object.keys(json.errors ?? {}).sort(), ['nickname', 'password'])
      assert.match(json.errors?.password?.join(' ') ?? '', /password/)
      const urlencoded = problemOf(await client.send('PATCH', url, form({ first_name: 'Ok', password: 'x', colour: 'red' }), me.access, FORM), 400)
      assert.deepEqual(Object.keys(urlencoded.errors ?? {}).sort(), ['colour', 'password'])
      const multi = multipart([{ name: 'first_name', value: 'Ok' }, { name: 'password', value: 'x' }])
      assert.deepEqual(Object.keys(problemOf(await client.send('PATCH', url, multi.payload, me.access, multi.headers), 400).errors ?? {}), ['password'])
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
    })

    test('when several fields fail, then every one is listed and none of the valid ones is applied', async (t) => {
      const { client } = await testApp(t, dialect.name)
      await client.signUp({ username: 'other' })
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const before = await profileBytes(client, me.user.id, me.access)
      const problem = problemOf(
        await client.send(
          'PUT',
          url,
          { username: 'OTHER', email: 'bad', first_name: 'x'.repeat(201), last_name: 'Fine', number_phone: '+', avatar: 5, extra: true },
          me.access,
        ),
        400,
      )
      assert.deepEqual(Object.keys(problem.errors ?? {}).sort(), ['avatar', 'email', 'extra', 'first_name', 'number_phone', 'username'])
      const urlencoded = problemOf(await client.send('PUT', url, form({ username: 'a b', number_phone: 'abc', last_name: 'Fine' }), me.access, FORM), 400)
      assert.deepEqual(Object.keys(urlencoded.errors ?? {}).sort(), ['number_phone', 'username'])
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
    })

    test('when a form repeats a field, then 400 on that field', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const problem = problemOf(await client.send('PATCH', url, 'first_name=a&first_name=b', me.access, FORM), 400)
      assert.deepEqual(Object.keys(problem.errors ?? {}), ['first_name'])
      const multi = multipart([{ name: 'last_name', value: 'a' }, { name: 'last_name', value: 'b' }])
      assert.deepEqual(Object.keys(problemOf(await client.send('PATCH', url, multi.payload, me.access, multi.headers), 400).errors ?? {}), ['last_name'])
    })

    test('when the JSON body is not an object, is malformed or carries prototype keys, then 4xx and nothing changes', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const before = await profileBytes(client, me.user.id, me.access)
      const bodies = [
        '[]',
        '"first_name"',
        '42',
        '{"first_name": "x"',
        '{"__proto__": {"is_superuser": true}}',
        '{"first_name": "Proto", "__proto__": {"is_staff": true}}',
        '{"constructor": {"prototype": {"is_staff": true}}}',
        '{"constructor": "x"}',
        '{"first_name": {"__proto__": {"x": 1}}}',
      ]
      for (const body of bodies) {
        const response = await client.send('PATCH', url, body, me.access, JSON_TYPE)
        assert.ok(response.statusCode >= 400 && response.statusCode < 500, `${body}: ${response.statusCode}`)
        problemOf(response, response.statusCode)
      }
      for (const body of ['__proto__[is_staff]=true', '__proto__=x&first_name=P', 'constructor[prototype][is_staff]=1']) {
        const response = await client.send('PATCH', url, body, me.access, FORM)
        assert.ok(response.statusCode >= 400 && response.statusCode < 500, `${body}: ${response.statusCode}`)
      }
      const proto = multipart([{ name: '__proto__', value: 'x' }, { name: 'constructor', value: 'y' }])
      problemOf(await client.send('PATCH', url, proto.payload, me.access, proto.headers), 400)
      assert.equal(await profileBytes(client, me.user.id, me.access), before)
      assert.equal(({} as Record<string, unknown>).is_staff, undefined)
    })

    test('when avatar is sent in JSON as anything but null or its current URL, then 400', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      for (const avatar of [{ url: 'x' }, 5, true, [], 'http://evil.example/a.webp', '/media/avatars/AAAAAAAAAAAAAAAAAAAAAA.webp', '']) {
        assert.deepEqual(Object.keys(problemOf(await client.send('PATCH', url, { avatar }, me.access), 400).errors ?? {}), ['avatar'], JSON.stringify(avatar))
      }
      const unchanged = await client.send('PATCH', url, { avatar: null, first_name: 'NoAvatar' }, me.access)
      assert.equal(unchanged.statusCode, 200)
      assert.equal(unchanged.json().avatar, null)
    })

    test('when a superuser updates another user, then they may set the account flags, through JSON and a form', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const admin = await client.signUp()
      await setFlags(config, admin.user.id, { is_superuser: true, is_staff: true })
      const user = await client.signUp()
      const url = `/api/users/${user.user.id}`
      const json = await client.send('PATCH', url, { is_staff: true, first_name: 'Promoted' }, admin.access)
      assert.equal(json.statusCode, 200, json.body)
      assert.deepEqual([json.json().is_staff, json.json().first_name], [true, 'Promoted'])
      const multi = multipart([{ name: 'is_staff', value: 'false' }])
      assert.equal((await client.send('PATCH', url, multi.payload, admin.access, multi.headers)).json().is_staff, false)
      const urlencoded = await client.send('PATCH', url, form({ is_superuser: 'true', is_staff: 'true' }), admin.access, FORM)
      assert.deepEqual([urlencoded.json().is_superuser, urlencoded.json().is_staff], [true, true])
      // Now a superuser too: another superuser may no longer change its flags through the API.
      const demote = multipart([{ name: 'is_superuser', value: 'false' }])
      problemOf(await client.send('PATCH', url, demote.payload, admin.access, demote.headers), 403)
      assert.equal((await client.get(url, admin.access)).json().is_superuser, true)
      const bad = problemOf(await client.send('PATCH', url, { is_staff: 'yes' }, admin.access), 400)
      assert.deepEqual(Object.keys(bad.errors ?? {}), ['is_staff'])
      // The superuser's own flags stay read-only, so they cannot lock themselves out by accident.
      const self = await client.send('PATCH', `/api/users/${admin.user.id}`, { is_superuser: false, is_active: false }, admin.access)
      assert.deepEqual([self.json().is_superuser, self.json().is_active], [true, true])
    })

    test('when a superuser deactivates a user, then that user’s tokens stop working at once', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const admin = await client.signUp()
      await setFlags(config, admin.user.id, { is_superuser: true })
      const user = await client.signUp()
      assert.equal((await client.get('/api/users/me', user.access)).statusCode, 200)
      const response = await client.send('PUT', `/api/users/${user.user.id}`, { is_active: false }, admin.access)
      assert.equal(response.json().is_active, false)
      problemOf(await client.get('/api/users/me', user.access), 401)
      problemOf(await client.send('PATCH', `/api/users/${user.user.id}`, { first_name: 'x' }, user.access), 401)
      problemOf(await client.send('POST', '/api/auth/refresh', { refresh: user.refresh }), 401)
    })

    test('when staff who is not a superuser updates someone else, then 403', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const staff = await client.signUp()
      await setFlags(config, staff.user.id, { is_staff: true })
      const user = await client.signUp()
      const before = await profileBytes(client, user.user.id, user.access)
      problemOf(await client.send('PATCH', `/api/users/${user.user.id}`, { first_name: 'x' }, staff.access), 403)
      problemOf(await client.send('PATCH', `/api/users/${user.user.id}`, { is_staff: true }, staff.access), 403)
      assert.equal(await profileBytes(client, user.user.id, user.access), before)
    })

    test('when If-Match does not match the profile version, then 412 and nothing changes; a match or * goes through', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const read = await client.get(url, me.access)
      const etag = String(read.headers.etag)
      assert.match(etag, /^"[^"]+"$/)
      for (const ifMatch of ['"stale"', '"0.0"', 'W/"x"', `${etag}x`]) {
        problemOf(await client.send('PATCH', url, { first_name: 'Lost' }, me.access, { 'if-match': ifMatch }), 412)
        problemOf(await client.send('PUT', url, {}, me.access, { 'if-match': ifMatch }), 412)
      }
      assert.equal(await profileBytes(client, me.user.id, me.access), read.body)
      const matched = await client.send('PATCH', url, { first_name: 'Won' }, me.access, { 'if-match': etag })
      assert.equal(matched.statusCode, 200)
      assert.notEqual(matched.headers.etag, etag)
      // The old tag is stale now: a second writer holding it loses.
      problemOf(await client.send('PATCH', url, { first_name: 'Late' }, me.access, { 'if-match': etag }), 412)
      const list = await client.send('PATCH', url, { last_name: 'Listed' }, me.access, { 'if-match': `"nope", ${matched.headers.etag}` })
      assert.equal(list.statusCode, 200)
      const star = await client.send('PUT', url, { first_name: 'Star' }, me.access, { 'if-match': '*' })
      assert.equal(star.statusCode, 200)
      assert.equal(star.json().first_name, 'Star')
    })

    test('when two writers race with the same If-Match, then one wins and the other gets 412', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const etag = String((await client.get(url, me.access)).headers.etag)
      const responses = await Promise.all(
        ['One', 'Two', 'Three', 'Four'].map((first_name) => client.send('PATCH', url, { first_name }, me.access, { 'if-match': etag })),
      )
      assert.deepEqual(responses.map((r) => r.statusCode).sort(), [200, 412, 412, 412])
    })

    test('when any user response is sent, then it carries an ETag that changes with every write and never the hash', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const responses = [
        await client.get('/api/users/me', me.access),
        await client.get(`/api/users/${me.user.id}`, me.access),
        await client.send('PUT', `/api/users/${me.user.id}`, { first_name: 'A' }, me.access),
        await client.send('PATCH', `/api/users/${me.user.id}`, { first_name: 'B' }, me.access),
        await client.send('PATCH', `/api/users/${me.user.id}`, {}, me.access),
        await client.get('/api/users/me/', me.access),
      ]
      const tags = responses.map((response) => {
        assert.equal(response.statusCode, 200)
        assert.doesNotMatch(response.body, /argon2|password/)
        return String(response.headers.etag)
      })
      assert.equal(tags[0], tags[1])
      assert.notEqual(tags[2], tags[1])
      assert.notEqual(tags[3], tags[2])
      assert.equal(tags[4], tags[3])
      assert.equal(tags[5], tags[3])
    })
  })
}
