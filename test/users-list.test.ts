import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DIALECTS, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { setFlags } from './helpers/db.js'
import { suite } from './helpers/suite.js'

interface Page {
  count: number
  next: string | null
  previous: string | null
  results: { id: number; username: string }[]
}

async function page(client: TestClient, staff: Session, query: string): Promise<Page> {
  const response = await client.get(`/api/users${query}`, staff.access)
  assert.equal(response.statusCode, 200, `${query}: ${response.body}`)
  assert.doesNotMatch(response.body, /argon2|password/)
  return response.json()
}

for (const dialect of DIALECTS) {
  suite(`listing users (${dialect.name})`, dialect.skip, () => {
    test('when a normal user or nobody lists users, then 403 or 401', async (t) => {
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      problemOf(await client.get('/api/users'), 401)
      problemOf(await client.get('/api/users', me.access), 403)
      problemOf(await client.get('/api/users/?search=x', me.access), 403)
      problemOf(await client.get('/api/users?page_size=101', me.access), 403)
      problemOf(await client.get('/api/users?page_size=101'), 401)
    })

    test('when staff pages through the users, then pages are ordered by id with count, next and previous', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const staff = await client.signUp({ username: 'staffer' })
      await setFlags(config, staff.user.id, { is_staff: true })
      const ids = [staff.user.id]
      for (let i = 0; i < 6; i++) ids.push((await client.signUp({ username: `member${i}` })).user.id)
      const all = await page(client, staff, '')
      assert.equal(all.count, 7)
      assert.deepEqual(all.results.map((user) => user.id), ids)
      assert.equal(all.next, null)
      assert.equal(all.previous, null)
      const first = await page(client, staff, '?page_size=3')
      assert.deepEqual([first.count, first.results.map((user) => user.id)], [7, ids.slice(0, 3)])
      assert.equal(first.previous, null)
      assert.ok(first.next)
      const second = await page(client, staff, first.next.replace(/^.*\/api\/users/, ''))
      assert.deepEqual(second.results.map((user) => user.id), ids.slice(3, 6))
      assert.ok(second.next && second.previous)
      const third = await page(client, staff, second.next.replace(/^.*\/api\/users/, ''))
      assert.deepEqual(third.results.map((user) => user.id), ids.slice(6))
      assert.equal(third.next, null)
      const back = await page(client, staff, (third.previous as string).replace(/^.*\/api\/users/, ''))
      assert.deepEqual(back.results.map((user) => user.id), ids.slice(3, 6))
      const beyond = await page(client, staff, '?page=9&page_size=3')
      assert.deepEqual([beyond.count, beyond.results, beyond.next], [7, [], null])
      assert.match(String(beyond.previous), /page=3/)
      assert.equal((await page(client, staff, '?page_size=100')).results.length, 7)
    })

    test('when page or page_size is out of range or not a number, then 400', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const staff = await client.signUp()
      await setFlags(config, staff.user.id, { is_superuser: true })
      for (const query of ['?page_size=101', '?page_size=0', '?page_size=-1', '?page_size=abc', '?page=0', '?page=1.5', '?page=x', `?search=${'s'.repeat(201)}`]) {
        problemOf(await client.get(`/api/users${query}`, staff.access), 400)
      }
    })

    test('when staff searches, then username, email and names match case-insensitively and % _ \\ are literal', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const staff = await client.signUp({ username: 'boss', email: 'boss@corp.example' })
      await setFlags(config, staff.user.id, { is_staff: true })
      const ann = await client.signUp({ username: 'AnnSmith', email: 'ann@mail.example', first_name: 'Ann' })
      const bob = await client.signUp({ username: 'bob', email: 'Robert@Work.example', last_name: 'Ünal' })
      const percent = await client.signUp({ username: 'pct', email: 'pct@mail.example', first_name: '100%_sure' })
      const lookalike = await client.signUp({ username: 'look', email: 'look@mail.example', first_name: '100xxsure' })
      const slash = await client.signUp({ username: 'slash', email: 'slash@mail.example', last_name: 'back\\slash' })
      const found = async (search: string) =>
        (await page(client, staff, `?search=${encodeURIComponent(search)}`)).results.map((user) => user.id)
      assert.deepEqual(await found('annsmith'), [ann.user.id])
      assert.deepEqual(await found('ANN'), [ann.user.id])
      assert.deepEqual(await found('work.EXAMPLE'), [bob.user.id])
      assert.deepEqual(await found('ünal'), [bob.user.id])
      assert.deepEqual(await found('%_'), [percent.user.id])
      assert.deepEqual(await found('100%'), [percent.user.id])
      assert.deepEqual(await found('_'), [percent.user.id])
      assert.deepEqual(await found('\\'), [slash.user.id])
      assert.deepEqual(await found('mail.example'), [ann.user.id, percent.user.id, lookalike.user.id, slash.user.id])
      assert.deepEqual(await found('nobody-has-this'), [])
      const paged = await page(client, staff, '?search=mail.example&page_size=2')
      assert.equal(paged.count, 4)
      assert.match(String(paged.next), /search=mail\.example/)
    })
  })
}
