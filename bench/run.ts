import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { avatarMultipart, photoLikeJpeg } from './fixture.js'
import type { LoadResult, LoadSpec } from './load.js'
import { freshPostgres } from './postgres.js'
import { CPU, cpuSeconds, jsonOutput, Processes, pinningDescription, rssMegabytes } from './processes.js'
import { annotate, checkTargets, formatTable, formatTargets, type Row } from './report.js'

const USAGE = `npm run bench -- [options]
  --duration <s>        seconds per scenario (default 10)
  --warmup <s>          unmeasured seconds before each scenario (default 1)
  --repeat <n>          run every scenario n times against the same server (RSS growth check; default 1)
  --only <list>         comma-separated: ceiling,me,patch,upload,sign-in,me-during-sign-in,sharp
  --database <url>      postgres://… runs the scenarios on PostgreSQL (a fresh schema, dropped afterwards)
  --json <file>         also write the table and the target checks as JSON
  --cpu-prof <dir>      run the server under node --cpu-prof; the profile lands in <dir> when it stops
  --env KEY=VALUE       an extra environment variable for the server, for experiments (repeatable)`

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '1' },
    only: { type: 'string' },
    database: { type: 'string' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TSX = import.meta.resolve('tsx')
const START = startCommand()
const DURATION = positive(args.duration, '--duration')
const WARMUP = Number(args.warmup)
const REPEAT = positive(args.repeat, '--repeat')
const ONLY = args.only?.split(',').map((name) => name.trim())
const CONNECTIONS = [32, 1]
// More sign-ins in flight than libuv has threads (4): the hashing pool never waits for work.
const SIGN_IN_BACKGROUND_CONNECTIONS = 8
const PASSWORD = 'Quartz-lantern-4f9c2e'

/**
 * `npm start` as package.json spells it (`VAR=value … exec node [flags] dist/current/server.js`), split into the
 * environment and node's arguments, so that the benchmark runs the server exactly as a user would without a
 * second copy.
 */
function startCommand(): { env: Record<string, string>; nodeArgs: string[] } {
  const words = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.split(/\s+/)
  const node = words.indexOf('node')
  const assignments = words.slice(0, node).filter((word) => word !== 'exec')
  if (node < 0 || assignments.some((word) => !word.includes('='))) throw new Error('npm start is not `[VAR=value …] [exec] node …`')
  const env = Object.fromEntries(assignments.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]))
  // Paths (the entry point, a --require'd preload) are the repository's, whatever the working directory.
  return { env, nodeArgs: words.slice(node + 1).map((word) => (word.endsWith('.js') || word.startsWith('./') ? join(ROOT, word) : word)) }
}

function positive(raw: string | undefined, name: string): number {
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`)
  return value
}

const wanted = (name: string) => ONLY === undefined || ONLY.includes(name)
const processes = new Processes()
const workDir = mkdtempSync(join(tmpdir(), 'portrait-bench-'))
let dropDatabase: (() => Promise<void>) | undefined

async function cleanUp(): Promise<void> {
  await processes.stopAll()
  await dropDatabase?.().catch((error) => console.error(`could not drop the benchmark database: ${error.message}`))
  dropDatabase = undefined
  rmSync(workDir, { recursive: true, force: true })
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every process the benchmark started`)
    void cleanUp().finally(() => process.exit(130))
  })
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

async function startCeiling(): Promise<{ url: string; pid: number | undefined }> {
  const child = processes.start(process.execPath, ['--import', TSX, join(ROOT, 'bench/ceiling.ts')], { cpu: CPU.server })
  const line = await new Promise<string>((resolveLine, reject) => {
    child.once('exit', (code) => reject(new Error(`the ceiling server exited (${code})`)))
    child.stdout?.setEncoding('utf8').once('data', (chunk: string) => resolveLine(chunk))
  })
  const { port } = JSON.parse(line) as { port: number }
  return { url: `http://127.0.0.1:${port}`, pid: child.pid }
}

/** Portrait as `npm start` runs it (built into dist/current/, then plain node): defaults from loadConfig, real argon2 cost, info logs to a file. */
async function startPortrait(database: { url: string; schema?: string }) {
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { encoding: 'utf8' })
  if (built.status !== 0) throw new Error(`the build failed:\n${built.stderr}`)
  const port = await freePort()
  const dataDir = join(workDir, 'data')
  const logFile = join(workDir, 'server.log')
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    MEDIA_ROOT: join(dataDir, 'media'),
    LOG_LEVEL: 'info',
    ...START.env,
    ...(database.schema ? { DATABASE_SCHEMA: database.schema } : {}),
    ...Object.fromEntries((args.env ?? []).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)])),
  }
  const profile = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(args['cpu-prof'])}`] : []
  const log = openSync(logFile, 'a')
  // cwd is the scratch directory, so a developer's .env in the repository cannot change the configuration.
  const child = processes.start(process.execPath, [...profile, ...START.nodeArgs], {
    cpu: CPU.server,
    env,
    stdio: ['ignore', log, log],
  })
  const url = `http://127.0.0.1:${port}`
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`the server exited (${code}); its log:\n${tail(logFile)}`))),
  )
  const deadline = Date.now() + 60_000
  for (;;) {
    const healthy = await Promise.race([
      fetch(`${url}/api/health`).then((response) => response.ok, () => false),
      exited,
    ])
    if (healthy) break
    if (Date.now() > deadline) throw new Error(`the server did not become healthy in 60 s; its log:\n${tail(logFile)}`)
    await new Promise((wait) => setTimeout(wait, 100))
  }
  exited.catch(() => {})
  return { url, child, logFile }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n')
  } catch {
    return '(no log)'
  }
}

async function api(url: string, path: string, body: unknown, expected: number): Promise<any> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const payload = await response.json()
  if (response.status !== expected) throw new Error(`${path} answered ${response.status}: ${JSON.stringify(payload)}`)
  return payload
}

function load(spec: LoadSpec): Promise<LoadResult> {
  const child = processes.start(process.execPath, ['--import', TSX, join(ROOT, 'bench/load.ts'), JSON.stringify(spec)], { cpu: CPU.load })
  return jsonOutput<LoadResult>(child, `the load generator (${spec.method} ${spec.path})`)
}

type Request = Omit<LoadSpec, 'url' | 'connections' | 'durationSeconds'>

/**
 * A warm-up run (not counted), then the measured run with the server's RSS and CPU time read on
 * either side; `alongside` is a second client that loads the same server during the measured run.
 */
async function measure(server: { url: string; pid: number | undefined }, connections: number, request: Request, alongside?: Request) {
  if (WARMUP > 0) {
    await Promise.all([
      load({ url: server.url, connections, durationSeconds: WARMUP, ...request }),
      alongside && load({ url: server.url, connections: SIGN_IN_BACKGROUND_CONNECTIONS, durationSeconds: WARMUP, ...alongside }),
    ])
  }
  const rssStartMb = rssMegabytes(server.pid)
  const cpuStart = cpuSeconds(server.pid)
  const [result, alongsideResult] = await Promise.all([
    load({ url: server.url, connections, durationSeconds: DURATION, ...request }),
    alongside && load({ url: server.url, connections: SIGN_IN_BACKGROUND_CONNECTIONS, durationSeconds: DURATION, ...alongside }),
  ])
  const cpuEnd = cpuSeconds(server.pid)
  const served = result.requests + (alongsideResult?.requests ?? 0)
  if (cpuStart !== undefined && cpuEnd !== undefined && !alongside) result.cpuUsPerRequest = ((cpuEnd - cpuStart) * 1e6) / served
  return { result, alongsideResult, rssStartMb, rssEndMb: rssMegabytes(server.pid) }
}

function sharpLoop(jpegFile: string): Promise<LoadResult> {
  const script = join(ROOT, 'bench/sharp-loop.ts')
  const child = processes.start(process.execPath, ['--import', TSX, script, jpegFile, String(DURATION), String(WARMUP), '512'], { cpu: CPU.server })
  return jsonOutput<LoadResult>(child, 'the bare sharp pipeline')
}

async function main(): Promise<void> {
  const jpeg = await photoLikeJpeg()
  const jpegFile = join(workDir, 'avatar.jpg')
  const multipartFile = join(workDir, 'avatar.multipart')
  const multipart = avatarMultipart(jpeg)
  writeFileSync(jpegFile, jpeg)
  writeFileSync(multipartFile, multipart.body)

  const database = args.database ? await freshPostgres(args.database) : { url: `sqlite:${join(workDir, 'portrait.db')}` }
  dropDatabase = 'drop' in database ? database.drop : undefined
  const dialect = args.database ? 'postgres' : 'sqlite'

  const ceiling = await startCeiling()
  const portrait = await startPortrait(database)
  const server = { url: portrait.url, pid: portrait.child.pid }
  const credentials = { username: 'loadtester', password: PASSWORD }
  const user = await api(portrait.url, '/api/auth/sign-up', { ...credentials, email: 'loadtester@example.com', first_name: 'Bench' }, 201)
  const userId = user.user.id as number
  // The sign-in load signs in an account of its own: a user keeps only its 100 newest sessions, so signing
  // in loadtester flat out would end the session whose access token the other scenarios measure with.
  const signInCredentials = { username: 'signintester', password: PASSWORD }
  await api(portrait.url, '/api/auth/sign-up', { ...signInCredentials, email: 'signintester@example.com' }, 201)
  const signIn: Request = { method: 'POST', path: '/api/auth/sign-in', headers: { 'content-type': 'application/json' }, body: JSON.stringify(signInCredentials) }
  const me = (access: string): Request => ({ method: 'GET', path: '/api/users/me', headers: bearer(access) })
  const scenarios: { kind: Row['kind']; scenario: string; request: (access: string) => Request; alongside?: Request }[] = [
    { kind: 'me', scenario: 'GET /api/users/me', request: me },
    {
      kind: 'patch',
      scenario: 'PATCH /api/users/{id} JSON first_name',
      request: (access) => ({
        method: 'PATCH',
        path: `/api/users/${userId}`,
        headers: { ...bearer(access), 'content-type': 'application/json' },
        uniqueFirstName: true,
      }),
    },
    {
      kind: 'upload',
      scenario: 'PUT /api/users/{id} multipart avatar',
      request: (access) => ({
        method: 'PUT',
        path: `/api/users/${userId}`,
        headers: { ...bearer(access), 'content-type': multipart.contentType },
        bodyFile: multipartFile,
      }),
    },
    { kind: 'sign-in', scenario: 'POST /api/auth/sign-in', request: () => signIn },
    { kind: 'me-during-sign-in', scenario: 'GET /api/users/me during sign-ins', request: me, alongside: signIn },
  ]

  if (args.env?.length) console.error(`server environment additions: ${args.env.join(' ')}`)
  console.error(`Portrait benchmark: ${dialect}, ${DURATION} s per scenario, ${pinningDescription()}, ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`)
  console.error(`avatar fixture: ${jpeg.length} bytes, 480×360 JPEG; load average before: ${loadavg().map((value) => value.toFixed(2)).join(' ')}`)
  const rows: Row[] = []
  const serverRssEndMb: number[] = []
  const loadBefore = loadavg()

  for (let pass = 1; pass <= REPEAT; pass++) {
    for (const connections of CONNECTIONS) {
      if (!wanted('ceiling')) break
      const ceilingRequest: Request = { method: 'GET', path: '/api/users/me' }
      const { result, rssStartMb, rssEndMb } = await measure(ceiling, connections, ceilingRequest)
      rows.push({ pass, scenario: 'ceiling: bare node:http', kind: 'ceiling', connections, result, rssStartMb, rssEndMb })
      progress('ceiling', connections, result)
    }
    for (const { kind, scenario, request, alongside } of scenarios) {
      if (!wanted(kind)) continue
      for (const connections of CONNECTIONS) {
        // A fresh access token per scenario: long runs outlive the 15-minute token lifetime.
        const { access } = await api(portrait.url, '/api/auth/sign-in', credentials, 200)
        const { result, alongsideResult, rssStartMb, rssEndMb } = await measure(server, connections, request(access), alongside)
        rows.push({ pass, scenario, kind, connections, result, rssStartMb, rssEndMb })
        progress(scenario, connections, result)
        if (alongsideResult) {
          const background = { scenario: '  ↳ sign-ins alongside it', kind: 'sign-in-background' as const, result: alongsideResult }
          rows.push({ pass, ...background, connections: SIGN_IN_BACKGROUND_CONNECTIONS })
        }
      }
      // Right after the uploads, on the server's CPU while the server idles: the two are compared, and on a
      // shared machine the minutes between distant measurements move both numbers.
      if (kind === 'upload' && wanted('sharp')) {
        const result = await sharpLoop(jpegFile)
        rows.push({ pass, scenario: 'sharp pipeline alone, 1 thread', kind: 'sharp', connections: 1, result, note: 'ops/s; p50/p99 per image' })
        progress('sharp pipeline alone', 1, result)
      }
    }
    if (!wanted('upload') && wanted('sharp')) {
      const result = await sharpLoop(jpegFile)
      rows.push({ pass, scenario: 'sharp pipeline alone, 1 thread', kind: 'sharp', connections: 1, result, note: 'ops/s; p50/p99 per image' })
    }
    serverRssEndMb.push(rssMegabytes(server.pid) ?? Number.NaN)
  }

  await processes.stop(portrait.child, 15_000)
  annotate(rows)
  const targets = checkTargets(rows, { database: dialect, serverRssEndMb })
  console.log(formatTable(rows))
  console.log(`\nTargets (last pass, 32 connections):\n${formatTargets(targets)}`)
  console.log(`\nload average before → after: ${loadBefore.map((v) => v.toFixed(2)).join(' ')} → ${loadavg().map((v) => v.toFixed(2)).join(' ')}`)
  if (args.json) {
    const report = {
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model, cpus: cpus().length, node: process.version, pinning: pinningDescription() },
      loadAverage: { before: loadBefore, after: loadavg() },
      options: { database: dialect, durationSeconds: DURATION, warmupSeconds: WARMUP, repeat: REPEAT, avatarFixtureBytes: jpeg.length },
      rows,
      serverRssEndMb,
      targets,
    }
    mkdirSync(resolve(args.json, '..'), { recursive: true })
    writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`)
  }
}

function progress(scenario: string, connections: number, result: LoadResult): void {
  console.error(`  ${scenario} ×${connections}: ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99Ms.toFixed(2)} ms`)
}

function bearer(access: string): Record<string, string> {
  return { authorization: `Bearer ${access}` }
}

try {
  await main()
} catch (error) {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error)
  process.exitCode = 1
} finally {
  await cleanUp()
}
