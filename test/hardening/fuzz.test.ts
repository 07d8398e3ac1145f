import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { Api, assertUserShape, multipart, type Part, type Reply } from './client.js'
import { dataDir, startServer } from './server.js'

// Property-based fuzzing of the seed endpoint, PUT /api/users/{id}: whatever arrives, the answer is 200 or a
// 4xx problem; a 4xx changes nothing; a 200 stores exactly what was sent (trimmed). Reproduce a failure with
// FUZZ_SEED=<the printed seed> (and fast-check's printed path) — the server starts fresh each run.

const SEED = Number(process.env.FUZZ_SEED ?? 20261127)
const JSON_RUNS = Number(process.env.FUZZ_JSON_RUNS ?? 250)
const MULTIPART_RUNS = Number(process.env.FUZZ_MULTIPART_RUNS ?? 150)

const TEXT_FIELDS = ['username', 'email', 'first_name', 'last_name', 'number_phone']
const REAL_FIELDS = [...TEXT_FIELDS, 'avatar', 'id', 'is_staff', 'is_superuser', 'is_active', 'date_joined', 'last_login', 'password']
const JUNK_FIELDS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' username', 'USERNAME', 'first_name[]', 'avatar.url', 'is_staff ']

const fieldName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...REAL_FIELDS) },
  { weight: 1, arbitrary: fc.constantFrom(...JUNK_FIELDS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
)

// Characters chosen to hit the rules: white space the trim removes (and some it must not), control
// characters, lone surrogates, combining marks, emoji, the username/phone/email alphabets, and what
// impersonates (invisible marks, direction overrides, overlays, a Cyrillic о among Latin letters).
const tricky = fc.constantFrom(
  ' ', '\t', '\n', '\r', '\u000b', '\u0000', '\u001f', '\u007f', '\u0085', '\u00a0', '\u200b', '\u2028', '\ufeff',
  '\ud800', '\udfff', '\u0301', '😀', 'é', 'ß', 'Ω', '٣', '@', '.', '+', '-', '_', '"', "'", '<', '%', '\\',
  '\u034f', '\ufe0f', '\u202e', '\u0338', '\u043e',
)
const plain = fc.constantFrom(...'abcxyzABC0123456789')
const text = fc.array(fc.oneof({ weight: 3, arbitrary: plain }, { weight: 2, arbitrary: tricky }, fc.string({ unit: 'binary', maxLength: 1 })), { maxLength: 24 }).map((chars) => chars.join(''))
const pad = fc.constantFrom('', ' ', '\t', '\n ', '  \r\n')
const padded = (inner: fc.Arbitrary<string>) => fc.tuple(pad, inner, pad).map(([before, value, after]) => before + value + after)
const validish = fc.oneof(
  padded(fc.stringMatching(/^[a-z0-9@.+_-]{1,12}$/)), // a username
  padded(fc.stringMatching(/^[a-z0-9]{1,10}$/).map((local) => `${local}@example.org`)), // an email
  padded(fc.stringMatching(/^\+?[0-9]{0,10}$/)), // a phone number
  fc.constantFrom('taken', 'TAKEN', 't\u0251ken', 'tak\u0435n', 'taken@example.com', 'Taken@Example.com'), // someone else's name and address, and lookalikes
  fc.constantFrom(...[9, 10, 11, 149, 150, 151, 199, 200, 201].map((length) => 'x'.repeat(length))), // lengths around the limits
)
const stringValue = fc.oneof({ weight: 3, arbitrary: padded(text) }, { weight: 3, arbitrary: validish })
const scalar = fc.oneof({ weight: 8, arbitrary: stringValue }, fc.integer(), fc.double(), fc.boolean(), fc.constant(null))
const jsonValue = fc.oneof({ weight: 6, arbitrary: scalar }, fc.array(scalar, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), scalar, { maxKeys: 3 }))

const jsonBody = fc.array(fc.tuple(fieldName, jsonValue), { maxLength: 6 })
const formName = fieldName.filter((name) => !/["\r\n]/.test(name))
const multipartBody = fc.record({
  fields: fc.array(fc.tuple(formName, stringValue), { maxLength: 6 }),
  file: fc.option(fc.record({ bytes: fc.uint8Array({ maxLength: 64 }), filename: fc.constantFrom('a.png', '../x.webp', '', 'a b"c.gif') }), { freq: 4 }),
})

test('fuzzing PUT /api/users/{id} on a running server', async (t) => {
  t.diagnostic(`fast-check seed ${SEED} (set FUZZ_SEED to reproduce)`)
  console.log(`fast-check seed ${SEED}`)
  const server = await startServer(t, { data: dataDir(t) })
  const api = new Api(server.url)
  const user = await api.signUp('fuzzed')
  await api.signUp('taken')
  const path = `/api/users/${user.user.id}`
  const outcomes = { cases: 0, stored: 0, refused: 0 }

  /** The invariant every case must keep, given the profile before and the reply. */
  async function check(before: Reply, reply: Reply, expectedOnSuccess: () => Record<string, unknown>) {
    outcomes.cases++
    outcomes[reply.status === 200 ? 'stored' : 'refused']++
    const after = await api.me(user.access)
    assert.ok(reply.status === 200 || (reply.status >= 400 && reply.status < 500), `status ${reply.status}: ${reply.text}`)
    if (reply.status !== 200) {
      assert.match(reply.headers.get('content-type') ?? '', /^application\/problem\+json/)
      assert.equal(reply.json?.status, reply.status)
      assert.equal(after.text, before.text, 'a refused update changed the profile')
      return
    }
    assertUserShape(reply.json)
    assert.deepEqual(after.json, reply.json, 'GET disagrees with what PUT answered')
    assert.deepEqual(after.json, expectedOnSuccess())
  }

  await t.test(`when ${JSON_RUNS} random JSON bodies are PUT, then each is a 200 that stores exactly what was sent or a 4xx that changes nothing`, async () => {
    await fc.assert(
      fc.asyncProperty(jsonBody, async (entries) => {
        const before = await api.me(user.access)
        // Written by hand so that keys like __proto__ and repeated keys reach the server as sent.
        const body = `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',')}}`
        const reply = await api.call(path, { method: 'PUT', token: user.access, body, headers: { 'content-type': 'application/json' } })
        await check(before, reply, () => {
          const expected = { ...before.json }
          // JSON.parse keeps the last of repeated keys.
          for (const [key, value] of new Map(entries)) {
            if (TEXT_FIELDS.includes(key)) expected[key] = (value as string).trim()
            if (key === 'avatar' && value === null) expected.avatar = null
          }
          return expected
        })
      }),
      { seed: SEED, numRuns: JSON_RUNS },
    )
  })

  await t.test(`when ${MULTIPART_RUNS} random multipart bodies are PUT, then the same holds`, async () => {
    await fc.assert(
      fc.asyncProperty(multipartBody, async ({ fields, file }) => {
        const before = await api.me(user.access)
        const parts: Part[] = fields.map(([name, value]) => ({ name, value }))
        if (file) parts.push({ name: 'avatar', filename: file.filename, content: Buffer.from(file.bytes) })
        const { body, headers } = multipart(parts)
        const reply = await api.call(path, { method: 'PUT', token: user.access, body, headers })
        await check(before, reply, () => {
          const expected = { ...before.json }
          for (const [name, value] of fields) {
            // What arrives is the UTF-8 encoding: a lone surrogate becomes U+FFFD on the way.
            if (TEXT_FIELDS.includes(name)) expected[name] = Buffer.from(value).toString().trim()
            if (name === 'avatar' && value === '') expected.avatar = null
          }
          if (file && file.bytes.length > 0) {
            assert.match(reply.json.avatar, /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
            assert.notEqual(reply.json.avatar, before.json.avatar)
            expected.avatar = reply.json.avatar
          }
          return expected
        })
      }),
      { seed: SEED, numRuns: MULTIPART_RUNS },
    )
  })

  t.diagnostic(`fuzz cases run: ${outcomes.cases} (200: ${outcomes.stored}, 4xx: ${outcomes.refused})`)
  console.log(`fuzz cases run: ${outcomes.cases} (200: ${outcomes.stored}, 4xx: ${outcomes.refused}; seed ${SEED})`)
  // A fuzzer whose bodies were all refused (or all accepted) would have proved little.
  assert.ok(outcomes.stored >= 20 && outcomes.refused >= 20, JSON.stringify(outcomes))
  assert.equal((await api.me(user.access)).status, 200)
})
