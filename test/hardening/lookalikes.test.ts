import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { DIALECTS, type DialectName } from '../helpers/app.js'
import { freshSchema } from '../helpers/postgres.js'
import { startServer } from '../helpers/processes.js'
import { suite } from '../helpers/suite.js'
import { Api, assertProblem, GOOD_PASSWORD, type Reply, type Session } from './client.js'

// Usernames that impersonate (issue 12 §6), attacked over real sockets on each dialect: invisible and
// direction characters, overlay marks, stacked accents and mixed scripts.

/** 149 different combining accents on one letter (the "149 stacked accents"). */
const STACKED = `r${Array.from({ length: 149 }, (_, n) => String.fromCodePoint(0x300 + (n % 0x34))).join('')}`

/** Every one of these signed up next to `root` before the fix. */
const ATTACKS: [string, string][] = [
  ['combining grapheme joiner U+034F', 'root\u034F'],
  ['variation selector-16 U+FE0F', 'root\uFE0F'],
  ['Mongolian free variation selector U+180B', 'roo\u180Bt'],
  ['Hangul filler U+3164 (a letter that shows nothing)', 'root\u3164'],
  ['long solidus overlay U+0338', 'ro\u0338ot'],
  ['long vertical line overlay U+20D2', 'roo\u20D2t'],
  ['enclosing circle U+20DD', 'root\u20DD'],
  ['Cyrillic о among Latin letters', 'r\u043E\u043Et'],
  ['Greek ο among Latin letters', 'ro\u03BFt'],
  ['Latin, Cyrillic and Greek mixed', 'p\u0430y\u03C1al'],
  ['149 stacked accents', STACKED],
  ['five accents on one letter', 'roo\u0300\u0301\u0302\u0303\u0304t'],
  ['one accent twice on one letter', 'ro\u0301\u0301ot'],
  ['right-to-left override U+202E', 'root\u202E'],
]

/** Spellings that must keep working. */
const ALLOWED = ['José.Núñez', '山田_太郎', 'Ünïcödé', 'ada', 'user@host', '20261201', 'a.b+c-d_e']

/** A server of its own on `dialect`: a fresh SQLite file, or a fresh PostgreSQL schema. */
async function server(t: TestContext, dialect: DialectName): Promise<Api> {
  const env: Record<string, string> =
    dialect === 'postgres' ? { DATABASE_URL: process.env.TEST_DATABASE_URL as string, DATABASE_SCHEMA: await freshSchema(t) } : {}
  return new Api((await startServer(t, { env })).url)
}

function signUp(api: Api, username: string, extra: Record<string, unknown> = {}, email = `n${Math.random().toString(36).slice(2)}@example.com`) {
  return api.call('/api/auth/sign-up', { method: 'POST', json: { username, email, password: GOOD_PASSWORD, ...extra } })
}

function patch(api: Api, me: Session, fields: Record<string, unknown>) {
  return api.call(`/api/users/${me.user.id}`, { method: 'PATCH', token: me.access, json: fields })
}

/** "14×400": how many replies had each status, for the test's diagnostics and failure messages. */
function tally(replies: Reply[]): string {
  const counts = new Map<number, number>()
  for (const reply of replies) counts.set(reply.status, (counts.get(reply.status) ?? 0) + 1)
  return [...counts].map(([status, count]) => `${count}×${status}`).join(', ')
}

function assertRefused(replies: Reply[], field: string, labels: string[]): void {
  const wrong = replies.flatMap((reply, n) => (reply.status === 400 && assertProblem(reply, 400).errors?.[field] ? [] : [`${labels[n]}: ${reply.status} ${reply.text.slice(0, 160)}`]))
  assert.deepEqual(wrong, [], `${tally(replies)}; not refused on ${field}:\n${wrong.join('\n')}`)
}

for (const dialect of DIALECTS) {
  suite(`usernames that impersonate (${dialect.name}, real HTTP)`, dialect.skip, () => {
    test('when usernames carry invisible characters, overlays, stacked accents or mixed scripts, then sign-up and PATCH refuse them', async (t) => {
      const api = await server(t, dialect.name)
      const root = await api.signUp('root')
      const labels = ATTACKS.map(([label]) => label)
      const signUps = await Promise.all(ATTACKS.map(([, username]) => signUp(api, username)))
      const before = (await api.me(root.access)).text
      const patches: Reply[] = []
      for (const [, username] of ATTACKS) patches.push(await patch(api, root, { username }))
      t.diagnostic(`${ATTACKS.length} impersonating sign-ups: ${tally(signUps)}; PATCHes: ${tally(patches)}`)
      assertRefused(signUps, 'username', labels)
      assertRefused(patches, 'username', labels)
      assert.equal((await api.me(root.access)).text, before, 'a refused PATCH changed the profile')
      // The refusal says what is wrong, naming the character.
      assert.match(assertProblem(signUps[0] as Reply, 400).errors?.username?.[0] ?? '', /invisible character \(U\+034F\)/)
      assert.match(assertProblem(signUps[7] as Reply, 400).errors?.username?.[0] ?? '', /one script/)
    })

    test('when the allowed spellings sign up, and names carry direction overrides or invisible characters, then names are judged apart', async (t) => {
      const api = await server(t, dialect.name)
      const accepted = await Promise.all(ALLOWED.map((username) => signUp(api, username)))
      t.diagnostic(`${ALLOWED.length} allowed sign-ups: ${tally(accepted)}`)
      assert.deepEqual(
        accepted.map((reply) => reply.status),
        ALLOWED.map(() => 201),
        accepted.map((reply) => reply.text.slice(0, 160)).join('\n'),
      )
      assert.deepEqual(
        accepted.map((reply) => reply.json.user.username),
        ALLOWED,
      )
      const me = accepted[0]?.json as Session
      for (const username of ['Zoë.Smith', '田中_taro', 'Пётр', 'たなか_Tanaka']) {
        const reply = await patch(api, me, { username })
        assert.equal(reply.status, 200, `${username}: ${reply.text}`)
      }

      const rlo = await signUp(api, 'ann', { first_name: 'Ann\u202Egro' })
      const problem = assertProblem(rlo, 400)
      assert.match(problem.errors?.first_name?.[0] ?? '', /Text-direction control characters \(U\+202E\)/)
      assert.deepEqual(Object.keys(problem.errors ?? {}), ['first_name'])
      for (const [field, value] of [
        ['first_name', 'Ann\u202Egro'],
        ['last_name', '\u202Dtxe.exe'],
        ['last_name', 'Lee\u2067'],
        ['first_name', 'Zo\u200Be'],
        ['first_name', 'A\u00ADnn'],
        ['last_name', '\u200DLee'],
      ] as const) {
        assertRefused([await patch(api, me, { [field]: value })], field, [`${field} ${JSON.stringify(value)}`])
      }
      // Joiners and variation selectors that shape the character before them stay (Persian, emoji).
      const shaped = await patch(api, me, { first_name: 'مهر\u200Cآفرین', last_name: '❤\uFE0F \u{1F468}\u200D\u{1F469}\u200D\u{1F467}' })
      assert.equal(shaped.status, 200, shaped.text)
    })
  })
}
