import { spawnSync } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
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
  --search-samples <n>  requests per search kind (default 30; a third of it for the unindexed kinds)

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
    const dir = mkdtempSync(join(tmpdir(), 'portrait-scale-'))
    const file = join(dir, 'portrait.db')
    const db = createDb({ databaseUrl: `sqlite:${file}`, databasePoolSize: 1 })
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
    process.stderr.write('\n')
    return { url: `sqlite:${file}`, file, drop: async () => rmSync(dir, { recursive: true, force: true }), seconds: (performance.now() - started) / 1000 }
  }

  const place = await freshPostgres(args.database as string)
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
  return { ...place, seconds: (performance.now() - started) / 1000 }
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
  const child = processes.start(process.execPath, ['--max-semi-space-size=4', '--require', join(ROOT, 'scripts/threadpool.cjs'), join(ROOT, 'dist/server.js')], {
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
      ...(place.schema ? { DATABASE_SCHEMA: place.schema } : {}),
    },
    stdio: ['ignore', log, log],
  })
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 120_000
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
    const staff = (await request(base, 'POST', '/api/auth/sign-up', undefined, { username: 'benchstaff', email: 'benchstaff@example.com', password: PASSWORD })).json
    await makeStaff(place, staff.user.id)
    const token = staff.access as string
    const count = (json: any) => `count ${json.count}${json.count_exact === false ? '+' : ''}`
    const searches: [string, string][] = [
      ['search, no match (zzz)', '/api/users?search=zzz'],
      ['search, one match', `/api/users?search=${encodeURIComponent(`${userAt(Math.floor(USERS / 2)).username}@`)}`],
      ['search, many matches (Olga)', '/api/users?search=Olga'],
      ['search, many matches (Olga), page 2', '/api/users?search=Olga&page=2'],
      ['search, Unicode (öztürk)', '/api/users?search=%C3%B6zt%C3%BCrk'],
      ['search, two letters (zq, no index)', '/api/users?search=zq'],
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
        request(base, 'POST', '/api/auth/sign-up', undefined, { username: `newcomer${i}`, email: `newcomer${i}@example.org`, password: PASSWORD }), 201),
    )
    rows.push(await repeat('PATCH /api/users/me', 200, (i) => request(base, 'PATCH', '/api/users/me', token, { first_name: `Bench${i % 10}` })))
    for (const [name, path] of searches) rows.push(await repeat(name, name.includes('two letters') || name.includes('40000') ? Math.max(1, Math.round(SEARCH_SAMPLES / 3)) : SEARCH_SAMPLES, () => request(base, 'GET', path, token), 200, count))

    // GET /me while staff searches run back to back (the expensive kinds in turn, the unindexed one included).
    const seconds = Number(args.seconds)
    let running = true
    const loop = (async () => {
      let i = 0
      while (running) await request(base, 'GET', (searches[i++ % searches.length] as [string, string])[1], token)
    })()
    await new Promise((wait) => setTimeout(wait, 200))
    const during: number[] = []
    const until = Date.now() + seconds * 1000
    while (Date.now() < until) during.push((await request(base, 'GET', '/api/users/me', token)).ms)
    running = false
    await loop
    const row: Measure = { name: 'GET /api/users/me while searches run back to back', p50: percentile(during, 50), p99: percentile(during, 99), n: during.length, note: `max ${Math.max(...during).toFixed(1)} ms` }
    console.error(`  ${row.name}: p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms (${row.note})`)
    rows.push(row)
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

/** How much of the file the search index takes (dbstat, when this SQLite build has it). */
async function ftsShare(file: string): Promise<string> {
  const SQLite = (await import('better-sqlite3')).default
  const db = new SQLite(file, { readonly: true })
  try {
    const rows = db.prepare(`select name like 'users_search%' as fts, sum(pgsize) as bytes from dbstat group by 1`).all() as { fts: number; bytes: number }[]
    const fts = rows.find((row) => row.fts === 1)?.bytes ?? 0
    return fts ? `; the trigram index ${(fts / 1024 / 1024).toFixed(0)} MB (${(fts / USERS).toFixed(0)} bytes per user)` : '; no search index'
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
