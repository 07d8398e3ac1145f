import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { deferCleanup } from '../helpers/cleanup.js'
import { ROOT, startServer } from './server.js'

// The bounded soak (`npm run test:soak`, run by .ci/run after `npm test`): SOAK_SECONDS of mixed traffic from a
// second process at a fixed concurrency, with sign-ins hashing at the real OWASP argon2 cost all along.

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 60)
const MIB = 1024 * 1024
// A leak check, not a performance bound: steady traffic must not keep growing the heap by this much.
const RSS_GROWTH_LIMIT = 150 * MIB

// `npm test` runs every test/hardening/*.test.ts file; the soak has its own script and CI step.
const skip = process.env.npm_lifecycle_event === 'test' ? 'the soak runs in `npm run test:soak`' : false

test(`when ${SOAK_SECONDS} s of mixed traffic and a sign-in storm hit the server, then nothing fails, nothing is lost and memory stays flat`, { skip, timeout: (SOAK_SECONDS + 180) * 1000 }, async (t) => {
  const server = await startServer(t)
  const load = spawn(process.execPath, ['--import', 'tsx', 'test/hardening/soak-load.ts', server.url, String(SOAK_SECONDS)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  deferCleanup(t, () => load.kill('SIGKILL'))
  let rssStart = 0
  let summary: Record<string, any> | undefined
  for await (const line of createInterface({ input: load.stdout })) {
    const event = JSON.parse(line)
    if (event.event === 'warm') rssStart = server.rssBytes()
    if (event.event === 'done') summary = event
  }
  const [code] = await once(load, 'exit').catch(() => [load.exitCode])
  const rssEnd = server.rssBytes()
  assert.ok(summary, `the load process exited with ${code} and no summary`)
  const report = {
    ...summary,
    seconds: SOAK_SECONDS,
    rssStartMiB: Math.round(rssStart / MIB),
    rssEndMiB: Math.round(rssEnd / MIB),
  }
  t.diagnostic(`soak: ${JSON.stringify(report)}`)
  console.log(`soak: ${JSON.stringify(report)}`)

  assert.equal(summary.fiveXx, 0, `5xx answers: ${JSON.stringify(summary.byStatus)}`)
  assert.equal(summary.networkErrors, 0, 'requests failed without an answer')
  assert.equal(summary.lostWrites, 0, 'an acknowledged PATCH was not what GET returned at the end')
  assert.ok(summary.meDuringStorm > 0, 'GET /api/users/me never answered during the sign-in storm')
  assert.ok(rssStart > 0 && rssEnd < rssStart + RSS_GROWTH_LIMIT, `RSS grew from ${report.rssStartMiB} MiB to ${report.rssEndMiB} MiB`)
  assert.equal(await server.stop(), 0)
})
