import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import http from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { freshPostgres } from './postgres.js'
import { CPU, Processes } from './processes.js'

const USAGE = `npm run bench:scale -- [options]
  --users <n>        users in the database (default 100000)
  --database <url>   also run on PostgreSQL (a fresh schema, dropped afterwards)
  --only <dialects>  sqlite, postgres or both (default: sqlite, plus postgres with --database)
  --root <dir>       run another checkout's server and schema (e.g. the code before the search index:
                     git archive <commit> | tar -x -C <dir>, then link node_modules into it)
  --seconds <s>      how long GET /me is measured while searches run back to back (default 5)
  --search-samples <n>  requests per search kind (default 30; a third of it for the deep page)
  --keep <dir>       keep the built databases and reuse them on the next run with the same --users: the SQLite
                     file in <dir>, the PostgreSQL schema portrait_scale_<users> (drop it yourself when done);
                     a kept database built by older code is migrated by the server when it starts

Builds the database in bulk (one reused password hash, the derived columns computed as the app computes them),
starts the server as npm start does, then measures each request one at a time (p50/p99 in ms).`

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '100000' },
    database: { type: 'string' },
    only: { type: 'string' },
    root: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    'search-samples': { type: 'string', default: '30' },
    keep: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}

const HERE = fileURLToPath(new URL('..', import.meta.url))
const ROOT = resolve(args.root ?? HERE)
const USERS = Number(args.users)
const SEARCH_SAMPLES = Number(args['search-samples'])
const KEEP = args.keep ? resolve(args.keep) : undefined
// Names this run signs up: unique per run, so that a kept database can be measured again.
const RUN = Date.now().toString(36)
const PASSWORD = 'Quartz-lantern-4f9c2e'
const FIRST = ['Olga', 'Grace', 'Ünal', 'Ada', 'Jürgen', 'Şükrü', 'Chloé', 'Mateus', 'Aiko', 'Nadia']
const LAST = ['Smith', 'Öztürk', 'Nakamura', 'Straße', 'Kowalski', 'García', 'Ivanova', 'Dubois', 'Okafor', 'Lindqvist']
const processes = new Processes()

const mod = async <T>(path: string): Promise<T> => import(pathToFileURL(join(ROOT, path)).href) as Promise<T>

interface Generated {
  username: string
  email: string
  first_name: string
  last_name: string
}
/** User i: first names cycle, so "Olga" matches a tenth of the table; usernames and emails are unique. */
function userAt(i: number): Generated {
  const first = FIRST[i % FIRST.length] as string
  const last = LAST[Math.floor(i / FIRST.length) % LAST.length] as string
  const username = `${first.normalize('NFD').replace(/[^A-Za-z]/g, '').toLowerCase()}${i}`
  return { username, email: `${username}@example.com`, first_name: first, last_name: last }
}

async function build(dialect: 'sqlite' | 'postgres'): Promise<{ url: string; schema?: string; file?: string; drop: () => Promise<void>; seconds: number }> {
  const { createDb } = await mod<typeof import('../src/db/database.js')>('src/db/database.ts')
  const { migrateToLatest } = await mod<typeof import('../src/db/migrate.js')>('src/db/migrate.ts')
  const { comparable } = await mod<typeof import('../src/users/field-rules.js')>('src/users/field-rules.ts')
  const { skeleton } = await mod<typeof import('../src/users/lookalikes.js')>('src/users/lookalikes.ts')
  const { hashPassword } = await mod<typeof import('../src/auth/passwords.js')>('src/auth/passwords.ts')
  const { loadConfig } = await mod<typeof import('../src/config.js')>('src/config.ts')
  const hash = await hashPassword(PASSWORD, loadConfig({}).passwordHashCost)
  const now = new Date().toISOString()
  const started = performance.now()

  if (dialect === 'sqlite') {
    const dir = KEEP ?? mkdtempSync(join(tmpdir(), 'portrait-scale-'))
    const file = join(dir, KEEP ? `portrait-${USERS}.db` : 'portrait.db')
    const drop = async () => (KEEP ? undefined : rmSync(dir, { recursive: true, force: true }))
    if (KEEP && existsSync(file)) {
      console.error(`sqlite: reusing ${file}`)
      return { url: `sqlite:${file}`, file, drop, seconds: 0 }
    }
    if (KEEP) mkdirSync(KEEP, { recursive: true })
    // Built under another name and renamed when complete, so an interrupted build is never reused.
    const building = `${file}.building`
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${building}${suffix}`, { force: true })
    const db = createDb({ databaseUrl: `sqlite:${building}`, databasePoolSize: 1 })
    await migrateToLatest(db.kysely)
    const sqlite = db.sqlite as import('better-sqlite3').Database
    const insert = sqlite.prepare(`insert into users (username, username_lower, username_skeleton, email, email_lower, password_hash,
      first_name, last_name, number_phone, avatar, date_joined, last_login, is_active, is_staff, is_superuser)
      values (?, ?, ?, ?, ?, ?, ?, ?, '', null, ?, null, 1, 0, 0)`)
    const batch = sqlite.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const user = userAt(i)
        insert.run(user.username, comparable(user.username), skeleton(user.username), user.email, comparable(user.email), hash, user.first_name, user.last_name, now)
      }
    })
    for (let from = 0; from < USERS; from += 50_000) {
      batch(from, Math.min(USERS, from + 50_000))
      process.stderr.write(`\rsqlite: ${Math.min(USERS, from + 50_000)} users`)
    }
    sqlite.pragma('wal_checkpoint(TRUNCATE)')
    sqlite.exec('analyze')
    await db.destroy()
    renameSync(building, file)
    process.stderr.write('\n')
    return { url: `sqlite:${file}`, file, drop, seconds: (performance.now() - started) / 1000 }
  }

  const place: { url: string; schema?: string; drop: () => Promise<void>; reused?: true; finish?: () => Promise<string> } = KEEP
    ? await keptPostgres(args.database as string)
    : await freshPostgres(args.database as string)
  if (place.reused) {
    console.error(`postgres: reusing schema ${place.schema}`)
    return { ...place, seconds: 0 }
  }
  const db = createDb({ databaseUrl: place.url, databaseSchema: place.schema, databasePoolSize: 1, databaseStatementTimeoutMs: 600_000 })
  await migrateToLatest(db.kysely)
  await db.destroy()
  const client = new pg.Client({ connectionString: place.url, ...(place.schema ? { options: `-c search_path=${place.schema}` } : {}) })
  await client.connect()
  // GIN indexes build far faster in one go than row by row: drop them for the load, build them after.
  const { rows: indexes } = await client.query<{ indexdef: string; indexname: string }>(
    `select indexname, indexdef from pg_indexes where schemaname = current_schema() and indexname like '%trgm'`,
  )
  for (const index of indexes) await client.query(`drop index ${index.indexname}`)
  for (let from = 0; from < USERS; from += 20_000) {
    const columns: string[][] = [[], [], [], [], [], [], []]
    for (let i = from; i < Math.min(USERS, from + 20_000); i++) {
      const user = userAt(i)
      const values = [user.username, comparable(user.username), skeleton(user.username), user.email, comparable(user.email), user.first_name, user.last_name]
      for (const [column, value] of values.entries()) columns[column]?.push(value)
    }
    await client.query(
      `insert into users (username, username_lower, username_skeleton, email, email_lower, first_name, last_name, password_hash,
        number_phone, avatar, date_joined, last_login, is_active, is_staff, is_superuser)
       select u.*, $8, '', null, $9, null, true, false, false
       from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) as u`,
      [...columns, hash, now],
    )
    process.stderr.write(`\rpostgres: ${Math.min(USERS, from + 20_000)} users`)
  }
  await client.query(`set maintenance_work_mem = '256MB'`)
  for (const index of indexes) await client.query(index.indexdef)
  await client.query('analyze users')
  await client.end()
  process.stderr.write('\n')
  if (place.finish) place.schema = await place.finish()
  return { ...place, seconds: (performance.now() - started) / 1000 }
}

/**
 * --keep on PostgreSQL: the schema portrait_scale_<users>, reused when it exists, never dropped. It is built as
 * portrait_scale_<users>_building and renamed when complete, so an interrupted build is never reused.
 */
async function keptPostgres(url: string): Promise<{ url: string; schema: string; drop: () => Promise<void>; reused?: true; finish?: () => Promise<string> }> {
  const schema = `portrait_scale_${USERS}`
  const building = `${schema}_building`
  const query = async (text: string, values: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query(text, values)).rows
    } finally {
      await client.end()
    }
  }
  const drop = async () => {}
  if ((await query('select 1 from pg_namespace where nspname = $1', [schema])).length > 0) return { url, schema, drop, reused: true }
  await query(`drop schema if exists ${building} cascade`)
  await query(`create schema ${building}`)
  const finish = async () => {
    await query(`alter schema ${building} rename to ${schema}`)
    return schema
  }
  return { url, schema: building, drop, finish }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolvePort(port))
    })
  })
}

/** The server as `npm start` runs it (built dist/, plain node), from ROOT. */
async function startServer(place: { url: string; schema?: string }, dir: string) {
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { encoding: 'utf8', cwd: ROOT })
  if (built.status !== 0) throw new Error(`the build failed:\n${built.stderr}`)
  const port = await freePort()
  const logFile = join(dir, 'server.log')
  const log = openSync(logFile, 'a')
  // dist/current/ since builds went into dist/builds/ (scripts/build.mjs); dist/ itself in older checkouts (--root).
  const entry = existsSync(join(ROOT, 'dist/current/server.js')) ? join(ROOT, 'dist/current/server.js') : join(ROOT, 'dist/server.js')
  const loopDelay = fileURLToPath(new URL('loop-delay.cjs', import.meta.url))
  const child = processes.start(process.execPath, ['--max-semi-space-size=4', '--require', join(ROOT, 'scripts/threadpool.cjs'), '--require', loopDelay, entry], {
    cpu: CPU.server,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      MALLOC_ARENA_MAX: '1',
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dir,
      DATABASE_URL: place.url,
      MEDIA_ROOT: join(dir, 'media'),
      LOG_LEVEL: 'warn',
      SIGN_UP_MAX_PER_ADDRESS: '1000000',
      SIGN_IN_MAX_FAILURES_PER_ADDRESS: '1000000',
      LOOP_DELAY_FILE: join(dir, 'loop-delay.jsonl'),
      ...(place.schema ? { DATABASE_SCHEMA: place.schema } : {}),
    },
    stdio: ['ignore', log, log],
  })
  const base = `http://127.0.0.1:${port}`
  // Long enough for a kept database built by older code to be migrated at start (an index over a million users).
  const deadline = Date.now() + 600_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited:\n${readFileSync(logFile, 'utf8')}`)
    const ok = await fetch(`${base}/api/health`).then((response) => response.ok, () => false)
    if (ok) break
    if (Date.now() > deadline) throw new Error(`the server did not start:\n${readFileSync(logFile, 'utf8')}`)
    await new Promise((wait) => setTimeout(wait, 200))
  }
  return { base, child }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })

/** One request; its status and milliseconds from send to the last byte. */
function request(base: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; ms: number; json: any }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
  const started = performance.now()
  return new Promise((resolveResponse, reject) => {
    const outgoing = http.request(
      `${base}${path}`,
      {
        method,
        agent,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString()
          resolveResponse({ status: response.statusCode ?? 0, ms: performance.now() - started, json: text ? JSON.parse(text) : undefined })
        })
      },
    )
    outgoing.on('error', reject)
    outgoing.end(payload)
  })
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

interface Measure {
  name: string
  p50: number
  p99: number
  n: number
  note?: string
}

async function repeat(name: string, times: number, run: (i: number) => Promise<{ status: number; ms: number; json: any }>, expected = 200, note?: (last: any) => string) {
  const times_: number[] = []
  let last: any
  for (let i = 0; i < times; i++) {
    const result = await run(i)
    if (result.status !== expected) throw new Error(`${name}: ${result.status} ${JSON.stringify(result.json)}`)
    times_.push(result.ms)
    last = result.json
  }
  const measure: Measure = { name, p50: percentile(times_, 50), p99: percentile(times_, 99), n: times, note: note?.(last) }
  console.error(`  ${name}: p50 ${measure.p50.toFixed(2)} ms, p99 ${measure.p99.toFixed(2)} ms${measure.note ? ` (${measure.note})` : ''}`)
  return measure
}

async function measure(dialect: 'sqlite' | 'postgres'): Promise<{ build: number; rows: Measure[]; size?: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-scale-run-'))
  const place = await build(dialect)
  console.error(`${dialect}: built ${USERS} users in ${place.seconds.toFixed(0)} s`)
  try {
    const { base, child } = await startServer(place, dir)
    const started = Date.now()
    const staff = (await request(base, 'POST', '/api/auth/sign-up', undefined, { username: `benchstaff${RUN}`, email: `benchstaff${RUN}@example.com`, password: PASSWORD })).json
    await makeStaff(place, staff.user.id)
    const token = staff.access as string
    const count = (json: any) => `count ${json.count}${json.count_exact === false ? '+' : ''}`
    const searches: [string, string][] = [
      ['search, no match (zzz)', '/api/users?search=zzz'],
      ['search, one match', `/api/users?search=${encodeURIComponent(`${userAt(Math.floor(USERS / 2)).username}@`)}`],
      ['search, many matches (Olga)', '/api/users?search=Olga'],
      ['search, many matches (Olga), page 2', '/api/users?search=Olga&page=2'],
      ['search, Unicode (öztürk)', '/api/users?search=%C3%B6zt%C3%BCrk'],
      ['search, two letters, no match (zq)', '/api/users?search=zq'],
      ['search, one letter (a)', '/api/users?search=a'],
      ['search, one letter (ß)', '/api/users?search=%C3%9F'],
      ['list, page 40000 (offset 800,000)', `/api/users?page=${Math.max(1, Math.floor(USERS / 25))}`],
      ['list, keyset after a deep id', `/api/users?after=${Math.floor(USERS * 0.8)}`],
    ]
    const rows: Measure[] = []
    // Warm-up: JIT, statement caches, the search thread and the page cache.
    for (let i = 0; i < 100; i++) await request(base, 'GET', '/api/users/me', token)
    for (const [, path] of searches.slice(0, 3)) await request(base, 'GET', path, token)
    rows.push(await repeat('GET /api/users/me', 500, () => request(base, 'GET', '/api/users/me', token)))
    rows.push(await repeat('sign-in', 30, (i) => request(base, 'POST', '/api/auth/sign-in', undefined, { username: userAt((i * 7919) % USERS).username, password: PASSWORD })))
    rows.push(
      await repeat('sign-up', 30, (i) =>
        request(base, 'POST', '/api/auth/sign-up', undefined, { username: `newcomer${RUN}n${i}`, email: `newcomer${RUN}n${i}@example.org`, password: PASSWORD }), 201),
    )
    rows.push(await repeat('PATCH /api/users/me', 200, (i) => request(base, 'PATCH', '/api/users/me', token, { first_name: `Bench${i % 10}` })))
    for (const [name, path] of searches) rows.push(await repeat(name, name.includes('40000') ? Math.max(1, Math.round(SEARCH_SAMPLES / 3)) : SEARCH_SAMPLES, () => request(base, 'GET', path, token), 200, count))

    // GET /me while staff searches run back to back (the expensive kinds in turn, the unindexed one included).
    const seconds = Number(args.seconds)
    let running = true
    const loop = (async () => {
      let i = 0
      while (running) await request(base, 'GET', (searches[i++ % searches.length] as [string, string])[1], token)
    })()
    await new Promise((wait) => setTimeout(wait, 200))
    const during: number[] = []
    const from = Date.now()
    const until = from + seconds * 1000
    while (Date.now() < until) during.push((await request(base, 'GET', '/api/users/me', token)).ms)
    running = false
    await loop
    const row: Measure = { name: 'GET /api/users/me while searches run back to back', p50: percentile(during, 50), p99: percentile(during, 99), n: during.length, note: `max ${Math.max(...during).toFixed(1)} ms` }
    console.error(`  ${row.name}: p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms (${row.note})`)
    rows.push(row)
    console.error(`  server's event loop while searches ran: ${loopDelaySummary(join(dir, 'loop-delay.jsonl'), from, until)}`)
    console.error(`  server's event loop over the whole run: ${loopDelaySummary(join(dir, 'loop-delay.jsonl'), started, Date.now())}`)
    await processes.stop(child)
    let size: string | undefined
    if (place.file) {
      const bytes = statSync(place.file).size
      size = `${(bytes / 1024 / 1024).toFixed(0)} MB, ${(bytes / USERS).toFixed(0)} bytes per user${await ftsShare(place.file)}`
      console.error(`  database size: ${size}`)
    }
    return { build: place.seconds, rows, size }
  } finally {
    await place.drop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The server's event-loop delay and GC pauses (bench/loop-delay.cjs) over the seconds between from and to. */
function loopDelaySummary(file: string, from: number, to: number): string {
  let lines: { at: number; loopP99: number; loopMax: number; gcCount: number; gcTotal: number; gcMax: number; mainRun: number; mainWait: number; othersRun?: number }[]
  try {
    lines = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line))
  } catch {
    return 'not recorded'
  }
  const inside = lines.filter((line) => line.at > from && line.at <= to + 1000)
  if (inside.length === 0) return 'not recorded'
  const max = (key: 'loopP99' | 'loopMax' | 'gcMax' | 'mainWait') => Math.max(...inside.map((line) => line[key])).toFixed(1)
  const sum = (key: 'gcCount' | 'mainRun' | 'mainWait' | 'othersRun') => inside.reduce((total, line) => total + (line[key] ?? 0), 0)
  return (
    `delay p99 per second at most ${max('loopP99')} ms, max ${max('loopMax')} ms; ${sum('gcCount')} GCs, longest ${max('gcMax')} ms; ` +
    `main thread ran ${sum('mainRun').toFixed(0)} ms and waited for a CPU ${sum('mainWait').toFixed(0)} ms in ${inside.length} s (at most ${max('mainWait')} ms in one second); its other threads ran ${sum('othersRun').toFixed(0)} ms`
  )
}

/** How much of the file the search index takes (dbstat, when this SQLite build has it). */
async function ftsShare(file: string): Promise<string> {
  const SQLite = (await import('better-sqlite3')).default
  const db = new SQLite(file, { readonly: true })
  try {
    const rows = db
      .prepare(`select case when name like 'users_search_grams%' then 'gram' when name like 'users_search%' then 'trigram' end as kind, sum(pgsize) as bytes from dbstat group by 1`)
      .all() as { kind: string | null; bytes: number }[]
    const parts = ['trigram', 'gram'].flatMap((kind) => {
      const bytes = rows.find((row) => row.kind === kind)?.bytes
      return bytes ? [`the ${kind} index ${(bytes / 1024 / 1024).toFixed(0)} MB (${(bytes / USERS).toFixed(0)} bytes per user)`] : []
    })
    return parts.length ? `; ${parts.join(', ')}` : '; no search index'
  } catch {
    return ''
  } finally {
    db.close()
  }
}

async function makeStaff(place: { url: string; schema?: string }, id: number): Promise<void> {
  if (place.url.startsWith('sqlite:')) {
    const SQLite = (await import('better-sqlite3')).default
    const db = new SQLite(place.url.slice('sqlite:'.length))
    db.prepare('update users set is_staff = 1 where id = ?').run(id)
    db.close()
    return
  }
  const client = new pg.Client({ connectionString: place.url, ...(place.schema ? { options: `-c search_path=${place.schema}` } : {}) })
  await client.connect()
  await client.query('update users set is_staff = true where id = $1', [id])
  await client.end()
}

const dialects = (args.only ?? (args.database ? 'sqlite,postgres' : 'sqlite')).split(',').map((name) => name.trim()) as ('sqlite' | 'postgres')[]
if (dialects.includes('postgres') && !args.database) throw new Error('--database postgres://… is needed for postgres')
const results: Record<string, Awaited<ReturnType<typeof measure>>> = {}
try {
  for (const dialect of dialects) results[dialect] = await measure(dialect)
} finally {
  await processes.stopAll()
  agent.destroy()
}
const names = results[dialects[0] as string]?.rows.map((row) => row.name) ?? []
console.log(`${USERS.toLocaleString('en')} users, ${ROOT === HERE ? 'this checkout' : ROOT}; one request at a time, ms`)
console.log(`| request | ${dialects.map((dialect) => `${dialect} p50 | ${dialect} p99`).join(' | ')} |`)
console.log(`|---|${dialects.map(() => '---:|---:').join('|')}|`)
for (const name of names) {
  const cells = dialects.map((dialect) => {
    const row = results[dialect]?.rows.find((candidate) => candidate.name === name)
    return row ? `${row.p50.toFixed(1)} | ${row.p99.toFixed(1)}` : '– | –'
  })
  console.log(`| ${name} | ${cells.join(' | ')} |`)
}
for (const dialect of dialects) {
  const result = results[dialect]
  console.log(`\n${dialect}: built in ${result?.build.toFixed(0)} s${result?.size ? `; ${result.size}` : ''}`)
}
