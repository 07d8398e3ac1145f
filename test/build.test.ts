import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { startServer } from './helpers/processes.js'

const ROOT = join(import.meta.dirname, '..')

test('when the sources are built as npm start builds them, then the compiled server serves the API and the web page', async (t) => {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.equal(scripts.prestart, 'node scripts/build.mjs')
  assert.match(scripts.start ?? '', /\bnode\b.* dist\/server\.js$/)

  // Inside the repository, so that the compiled modules resolve node_modules as dist/ does.
  mkdirSync(join(ROOT, 'node_modules', '.cache'), { recursive: true })
  const out = mkdtempSync(join(ROOT, 'node_modules', '.cache', 'portrait-build-'))
  t.after(() => rmSync(out, { recursive: true, force: true }))
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), out], { encoding: 'utf8' })
  assert.equal(built.status, 0, built.stderr)

  // As a fresh `npm start` runs: no JWT_SECRET.
  const { url } = await startServer(t, { nodeArgs: [join(out, 'server.js')], env: { JWT_SECRET: '' } })
  const page = await fetch(`${url}/`)
  assert.equal(page.status, 200)
  assert.match(await page.text(), /<script type="module" src="\/?app\.js"/)
  const script = await fetch(`${url}/app.js`)
  assert.equal(script.status, 200)
  assert.match(script.headers.get('content-type') ?? '', /javascript/)
  const docs = await fetch(`${url}/api/openapi.json`)
  assert.equal(docs.status, 200)
  // Its tokens are EdDSA, under the key the JWKS publishes.
  const signUp = await fetch(`${url}/api/auth/sign-up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'builder', email: 'builder@example.com', password: 'correct-Horse-battery-9' }),
  })
  assert.equal(signUp.status, 201)
  const { access } = (await signUp.json()) as { access: string }
  const header = JSON.parse(Buffer.from(access.split('.')[0] as string, 'base64url').toString())
  assert.equal(header.alg, 'EdDSA')
  const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }
  assert.deepEqual(jwks.keys.map((key) => key.kid), [header.kid])
})
