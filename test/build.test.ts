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

  const { url } = await startServer(t, { nodeArgs: [join(out, 'server.js')] })
  const page = await fetch(`${url}/`)
  assert.equal(page.status, 200)
  assert.match(await page.text(), /<script type="module" src="\/?app\.js"/)
  const script = await fetch(`${url}/app.js`)
  assert.equal(script.status, 200)
  assert.match(script.headers.get('content-type') ?? '', /javascript/)
  const docs = await fetch(`${url}/api/openapi.json`)
  assert.equal(docs.status, 200)
})
