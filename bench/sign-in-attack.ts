import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

// Issue 12's attacks on a fresh server, counted by status: node --import tsx bench/sign-in-attack.ts [guesses]
// With REDIS_URL set the server keeps its counts in Redis (under a prefix of its own). Defaults otherwise
// (10 failures per account, 100 per address, 30 sign-ups per address), real argon2 cost.

const GUESSES = Number(process.argv[2] ?? 1000)
const PASSWORD = 'correct-Horse-battery-9'
const dir = mkdtempSync(join(tmpdir(), 'portrait-attack-'))
const env: Record<string, string> = {
  PATH: process.env.PATH ?? '',
  DATA_DIR: dir,
  DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`,
  MEDIA_ROOT: join(dir, 'media'),
  HOST: '127.0.0.1',
  PORT: '0',
  ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL, REDIS_KEY_PREFIX: `portrait-attack:${process.pid}:` } : {}),
}
const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: resolve(import.meta.dirname, '..'), env, stdio: ['ignore', 'pipe', 'inherit'] })
// However this script ends (even on an uncaught error), the server and its data go with it.
process.once('exit', () => {
  child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})
const url = await new Promise<string>((done) => {
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk
    const match = /Server listening at (http:\/\/[^\s"]+)/.exec(output)
    if (match) done(match[1] as string)
  })
})

function send(from: string, method: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; json: any }>((done, fail) => {
    const bytes = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
    const req = request(`${url}${path}`, { method, localAddress: from, headers: { 'content-type': 'application/json', 'content-length': String(bytes.length), ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        done({ status: res.statusCode ?? 0, json: text.startsWith('{') ? JSON.parse(text) : null })
      })
    })
    req.on('error', fail)
    req.end(bytes)
  })
}

async function tally(label: string, attempts: Promise<{ status: number }>[]) {
  const counts: Record<number, number> = {}
  for (const { status } of await Promise.all(attempts)) counts[status] = (counts[status] ?? 0) + 1
  console.log(`${label}: ${Object.entries(counts).map(([status, count]) => `${count}×${status}`).join(', ')}`)
}

const signUp = (from: string, name: string) => send(from, 'POST', '/api/auth/sign-up', { username: name, email: `${name}@example.com`, password: PASSWORD })
try {
  const victim = (await signUp('127.0.0.1', 'victim')).json
  const changer = (await signUp('127.0.0.1', 'changer')).json
  const from = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']
  await tally(
    `${GUESSES} parallel wrong guesses for one account from 4 addresses`,
    Array.from({ length: GUESSES }, (_, n) => send(from[n % 4] as string, 'POST', '/api/auth/sign-in', { username: 'victim', password: `wrong-${n}-x` })),
  )
  await tally('then the right password from a fresh client', [send('127.0.0.6', 'POST', '/api/auth/sign-in', { username: 'victim', password: PASSWORD })])
  await tally('then the right password from the device that signed up', [
    send('127.0.0.6', 'POST', '/api/auth/sign-in', { username: 'victim', password: PASSWORD, device_token: victim.device_token }),
  ])
  await tally(
    '150 parallel wrong guesses for 150 accounts from one address',
    Array.from({ length: 150 }, (_, n) => send('127.0.0.7', 'POST', '/api/auth/sign-in', { username: `nobody${n}`, password: 'wrong-pass-1' })),
  )
  const auth = { authorization: `Bearer ${changer.access}` }
  await tally(
    '40 parallel wrong current_password on POST /api/users/{id}/password',
    Array.from({ length: 40 }, () => send('127.0.0.8', 'POST', `/api/users/${changer.user.id}/password`, { current_password: 'wrong-pass-1', new_password: 'another-Good-pass-7' }, auth)),
  )
  await tally('31 parallel sign-ups from one address', Array.from({ length: 31 }, (_, n) => signUp('127.0.0.9', `bulk${n}`)))
  await tally('sign-in as a urlencoded form', [
    send('127.0.0.10', 'POST', '/api/auth/sign-in', `username=victim&password=${PASSWORD}`, { 'content-type': 'application/x-www-form-urlencoded' }),
  ])
} finally {
  child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
