// What a hung PostgreSQL does to requests and to a SIGTERM, with the settings as configured (defaults unless set):
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node --import tsx bench/pg-stall.ts
// A TCP proxy of this script's own stalls (holds every byte) between the server and that PostgreSQL; the
// PostgreSQL itself is never touched. Prints how long requests took to be refused and how long SIGTERM took.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { TestContext } from 'node:test'
import pg from 'pg'
import { stallProxy } from '../test/helpers/stall-proxy.js'

const target = process.env.TEST_DATABASE_URL
if (!target) throw new Error('set TEST_DATABASE_URL')
const cleanups: (() => Promise<void>)[] = []
const schema = `portrait_bench_stall_${process.pid}`
const admin = new pg.Client({ connectionString: target })
await admin.connect()
await admin.query(`CREATE SCHEMA ${schema}`)
const dir = mkdtempSync(join(tmpdir(), 'portrait-stall-'))
let child: ChildProcess | undefined
try {
  // stallProxy registers its close as a test's after hook would; here it is run at the end.
  const proxy = await stallProxy({ after: (fn: () => Promise<void>) => cleanups.push(fn) } as unknown as TestContext, target)
  const env = {
    ...process.env,
    DATABASE_URL: proxy.url,
    DATABASE_SCHEMA: schema,
    DATA_DIR: dir,
    MEDIA_ROOT: join(dir, 'media'),
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'info',
    JWT_SECRET: 'bench-secret-that-is-long-enough-for-hs256-0123456789',
  }
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: resolve(import.meta.dirname, '..'), env, stdio: ['ignore', 'pipe', 'pipe'] })
  child = server
  let output = ''
  server.stdout?.on('data', (chunk: Buffer) => {
    output += chunk
  })
  server.stderr?.on('data', (chunk: Buffer) => {
    output += chunk
  })
  let url: string | undefined
  while (!url) {
    url = /Server listening at (http:\/\/[^\s"]+)/.exec(output)?.[1]
    if (server.exitCode !== null) throw new Error(output)
    await new Promise((wait) => setTimeout(wait, 50))
  }
  const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const users: { access: string }[] = []
  for (let i = 0; i < 20; i++) {
    const response = await fetch(`${url}/api/auth/sign-up`, json({ username: `stall${i}`, email: `stall${i}@example.com`, password: 'correct-Horse-battery-9' }))
    users.push((await response.json()) as { access: string })
  }

  proxy.stall()
  const timed = async (path: string, init: RequestInit = {}) => {
    const started = Date.now()
    const response = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(60_000) })
    const type = response.headers.get('content-type') ?? ''
    await response.arrayBuffer()
    return { status: response.status, problem: type.startsWith('application/problem+json'), retryAfter: response.headers.has('retry-after'), ms: Date.now() - started }
  }
  const requests = users.flatMap(({ access }, i) => [
    timed('/api/users/me', { headers: { authorization: `Bearer ${access}` } }),
    timed('/api/users/me', { method: 'PATCH', headers: { authorization: `Bearer ${access}`, 'content-type': 'application/json' }, body: JSON.stringify({ first_name: `s${i}` }) }),
  ])
  const health = await timed('/api/health')
  const answers = await Promise.all(requests)
  const ms = answers.map((answer) => answer.ms).sort((a, b) => a - b)
  const counts = new Map<number, number>()
  for (const answer of answers) counts.set(answer.status, (counts.get(answer.status) ?? 0) + 1)
  const statuses = [...counts].map(([status, count]) => `${count}×${status}`)
  console.log(`during the stall: ${answers.length} requests → ${statuses.join(', ')}; problem+json with Retry-After: ${answers.filter((a) => a.problem && a.retryAfter).length}`)
  console.log(`  time to answer: min ${ms[0]} ms, median ${ms[ms.length >> 1]} ms, max ${ms.at(-1)} ms; /api/health ${health.status} in ${health.ms} ms`)
  const errorLines = output.split('\n').filter((line) => line.includes('"level":50')).length
  const warnLines = output.split('\n').filter((line) => line.includes('"level":40')).length
  console.log(`  log: ${errorLines} error-level lines, ${warnLines} warn-level lines`)

  // SIGTERM with a request waiting on the hung database.
  const waiting = timed('/api/users/me', { headers: { authorization: `Bearer ${users[0]?.access}` } }).catch(() => undefined)
  await new Promise((wait) => setTimeout(wait, 200))
  const signalled = Date.now()
  const exited = new Promise<number | null>((resolveExit) => server.once('exit', (code) => resolveExit(code)))
  server.kill('SIGTERM')
  const code = await exited
  console.log(`SIGTERM during the stall: exited ${code} after ${Date.now() - signalled} ms`)
  await waiting
  proxy.resume()
} finally {
  if (child && child.exitCode === null) child.kill('SIGKILL')
  for (const cleanup of cleanups) await cleanup()
  await admin.query(`DROP SCHEMA ${schema} CASCADE`)
  await admin.end()
  rmSync(dir, { recursive: true, force: true })
}
