import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'

const FIXTURE = join(import.meta.dirname, 'fixtures/cleanup-order.ts')

test('when a cleanup throws beside a live server, then every cleanup runs, last made first, the test fails and its process exits', () => {
  // node:test's own t.after hooks skip the rest after a throw: the server would stay open and this run would not end.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--test-reporter=tap', FIXTURE], { encoding: 'utf8', env, timeout: 60_000 })
  assert.equal(run.signal, null, `the test process did not exit by itself:\n${run.stdout}${run.stderr}`)
  assert.equal(run.status, 1, run.stdout + run.stderr)
  const order = run.stdout.match(/cleanup: \w+/g)
  assert.deepEqual(order, ['cleanup: connection', 'cleanup: server', 'cleanup: directory'])
  assert.match(run.stdout, /ENOTEMPTY: directory not empty/)
})
