import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import SQLite from 'better-sqlite3'
import { type Kysely, sql } from 'kysely'
import pg from 'pg'
import type { Config } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { migrateTo, migrateToLatest } from '../src/db/migrate.js'
import { GRAM_INDEX, gramToken, PG_GRAMS_EXPRESSION, searchGrams } from '../src/users/search-index.js'
import { SHORT_SEARCH_WINDOW, UsersRepository } from '../src/users/users.repository.js'
import { DIALECTS, type DialectName, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { setFlags } from './helpers/db.js'
import { queryPostgres } from './helpers/postgres.js'
import { startServer } from './helpers/processes.js'
import { suite } from './helpers/suite.js'

interface Page {
  count: number
  count_exact: boolean
  next: string | null
  previous: string | null
  results: { id: number; username: string; first_name: string }[]
}

const SEARCH_COLUMNS = ['username_lower', 'email_lower', 'first_name', 'last_name']

async function list(client: TestClient, staff: Session, query: string): Promise<Page> {
  const response = await client.get(`/api/users${query.replace(/^.*\/api\/users/, '')}`, staff.access)
  assert.equal(response.statusCode, 200, `${query}: ${response.body}`)
  return response.json()
}

/** Every id the API returns for a search, walking keyset pages of 100 (`next` carries `after`). */
async function walk(client: TestClient, staff: Session, search: string): Promise<{ ids: number[]; count: number; exact: boolean }> {
  let url: string | null = `?${new URLSearchParams({ search, page_size: '100', after: '0' })}`
  const ids: number[] = []
  let first: Page | undefined
  while (url) {
    const page = await list(client, staff, url)
    first ??= page
    ids.push(...page.results.map((user) => user.id))
    if (page.next) assert.match(page.next, /after=\d+/)
    url = page.next
  }
  return { ids, count: first?.count ?? 0, exact: first?.count_exact ?? false }
}

/**
 * Today's search exactly as it was before the index: `lower(column) like '%…%'` over every row, on a
 * connection of its own (PostgreSQL told not to use any index), ids in order.
 */
async function plainScan(config: Config, search: string): Promise<number[]> {
  const pattern = `%${search.trim().toLowerCase().replace(/[\\%_]/g, (char) => `\\${char}`)}%`
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length), { readonly: true })
    try {
      db.function('unicode_lower', { deterministic: true }, (value) => (typeof value === 'string' ? value.toLowerCase() : value))
      const where = SEARCH_COLUMNS.map((column) => `unicode_lower(${column}) like ? escape '\\'`).join(' or ')
      const rows = db.prepare(`select id from users where ${where} order by id`).all(...SEARCH_COLUMNS.map(() => pattern))
      return (rows as { id: number }[]).map((row) => row.id)
    } finally {
      db.close()
    }
  }
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    options: `-c search_path=${config.databaseSchema} -c enable_bitmapscan=off -c enable_indexscan=off`,
  })
  await client.connect()
  try {
    const where = SEARCH_COLUMNS.map((column) => `lower(${column}) like $1 escape '\\'`).join(' or ')
    const { rows } = await client.query<{ id: number }>(`select id from users where ${where} order by id`, [pattern])
    return rows.map((row) => row.id)
  } finally {
    await client.end()
  }
}

// Pieces of names: case pairs, German ß/ẞ, Turkish dotted and dotless I, Greek final sigma, Kelvin and
// ohm signs, titlecase digraphs, a ligature, combining accents, an emoji, LIKE's and FTS5's special characters.
const PIECES = [
  'an', 'na', 'Ol', 'ga', 'Ünal', 'ünal', 'ÜNAL', 'Unal', 'ß', 'ẞ', 'SS', 'ss', 'Straße', 'STRASSE', 'İs', 'is', 'IS', 'ı', 'I', 'i',
  'tan', 'bul', 'ΟΔΥΣΣΕΥΣ', 'σς', 'Σ', 'ευς', 'Ǆ', 'ǅ', 'ǆ', '\u212A', 'k', '\u2126', 'ω', 'ﬁ', 'fi', 'é', 'e\u0301', 'É', '😀', '_',
  '%', '\\', '"', '*', ' ', 'x', 'zz', '12', 'Ĳ', 'ŉ', 'ǰ',
]

function generator(seed: number) {
  let state = seed
  const next = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    return state / 2 ** 32
  }
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T
  const words = (count: number) => Array.from({ length: count }, () => pick(PIECES)).join('')
  return { next, pick, words }
}

/** `count` users straight through the repository (its insert is the path every write takes), on a connection of its own. */
async function insertUsers(
  config: Config,
  count: number,
  options: { idGapAfter?: number } = {},
): Promise<{ username: string; email: string; first_name: string; last_name: string }[]> {
  const db = createDb(config)
  const users = new UsersRepository(db.dialect)
  const random = generator(7)
  const made: { username: string; email: string; first_name: string; last_name: string }[] = []
  try {
    await db.kysely.transaction().execute(async (trx) => {
      for (let i = 0; i < count; i++) {
        if (i === options.idGapAfter && db.dialect === 'postgres') {
          // Ids far apart (as after many deletions): the short search's first step (SHORT_SEARCH_WINDOW ids
          // walked in order) then covers only some users, and its second step (the gram index) the others.
          await sql`select setval(pg_get_serial_sequence('users', 'id'), (select max(id) from users) + ${3 * SHORT_SEARCH_WINDOW})`.execute(trx)
        }
        const fields = {
          username: `u${String(i).padStart(5, '0')}-${random.words(2).replace(/\s/g, '')}`,
          email: `e${i}.${random.words(1).replace(/[\s"\\%*]/g, '')}@Example.com`,
          first_name: random.words(1 + Math.floor(random.next() * 3)),
          last_name: random.words(1 + Math.floor(random.next() * 3)),
        }
        await users.insert(trx, {
          ...fields,
          password_hash: 'unused',
          number_phone: '',
          avatar: null,
          date_joined: new Date().toISOString(),
          last_login: null,
          is_active: db.dialect === 'sqlite' ? 1 : true,
          is_staff: db.dialect === 'sqlite' ? 0 : false,
          is_superuser: db.dialect === 'sqlite' ? 0 : false,
        })
        made.push(fields)
      }
    })
  } finally {
    await db.destroy()
  }
  return made
}

async function staffApp(t: Parameters<typeof testApp>[0], dialect: DialectName, overrides: Partial<Config> = {}) {
  const { client, config } = await testApp(t, dialect, overrides)
  const staff = await client.signUp({ username: 'staffer', first_name: 'Stäff', last_name: 'Person' })
  await setFlags(config, staff.user.id, { is_staff: true })
  return { client, config, staff }
}

for (const dialect of DIALECTS) {
  suite(`user search by index (${dialect.name})`, dialect.skip, () => {
    test('when staff searches a few thousand generated users, then every query returns what the plain scan returns', async (t) => {
      const { client, config, staff } = await staffApp(t, dialect.name, { usersExactCountLimit: 1_000_000 })
      const made = await insertUsers(config, 3000, { idGapAfter: 1500 })
      const random = generator(11)
      const queries = [
        'zzzz', 'ünal', 'ÜNAL', 'Ünal', 'unal', 'ß', 'ẞ', 'ss', 'straße', 'STRASSE', 'strasse', 'İs', 'i\u0307s', 'is', 'IS', 'ı', 'I', 'i',
        'istan', 'İSTAN', 'ΟΔΥΣ', 'οδυσσευς', 'ευς', 'ΕΥΣ', 'σς', 'ǅ', 'ǆǆ', '\u212A', 'k', 'ω\u2126', 'ﬁ', 'fi', 'é', 'e\u0301', '😀',
        '😀😀', '_', '%', '\\', '"', '*', 'a"b', '""', '%_', ' x', 'x x', 'example', 'EXAMPLE.COM', 'u00042', 'u0004', 'stäff', 'N', 'na',
      ]
      for (let i = 0; i < 25; i++) {
        const user = random.pick(made)
        const field = random.pick([user.username, user.email, user.first_name, user.last_name])
        const chars = [...field]
        const start = Math.floor(random.next() * chars.length)
        const piece = chars.slice(start, start + 1 + Math.floor(random.next() * 6)).join('')
        queries.push(random.next() < 0.3 ? piece.toUpperCase() : piece)
      }
      for (const search of queries) {
        const expected = await plainScan(config, search)
        const got = await walk(client, staff, search)
        assert.deepEqual(got.ids, expected, `search ${JSON.stringify(search)}`)
        assert.deepEqual([got.count, got.exact], [expected.length, true], `count for ${JSON.stringify(search)}`)
      }
      if (dialect.name === 'sqlite') {
        // Short searches read the gram table, which holds every user.
        const db = new SQLite(config.databaseUrl.slice('sqlite:'.length), { readonly: true })
        try {
          const plan = db.prepare(`explain query plan select rowid from ${GRAM_INDEX} where ${GRAM_INDEX} match ?`).all('"61"') as { detail: string }[]
          assert.match(plan.map((row) => row.detail).join('\n'), /VIRTUAL TABLE INDEX/)
          assert.equal((db.prepare(`select count(*) as n from ${GRAM_INDEX}`).get() as { n: number }).n, made.length + 1)
        } finally {
          db.close()
        }
      }
      // The generated data really exercises the interesting cases.
      assert.ok((await plainScan(config, 'ünal')).length > 100)
      assert.ok((await plainScan(config, 'i\u0307s')).length > 10)
      // One- and two-character searches with a page, a count cap and an offset inside and beyond the first step.
      for (const search of ['a', 'N', 'ß', 'ı', '😀', 'zz', 'x', '_']) {
        const expected = await plainScan(config, search)
        assert.ok(expected.length > 30, search)
        for (const [query, ids] of [
          [`?search=${encodeURIComponent(search)}&page_size=7&page=3`, expected.slice(14, 21)],
          [`?search=${encodeURIComponent(search)}&page_size=5&after=${expected[expected.length - 12]}`, expected.slice(-11, -6)],
        ] as const) {
          const page = await list(client, staff, query)
          assert.deepEqual(page.results.map((user) => user.id), ids, query)
          assert.deepEqual([page.count, page.count_exact], [expected.length, true], query)
        }
      }
      if (dialect.name === 'postgres') {
        // The index serves the search (on this small table the planner prefers a scan unless told not to).
        const client = new pg.Client({ connectionString: config.databaseUrl, options: `-c search_path=${config.databaseSchema} -c enable_seqscan=off` })
        await client.connect()
        try {
          const where = SEARCH_COLUMNS.map((column) => `lower(${column}) like '%grace12%'`).join(' or ')
          const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain select id from users where ${where}`)
          const plan = rows.map((row) => row['QUERY PLAN']).join('\n')
          for (const column of SEARCH_COLUMNS) assert.match(plan, new RegExp(`users_${column}_trgm`))
          const short = await client.query<{ 'QUERY PLAN': string }>(`explain select id from users where ${PG_GRAMS_EXPRESSION} @> array['zq']`)
          assert.match(short.rows.map((row) => row['QUERY PLAN']).join('\n'), new RegExp(`Bitmap Index Scan on ${GRAM_INDEX}`))
        } finally {
          await client.end()
        }
      }
    })

    test('when users are created, renamed, deleted, or a write fails or rolls back, then searches follow the table', async (t) => {
      const { client, config, staff } = await staffApp(t, dialect.name)
      const ids = async (search: string) => (await walk(client, staff, search)).ids
      const ada = await client.signUp({ username: 'adalovelace', first_name: 'Ada', last_name: 'Lövelace' })
      assert.deepEqual(await ids('lövel'), [ada.user.id])
      assert.deepEqual(await ids('LÖVEL'), [ada.user.id])
      assert.deepEqual(await ids('öv'), [ada.user.id])
      assert.deepEqual(await ids('Ö'), [ada.user.id])
      const renamed = await client.send('PATCH', '/api/users/me', { last_name: 'Byron', username: 'countess', email: 'countess@example.org' }, ada.access)
      assert.equal(renamed.statusCode, 200, renamed.body)
      assert.deepEqual(await ids('lövel'), [])
      assert.deepEqual(await ids('adalove'), [])
      assert.deepEqual(await ids('byron'), [ada.user.id])
      assert.deepEqual(await ids('countess'), [ada.user.id])
      assert.deepEqual(await ids('öv'), [])
      assert.deepEqual(await ids('yr'), [ada.user.id])

      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      const users = new UsersRepository(db.dialect)
      // A transaction that rolls back after its update leaves the index as it was.
      await assert.rejects(
        db.kysely.transaction().execute(async (trx) => {
          await users.update(trx, ada.user.id, { first_name: 'Zenobia' })
          throw new Error('roll back')
        }),
        /roll back/,
      )
      // An update that fails in the database (its email belongs to someone else) changes nothing either.
      await assert.rejects(users.update(db.kysely, ada.user.id, { first_name: 'Zenobia', email: staff.user.email }))
      assert.deepEqual(await ids('zenobia'), [])
      assert.deepEqual(await ids('zé'), [])
      assert.deepEqual(await ids('byron'), [ada.user.id])

      const deleted = await client.send('DELETE', `/api/users/${ada.user.id}`, { current_password: GOOD_PASSWORD }, ada.access)
      assert.equal(deleted.statusCode, 204, deleted.body)
      assert.deepEqual(await ids('byron'), [])
      assert.deepEqual(await ids('countess'), [])
      assert.deepEqual(await ids('yr'), [])
      assert.deepEqual(await ids('staff'), [staff.user.id])
      assert.deepEqual(await ids('ä'), [staff.user.id])
    })

    test('when staff pages with after, then pages follow ids, next carries after, and a bad after is a 400', async (t) => {
      const { client, staff } = await staffApp(t, dialect.name)
      const all = [staff.user.id]
      for (let i = 0; i < 7; i++) all.push((await client.signUp({ username: `walker${i}` })).user.id)
      const first = await list(client, staff, '?page_size=3&after=0')
      assert.deepEqual(first.results.map((user) => user.id), all.slice(0, 3))
      assert.equal(first.previous, null)
      assert.match(String(first.next), new RegExp(`after=${all[2]}`))
      const second = await list(client, staff, first.next as string)
      assert.deepEqual(second.results.map((user) => user.id), all.slice(3, 6))
      const third = await list(client, staff, second.next as string)
      assert.deepEqual([third.results.map((user) => user.id), third.next], [all.slice(6), null])
      assert.equal(third.count, 8)
      // With a search, on the indexed path and on the short (scan) path.
      const walkers = await list(client, staff, `?search=WALKER&page_size=4&after=${all[2]}`)
      assert.deepEqual(walkers.results.map((user) => user.id), all.slice(3, 7))
      assert.deepEqual([walkers.count, walkers.count_exact], [7, true])
      assert.deepEqual((await list(client, staff, `?search=r6&after=${all[3]}`)).results.map((user) => user.id), [all[7]])
      // page numbers still work, and their links stay page links.
      const byPage = await list(client, staff, '?page=2&page_size=3')
      assert.deepEqual(byPage.results.map((user) => user.id), all.slice(3, 6))
      assert.match(String(byPage.next), /page=3/)
      assert.doesNotMatch(String(byPage.next), /after=/)
      for (const bad of ['x', '-1', '1.5', '', '9999999999999999']) {
        const problem = problemOf(await client.get(`/api/users?after=${bad}`, staff.access), 400)
        assert.ok(problem.errors?.after, bad)
      }
    })

    test('when more users match than the exact-count limit, then count stops there with count_exact false', async (t) => {
      const { client, staff } = await staffApp(t, dialect.name, { usersExactCountLimit: 5 })
      for (let i = 0; i < 8; i++) await client.signUp({ username: `member${i}`, first_name: i < 2 ? 'Rare' : 'Common' })
      const everyone = await list(client, staff, '?page_size=2')
      assert.deepEqual([everyone.count, everyone.count_exact], [5, false])
      assert.ok(everyone.next)
      const common = await list(client, staff, '?search=common&page=3&page_size=2')
      assert.deepEqual([common.count, common.count_exact, common.results.length], [5, false, 2])
      assert.equal(common.next, null)
      assert.match(String(common.previous), /page=2/)
      assert.deepEqual((await list(client, staff, '?search=me&page_size=2')).count_exact, false)
      const rare = await list(client, staff, '?search=rare')
      assert.deepEqual([rare.count, rare.count_exact, rare.results.length], [2, true, 2])
      const five = await list(client, staff, '?search=member&after=3')
      assert.equal(five.count_exact, false)
      const spec = (await client.get('/api/docs/json')).json()
      const listing = (spec.paths['/api/users/'] ?? spec.paths['/api/users']).get
      assert.ok(listing.parameters.some((parameter: { name: string }) => parameter.name === 'after'))
      assert.equal(listing.responses['200'].content['application/json'].schema.properties.count_exact.type, 'boolean')
    })
  })
}

for (const dialect of DIALECTS) {
  suite(`migration 0011: the gram index (${dialect.name})`, dialect.skip, () => {
    test('when a database with users is upgraded, then one- and two-character searches find them', async (t) => {
      const { client, config, staff } = await staffApp(t, dialect.name)
      // Back to the schema before 0011 (the downs of 0011 and of every later migration), a user written meanwhile, then up again.
      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      const kysely = db.kysely as unknown as Kysely<any>
      await migrateTo(kysely, '0010_session_activity')
      const zq = await client.signUp({ username: 'zqwerty', first_name: 'Żaneta' })
      await migrateToLatest(kysely)
      const ids = async (search: string) => (await walk(client, staff, search)).ids
      assert.deepEqual(await ids('zq'), [zq.user.id])
      assert.deepEqual(await ids('ż'), [zq.user.id])
      assert.deepEqual(await ids('Ża'), [zq.user.id])
      assert.deepEqual(await ids('ä'), [staff.user.id])
    })

    test('searchGrams spells every one- and two-character substring once, each column on its own', () => {
      assert.deepEqual(searchGrams('zq', null, 'Ab').split(' ').sort(), [gramToken('zq'), gramToken('z'), gramToken('q'), gramToken('A'), gramToken('b'), gramToken('Ab')].sort())
      assert.equal(gramToken('😀ß'), '1f600xdf')
      assert.ok(!searchGrams('ab', 'cd').split(' ').includes(gramToken('bc')))
    })
  })
}

suite('user search without pg_trgm (postgres)', DIALECTS[1]?.skip ?? 'no postgres', () => {
  test('when the role may not create extensions, then the server warns at start and searches scan, with the same results', async (t) => {
    const base = process.env.TEST_DATABASE_URL as string
    const name = `portrait_notrgm_${randomBytes(5).toString('hex')}`
    await queryPostgres(`create role ${name} login`)
    await queryPostgres(`create database ${name}`)
    const url = new URL(base)
    url.pathname = `/${name}`
    await queryPostgres(`create schema app authorization ${name}`, [], { url: url.toString() })
    deferCleanup(t, async () => {
      await queryPostgres(`drop database if exists ${name} with (force)`)
      await queryPostgres(`drop role if exists ${name}`)
    })
    const asRole = new URL(url)
    asRole.username = name
    const server = await startServer(t, { env: { DATABASE_URL: asRole.toString(), DATABASE_SCHEMA: 'app' } })
    assert.match(server.output(), /pg_trgm is not available/)
    const signUp = async (username: string, first_name: string) => {
      const response = await fetch(`${server.url}/api/auth/sign-up`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, email: `${username}@example.com`, password: GOOD_PASSWORD, first_name }),
      })
      assert.equal(response.status, 201)
      return (await response.json()) as Session
    }
    const staff = await signUp('staffer', 'Ünal')
    const other = await signUp('another', 'ÜNALDI')
    await signUp('third', 'Nobody')
    await queryPostgres('update users set is_staff = true where id = $1', [staff.user.id], { url: url.toString(), schema: 'app' })
    const indexes = await queryPostgres(`select indexname from pg_indexes where schemaname = 'app' and indexname like '%trgm'`, [], {
      url: url.toString(),
    })
    assert.deepEqual(indexes, [])
    const response = await fetch(`${server.url}/api/users?search=%C3%BCnal`, { headers: { authorization: `Bearer ${staff.access}` } })
    const page = (await response.json()) as Page
    assert.deepEqual(
      page.results.map((user) => user.id),
      [staff.user.id, other.user.id],
    )
    assert.deepEqual([page.count, page.count_exact], [2, true])
  })
})
