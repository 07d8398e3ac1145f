import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadConfig } from '../src/config.js'
import { startServer } from './helpers/processes.js'

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

test('when the log goes to a pipe, then every line is JSON with an ISO time, the access line included', async (t) => {
  const server = await startServer(t)
  assert.equal((await fetch(`${server.url}/api/health`)).status, 200)
  await server.stop()
  const lines = server.output().trim().split('\n').map((line) => JSON.parse(line) as { time: unknown; msg: string })
  assert.ok(lines.some((line) => line.msg === 'request'), server.output())
  for (const line of lines) assert.match(String(line.time), ISO)
})

test('when LOG_FORMAT=pretty, then lines are for people: ISO time, level name, message', async (t) => {
  const server = await startServer(t, { env: { LOG_FORMAT: 'pretty' } })
  assert.equal((await fetch(`${server.url}/api/health`)).status, 200)
  await server.stop()
  const lines = server.output().trim().split('\n')
  assert.ok(lines.length >= 3, server.output())
  for (const line of lines) assert.match(line, /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] (INFO|WARN|ERROR): /, line)
  assert.ok(lines.some((line) => /INFO: Server listening at http:\/\/127\.0\.0\.1:\d+/.test(line)))
  assert.ok(lines.some((line) => /INFO: request \{.*"url":"\/api\/health".*"status":200/.test(line)), server.output())
})

test('when LOG_FORMAT is neither json nor pretty, then the configuration is refused', () => {
  assert.equal(loadConfig({ LOG_FORMAT: 'json' }).logFormat, 'json')
  assert.throws(() => loadConfig({ LOG_FORMAT: 'fancy' }), /^Error: LOG_FORMAT="fancy" is invalid: expected one of json, pretty$/)
})
