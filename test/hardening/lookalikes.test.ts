import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { DIALECTS, type DialectName } from '../helpers/app.js'
import { freshSchema } from '../helpers/postgres.js'
import { startServer } from '../helpers/processes.js'
import { suite } from '../helpers/suite.js'
import { Api, assertProblem, GOOD_PASSWORD, type Reply, type Session } from './client.js'

// Usernames that impersonate (issue 12 §6), attacked over real sockets on each dialect: invisible and
// direction characters, overlay marks, stacked accents, mixed scripts, and names that merely look like
// someone else's (Unicode TS #39 skeletons), also when their sign-ups race.

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

/** Single-script names whose skeleton is another's: refused whichever came first. */
const LOOKALIKES: [string, string, string][] = [
  ['digits for letters', 'root', 'r00t'],
  ['upper-case I for lower-case l', 'alice', 'aIice'],
  ['rn for m', 'emma', 'ernrna'],
  ['Latin after a Cyrillic name', '\u0440\u043E\u0440', 'pop'],
  ['Latin after a Greek name', '\u0391\u0392\u0395', 'abe'],
]

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
      // Another spelling of each (x for the first letter), so that no sign-up above already holds it.
      for (const [, username] of ATTACKS) patches.push(await patch(api, root, { username: `x${username.slice(1)}` }))
      t.diagnostic(`${ATTACKS.length} impersonating sign-ups: ${tally(signUps)}; PATCHes: ${tally(patches)}`)
      assertRefused(signUps, 'username', labels)
      assertRefused(patches, 'username', labels)
      assert.equal((await api.me(root.access)).text, before, 'a refused PATCH changed the profile')
      // The refusal says what is wrong, naming the character.
      assert.match(assertProblem(signUps[0] as Reply, 400).errors?.username?.[0] ?? '', /invisible character \(U\+034F\)/)
      assert.match(assertProblem(signUps[7] as Reply, 400).errors?.username?.[0] ?? '', /one script/)
    })

    test('when a username looks like an existing one (TS #39 skeleton), then it is refused, whichever came first', async (t) => {
      const api = await server(t, dialect.name)
      const firsts = await Promise.all(LOOKALIKES.map(([, first]) => api.signUp(first)))
      const labels = LOOKALIKES.map(([label, first, second]) => `${label}: ${second} after ${first}`)
      const other = await api.signUp('bystander')
      const patches: Reply[] = []
      for (const [, , second] of LOOKALIKES) patches.push(await patch(api, other, { username: second }))
      await patch(api, other, { username: 'bystander' }) // where a rename went through, the name is free again
      const signUps = await Promise.all(LOOKALIKES.map(([, , second]) => signUp(api, second)))
      t.diagnostic(`${LOOKALIKES.length} lookalike sign-ups: ${tally(signUps)}; PATCHes: ${tally(patches)}`)
      assertRefused(signUps, 'username', labels)
      assertRefused(patches, 'username', labels)
      const upper = await Promise.all(LOOKALIKES.map(([, first]) => patch(api, other, { username: first.toUpperCase() })))
      assertRefused(upper, 'username', LOOKALIKES.map(([, first]) => `${first.toUpperCase()} after ${first}`))
      // A user may still send back their own name, or change its case.
      const [root] = firsts as [Session]
      assert.equal((await patch(api, root, { username: 'root', first_name: 'Ro' })).status, 200)
      const renamed = await patch(api, root, { username: 'Root' })
      assert.equal(renamed.status, 200, renamed.text)
      assert.equal(renamed.json.username, 'Root')
      // …and once a name is given up, its lookalikes are free.
      assert.equal((await patch(api, root, { username: 'groot' })).status, 200)
      const freed = await signUp(api, 'r00t')
      assert.equal(freed.status, 201, freed.text)
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

    test('when confusable usernames are claimed at once by sign-ups and by PATCHes, then exactly one account owns them', async (t) => {
      const api = await server(t, dialect.name)
      // Latin, Cyrillic, Greek, digits, Coptic, capitals: six spellings, one skeleton ("pop").
      const names = ['pop', '\u0440\u043E\u0440', '\u03C1\u03BF\u03C1', 'p0p', '\u2CA3\u2C9F\u2CA3', 'POP']
      const signUps = await Promise.all(names.map((username) => signUp(api, username)))
      const winners = signUps.filter((reply) => reply.status === 201)
      t.diagnostic(`${names.length} racing lookalike sign-ups: ${tally(signUps)}`)
      assert.equal(winners.length, 1, signUps.map((reply) => `${reply.status} ${reply.text.slice(0, 120)}`).join('\n'))
      assertRefused(
        signUps.filter((reply) => reply.status !== 201),
        'username',
        names.filter((_, n) => signUps[n]?.status !== 201),
      )
      const signIns = await Promise.all(names.map((username) => api.call('/api/auth/sign-in', { method: 'POST', json: { username, password: GOOD_PASSWORD } })))
      // pop and POP are one login; every spelling that signs in reaches the one account.
      const owners = new Set(signIns.filter((reply) => reply.status === 200).map((reply) => reply.json.user.id))
      assert.deepEqual([...owners], [winners[0]?.json.user.id], tally(signIns))

      const claimants: Session[] = []
      for (let n = 0; n < names.length; n++) claimants.push(await api.signUp(`claimant${'abcdef'[n]}`))
      const renames = await Promise.all(claimants.map((claimant, n) => patch(api, claimant, { username: `${names[n]}2` })))
      t.diagnostic(`${names.length} racing lookalike PATCHes: ${tally(renames)}`)
      assert.equal(renames.filter((reply) => reply.status === 200).length, 1, renames.map((reply) => `${reply.status} ${reply.text.slice(0, 120)}`).join('\n'))
      assertRefused(
        renames.filter((reply) => reply.status !== 200),
        'username',
        names.filter((_, n) => renames[n]?.status !== 200),
      )
    })
  })
}
