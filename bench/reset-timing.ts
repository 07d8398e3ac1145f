// Known vs unknown address on POST /api/auth/password-reset: the reply's latency distribution for each, from a
// client in this process to the server in its own (a client sharing the server's event loop would also time the
// work done after the reply). Requests in random order with a gap between them.
// `node --import tsx bench/reset-timing.ts [requests] [gap ms]`
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const requests = Number(process.argv[2] ?? 2000)
const gapMs = Number(process.argv[3] ?? 10)
const dir = mkdtempSync(join(tmpdir(), 'portrait-reset-timing-'))
const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
  cwd: resolve(import.meta.dirname, '..'),
  env: {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    DATA_DIR: dir,
    DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`,
    MEDIA_ROOT: join(dir, 'media'),
    LOG_LEVEL: 'info',
    LOG_FORMAT: 'json',
    MAIL_REQUESTS_PER_EMAIL: '1000000',
    MAIL_REQUESTS_PER_ADDRESS: '1000000',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
})
const base = await new Promise<string>((found) => {
  let output = ''
  server.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString()
    const match = /Server listening at (http:\/\/[^\s"]+)/.exec(output)
    if (match) found(match[1] as string)
  })
})
server.stdout.resume()
const post = (path: string, body: unknown) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const known = 'timing-known@example.com'
await post('/api/auth/sign-up', { username: 'timing_known', email: known, password: 'correct-Horse-battery-9' })

const samples: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] }
for (let i = 0; i < requests + 200; i++) {
  // Random order: no phase lines up the work one request leaves behind with the next request's kind.
  const kind = Math.random() < 0.5 ? 'known' : 'unknown'
  const email = kind === 'known' ? known : `nobody-${i}@example.com`
  const start = process.hrtime.bigint()
  const response = await post('/api/auth/password-reset', { email })
  await response.arrayBuffer()
  const micros = Number(process.hrtime.bigint() - start) / 1000
  // The first 200 warm up the JIT and the connection.
  if (i >= 200) samples[kind].push(micros)
  await new Promise((resolve) => setTimeout(resolve, gapMs))
}

const at = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
for (const kind of ['known', 'unknown'] as const) {
  const sorted = [...samples[kind]].sort((a, b) => a - b)
  const mean = sorted.reduce((sum, value) => sum + value, 0) / sorted.length
  console.log(`${kind.padEnd(8)} n=${sorted.length}  mean ${mean.toFixed(0)} µs  p10 ${at(sorted, 0.1).toFixed(0)}  p50 ${at(sorted, 0.5).toFixed(0)}  p90 ${at(sorted, 0.9).toFixed(0)}  p99 ${at(sorted, 0.99).toFixed(0)} µs`)
}
server.kill('SIGTERM')
await new Promise((resolve) => server.once('exit', resolve))
rmSync(dir, { recursive: true, force: true })
