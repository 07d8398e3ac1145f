/**
 * `portrait import-django` at scale: builds a Django-format SQLite database (Django 3.2's exact
 * `users_users` DDL) of N users, then runs the real CLI against it into a fresh Portrait database and reports
 * wall time and the importer process's peak RSS (from /usr/bin/time). Not a test.
 *
 *   node --import tsx bench/django-import.ts [--users 100000] [--target sqlite | postgres://…]
 *
 * A PostgreSQL target gets a fresh schema, dropped afterwards.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import Database from 'better-sqlite3'
import pg from 'pg'

const { values } = parseArgs({ options: { users: { type: 'string', default: '100000' }, target: { type: 'string', default: 'sqlite' } } })
const USERS = Number(values.users)
const CLI = join(import.meta.dirname, '..', 'bin', 'portrait.js')
const TIME = '/usr/bin/time'

const DDL = `CREATE TABLE "users_users" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL,
  "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "is_staff" bool NOT NULL,
  "is_active" bool NOT NULL, "date_joined" datetime NOT NULL, "email" varchar(200) NOT NULL UNIQUE, "first_name" varchar(200) NOT NULL,
  "last_name" varchar(200) NOT NULL, "number_phone" varchar(10) NOT NULL, "avatar" varchar(100) NULL)`

/** N users as Django writes them: pbkdf2 hashes (text only: the import never computes them), a few case-only email twins. */
function buildSource(path: string): void {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.exec(DDL)
  const insert = db.prepare(`insert into users_users values (?, ?, ?, 0, ?, 0, 1, ?, ?, ?, ?, '', null)`)
  const first = ['Ada', 'Grace', 'Linus', 'Zoë', 'José', 'Margaret', 'Ken', '  Edsger ']
  db.transaction(() => {
    for (let id = 1; id <= USERS; id++) {
      const salt = id.toString(36).padStart(22, 'x')
      const hash = `pbkdf2_sha256$260000$${salt}$${Buffer.alloc(32, id % 251).toString('base64')}`
      // Every 1000th email repeats an earlier one in capitals: Django allows it, Portrait keeps the older.
      const email = id % 1000 === 0 ? `USER${id - 1}@EXAMPLE.COM` : `user${id}@example.com`
      const when = new Date(Date.UTC(2020, 0, 1) + id * 60_000).toISOString().replace('T', ' ').replace('Z', '')
      insert.run(id, hash, id % 3 ? when : null, `user${id}`, when, email, first[id % first.length], `Surname${id}`)
    }
  })()
  db.close()
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-bench-django-'))
  let schema: string | undefined
  try {
    const source = join(dir, 'django.sqlite3')
    let started = performance.now()
    buildSource(source)
    console.log(`built ${USERS} Django users in ${((performance.now() - started) / 1000).toFixed(1)} s`)

    const env: Record<string, string> = { ...(process.env as Record<string, string>), DATA_DIR: dir, MEDIA_ROOT: join(dir, 'media'), LOG_LEVEL: 'silent' }
    if (values.target === 'sqlite') env.DATABASE_URL = `sqlite:${join(dir, 'portrait.db')}`
    else {
      schema = `bench_django_${process.pid}`
      await query(values.target, `create schema ${schema}`)
      Object.assign(env, { DATABASE_URL: values.target, DATABASE_SCHEMA: schema })
    }
    const command = [process.execPath, CLI, 'import-django', '--from', `sqlite:${source}`, '--report', join(dir, 'report.json')]
    const timed = existsSync(TIME)
    started = performance.now()
    const run = timed
      ? spawnSync(TIME, ['-f', 'peak-rss-kb %M', ...command], { env, encoding: 'utf8' })
      : spawnSync(command[0] as string, command.slice(1), { env, encoding: 'utf8' })
    const seconds = (performance.now() - started) / 1000
    if (run.status !== 0) throw new Error(`import failed: ${run.stderr}`)
    console.log(run.stdout.trim())
    const peak = /peak-rss-kb (\d+)/.exec(run.stderr)?.[1]
    console.log(
      `\nimport of ${USERS} users into ${values.target === 'sqlite' ? 'SQLite' : 'PostgreSQL'}: ${seconds.toFixed(1)} s ` +
        `(${Math.round(USERS / seconds)} rows/s), peak RSS ${peak ? `${(Number(peak) / 1024).toFixed(0)} MB` : 'unknown (no /usr/bin/time)'}`,
    )
  } finally {
    if (schema) await query(values.target, `drop schema ${schema} cascade`)
    rmSync(dir, { recursive: true, force: true })
  }
}

async function query(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

await main()
