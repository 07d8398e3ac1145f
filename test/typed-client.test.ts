import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import openapiTS, { astToString } from 'openapi-typescript'
import ts from 'typescript'
import { GOOD_PASSWORD, testApp, uniqueName } from './helpers/app.js'
import { removeWhenDone } from './helpers/cleanup.js'
import { image } from './helpers/images.js'

// A client generated from the live document (openapi-typescript + openapi-fetch, as README shows) compiles
// without a single cast and does the seed's three requests, GET me and DELETE against the real server.

const ROOT = resolve(import.meta.dirname, '..')

// README's transform: `format: binary` is a Blob in the generated types, so a file needs no cast.
const BLOB = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier('Blob'))

const CLIENT = `import createClient from 'openapi-fetch'
import type { paths } from './portrait.js'

export async function run(baseUrl: string, access: string, id: number, password: string, avatar: Blob) {
  const client = createClient<paths>({ baseUrl })
  const headers = { Authorization: \`Bearer \${access}\` }
  const path = { id: String(id) }

  // The seed's three requests: JSON PUT, multipart PUT with an avatar, a single-field PUT.
  const json = await client.PUT('/api/users/{id}', {
    params: { path },
    headers,
    body: { first_name: 'Zoë', last_name: 'Martin', number_phone: '+331234567' },
  })
  const upload = await client.PUT('/api/users/{id}', {
    params: { path },
    headers,
    body: { avatar, first_name: 'Zoë' },
    bodySerializer(body) {
      const form = new FormData()
      if (body?.avatar instanceof Blob) form.set('avatar', body.avatar, 'avatar.png')
      if (body?.first_name !== undefined) form.set('first_name', body.first_name)
      return form
    },
  })
  const single = await client.PUT('/api/users/{id}', { params: { path }, headers, body: { last_name: 'M.' } })
  const me = await client.GET('/api/users/me', { headers })
  const avatarUrl: string | null | undefined = upload.data?.avatar
  // No query parameter is required (issue 13 item 3); a normal user is refused with a typed problem.
  const list = await client.GET('/api/users', { headers })
  const name = avatarUrl?.split('/').pop() ?? ''
  const picture = await client.GET('/media/avatars/{name}', { params: { path: { name } }, parseAs: 'blob' })
  const wrong = await client.DELETE('/api/users/{id}', { params: { path }, headers, body: { current_password: 'not-it-at-all' } })
  const gone = await client.DELETE('/api/users/{id}', { params: { path }, headers, body: { current_password: password } })
  // Sign-out needs no body (issue 13 item 4).
  const out = await client.POST('/api/auth/sign-out', {})
  return {
    json: { status: json.response.status, firstName: json.data?.first_name },
    upload: { status: upload.response.status, avatarUrl },
    single: { status: single.response.status, lastName: single.data?.last_name, etag: single.response.headers.get('etag') },
    me: { status: me.response.status, username: me.data?.username },
    wrong: { status: wrong.response.status, type: wrong.error?.type, errors: wrong.error?.errors },
    list: { status: list.response.status, type: list.error?.type },
    picture: { status: picture.response.status, type: picture.data?.type, size: picture.data?.size ?? 0 },
    gone: { status: gone.response.status },
    out: { status: out.response.status },
  }
}
`

// Things the types must refuse: numbers for strings, a made-up path. (An unknown field is not among them:
// openapi-fetch infers its options generically, and TypeScript checks excess properties only on a fixed type.)
const WRONG = `import createClient from 'openapi-fetch'
import type { paths } from './portrait.js'
const client = createClient<paths>({ baseUrl: 'http://localhost' })
void client.PUT('/api/users/{id}', { params: { path: { id: '1' } }, body: { first_name: 5 } })
void client.PATCH('/api/users/me', { body: { number_phone: 331234567 } })
void client.GET('/api/users/{id}/nothing', {})
`

function typeErrors(dir: string, file: string): string[] {
  const program = ts.createProgram([join(dir, file)], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    skipLibCheck: true,
  })
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'))
}

test('when a client is generated from the live document, then it type-checks without casts and talks to the service', async (t) => {
  const { app } = await testApp(t)
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' })
  const document = await (await fetch(`${baseUrl}/api/openapi.json`)).json()
  const types = astToString(
    await openapiTS(document, { transform: (schema) => (schema.format === 'binary' ? BLOB : undefined) }),
  )

  // Inside node_modules so that `openapi-fetch` resolves as it would in a client's project.
  mkdirSync(join(ROOT, 'node_modules/.cache'), { recursive: true })
  const dir = mkdtempSync(join(ROOT, 'node_modules/.cache/portrait-typed-client-'))
  removeWhenDone(t, dir)
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}')
  writeFileSync(join(dir, 'portrait.ts'), types)
  writeFileSync(join(dir, 'client.ts'), CLIENT)
  writeFileSync(join(dir, 'wrong.ts'), WRONG)

  assert.deepEqual(typeErrors(dir, 'client.ts'), [])
  assert.doesNotMatch(CLIENT, /\bas\b\s+(unknown|any|never|[A-Z])|<any>|@ts-/, 'no casts')
  const refused = typeErrors(dir, 'wrong.ts')
  assert.ok(refused.length >= 3, `the types refuse what the server refuses: ${JSON.stringify(refused)}`)

  const username = uniqueName('typed')
  const session = (await (
    await fetch(`${baseUrl}/api/auth/sign-up`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, email: `${username}@example.com`, password: GOOD_PASSWORD }),
    })
  ).json()) as { access: string; user: { id: number } }
  const { run } = (await import(join(dir, 'client.ts'))) as { run: (...args: unknown[]) => Promise<Record<string, Record<string, unknown>>> }
  const result = await run(baseUrl, session.access, session.user.id, GOOD_PASSWORD, new Blob([new Uint8Array(await image('png'))], { type: 'image/png' }))
  assert.deepEqual(result.json, { status: 200, firstName: 'Zoë' })
  assert.equal(result.upload?.status, 200)
  assert.match(String(result.upload?.avatarUrl), /\/media\/avatars\/[^/]+\.webp$/)
  assert.equal(result.single?.status, 200)
  assert.equal(result.single?.lastName, 'M.')
  assert.match(String(result.single?.etag), /^"\d+\.\d+"$/)
  assert.deepEqual(result.me, { status: 200, username })
  assert.equal(result.wrong?.status, 400)
  assert.equal(result.wrong?.type, '/problems/validation_failed')
  assert.deepEqual(result.list, { status: 403, type: '/problems/forbidden' })
  assert.equal(result.picture?.status, 200)
  assert.equal(result.picture?.type, 'image/webp')
  assert.ok(Number(result.picture?.size) > 0)
  assert.deepEqual(result.gone, { status: 204 })
  assert.deepEqual(result.out, { status: 204 })
})
