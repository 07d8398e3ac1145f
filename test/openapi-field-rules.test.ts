import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { GOOD_PASSWORD, testApp, uniqueName } from './helpers/app.js'
import { type OpenApiDocument, schemaCompiler } from './helpers/openapi.js'

// The document's field rules are the server's (issue 13 item 5): a value a fuzzer builds from the documented
// schema is never refused for its format; and every validation message reads like the service's own (item 8).

type Schema = { properties: Record<string, { pattern?: string; maxLength?: number }> }

test('when values are generated from the documented sign-up schema, then the server refuses none of them for their format', async (t) => {
  const { app, client } = await testApp(t)
  const document = (await client.get('/api/openapi.json')).json() as OpenApiDocument
  const signUp = document.paths['/api/auth/sign-up']?.post?.requestBody?.content['application/json']?.schema as Schema
  const compile = schemaCompiler()
  const field = (name: string) => compile({ ...signUp.properties[name] })
  const username = uniqueName('fuzz')
  const session = (
    await client.send('POST', '/api/auth/sign-up', { username, email: `${username}@example.com`, password: GOOD_PASSWORD })
  ).json() as { access: string }

  // What a fuzzer driven by the document produces: strings matching each pattern (fast-check cannot read the
  // email pattern's lookahead, so its local@domain part is used, and fast-check's own emails are added), kept
  // only when the whole documented schema (lengths, format) accepts them.
  const emailPattern = String(signUp.properties.email?.pattern).replace(/^\^\(\?=[^)]*\)/, '^')
  const generators: Record<string, fc.Arbitrary<string>> = {
    email: fc.oneof(fc.stringMatching(new RegExp(emailPattern, 'u')), fc.emailAddress()),
    number_phone: fc.stringMatching(new RegExp(String(signUp.properties.number_phone?.pattern), 'u')),
    first_name: fc.string({ unit: 'binary', maxLength: 30 }),
    last_name: fc.oneof(fc.string({ unit: 'grapheme', maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 })),
    username: fc.stringMatching(new RegExp(String(signUp.properties.username?.pattern), 'u')),
  }
  // Username rules the document states in words because no schema can hold them (one script, marks,
  // invisible characters, confusable or taken names): the only refusals allowed for a generated username.
  const describedOnly = /one script|accents|overlay|invisible|text-direction|already exists|looks like|confusable|taken/i
  const refused: string[] = []
  let tried = 0
  for (const [name, generator] of Object.entries(generators)) {
    const validate = field(name)
    const values = fc.sample(generator, { numRuns: 60, seed: 13 }).filter((value) => validate(value))
    for (const value of values) {
      tried += 1
      const reply = await app.inject({ method: 'PATCH', url: '/api/users/me', headers: { authorization: `Bearer ${session.access}` }, payload: { [name]: value } })
      if (reply.statusCode === 200) continue
      const messages: string[] = reply.json().errors?.[name] ?? [reply.body]
      if (name === 'email' && messages.every((message) => /already exists/.test(message))) continue
      if (name === 'username' && messages.every((message) => describedOnly.test(message))) continue
      refused.push(`${name}=${JSON.stringify(value)}: ${messages.join(' ')}`)
    }
  }
  t.diagnostic(`${tried} documented values sent, ${refused.length} refused for their format`)
  assert.ok(tried > 100, `enough values survived the documented schema: ${tried}`)
  assert.deepEqual(refused, [])
})

test('when a request breaks a schema, then every message reads like the service, never like Ajv', async (t) => {
  const { client } = await testApp(t)
  const username = uniqueName('words')
  const session = (await client.send('POST', '/api/auth/sign-up', { username, email: `${username}@example.com`, password: GOOD_PASSWORD })).json() as {
    access: string
    user: { id: number }
  }
  const cases: [Promise<{ statusCode: number; json: () => any }>, string, string][] = [
    [client.send('POST', '/api/auth/sign-in', { email: 'x'.repeat(300), password: 'x' }), 'email', 'Ensure this field has no more than 254 characters.'],
    [client.send('POST', '/api/auth/sign-in', { email: 5, password: 'x' }), 'email', 'Not a valid string.'],
    [client.send('POST', '/api/auth/sign-in', { email: 'a@b.co' }), 'password', 'This field is required.'],
    [client.send('POST', '/api/auth/sign-in', { email: 'a@b.co', password: 'x', remember: true }), 'remember', 'Unknown field.'],
    [client.send('POST', '/api/auth/sign-out', { all: 'yes' }), 'all', 'Must be a boolean.'],
    [client.send('POST', '/api/auth/sign-up', { username: 'ok_name', email: 'not-an-email', password: GOOD_PASSWORD }), 'email', 'Enter a valid email address.'],
    [client.send('POST', `/api/users/${session.user.id}/password`, { current_password: GOOD_PASSWORD }, session.access), 'new_password', 'This field is required.'],
  ]
  for (const [pending, field, message] of cases) {
    const reply = await pending
    assert.equal(reply.statusCode, 400)
    const errors = reply.json().errors as Record<string, string[]>
    assert.deepEqual(errors[field], [message], JSON.stringify(errors))
    for (const messages of Object.values(errors)) for (const text of messages) assert.doesNotMatch(text, /^must |NOT|pattern/)
  }
})
