import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import pg from 'pg'
import sharp from 'sharp'
import { createAvatarStorage } from '../src/avatars/storage-factory.js'
import type { Config } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { type ImportSummary, importDjangoUsers, type RowReport } from '../src/import/django-import.js'
import { openDjangoSource } from '../src/import/django-source.js'
import { UsersRepository } from '../src/users/users.repository.js'
import { DIALECTS, GOOD_PASSWORD, type TestClient, testApp } from './helpers/app.js'
import { removeWhenDone } from './helpers/cleanup.js'
import { freshSchema, POSTGRES_SKIP, queryPostgres } from './helpers/postgres.js'
import { suite } from './helpers/suite.js'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'django-users')
const FIXTURE_DB = join(FIXTURE, 'db.sqlite3')
const MEDIA = join(FIXTURE, 'media')
const CLI = join(import.meta.dirname, '..', 'bin', 'portrait.js')

interface FixtureUser {
  id: number
  username: string
  email: string
  password: string | null
  hash_format: string
  is_active: boolean
  first_name: string
  conflict: string | null
}
const USERS = JSON.parse(readFileSync(join(FIXTURE, 'users.json'), 'utf8')) as FixtureUser[]

/** Runs the importer against the target `config` names, collecting every row's outcome. */
async function runImport(config: Config, from: string, options: { dryRun?: boolean; mediaRoot?: string; table?: string; batchSize?: number } = {}) {
  const db = createDb(config)
  const source = openDjangoSource(from, options.table ?? 'users_users')
  const rows: RowReport[] = []
  try {
    const summary = await importDjangoUsers({
      source,
      db,
      users: new UsersRepository(db.dialect),
      storage: await createAvatarStorage(config, db),
      config,
      mediaRoot: 'mediaRoot' in options ? options.mediaRoot : MEDIA,
      dryRun: options.dryRun,
      batchSize: options.batchSize ?? 4,
      onRows: (batch) => rows.push(...batch),
    })
    return { summary, rows: new Map(rows.map((row) => [row.id, row])) }
  } finally {
    await source.close()
    await db.destroy()
  }
}

/** The stored rows, straight from the target database. */
async function storedUsers(config: Config): Promise<Record<string, unknown>[]> {
  const db = createDb(config)
  try {
    return await db.kysely.selectFrom('users').selectAll().orderBy('id').execute()
  } finally {
    await db.destroy()
  }
}

async function setPasswordHash(config: Config, id: number, hash: string): Promise<void> {
  const db = createDb(config)
  try {
    await db.kysely.updateTable('users').set({ password_hash: hash }).where('id', '=', id).execute()
  } finally {
    await db.destroy()
  }
}

const signIn = (client: TestClient, username: string, password: string) =>
  client.send('POST', '/api/auth/sign-in', { username, password })

for (const dialect of DIALECTS) {
  suite(`Django import (${dialect.name} target)`, dialect.skip, () => {
    test('when the fixture is imported, then every user with a password signs in with it over HTTP and is stored with argon2id after', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const { summary, rows } = await runImport(config, `sqlite:${FIXTURE_DB}`)
      assert.equal(summary.read, 13)
      assert.equal(summary.imported, 12)
      assert.deepEqual(summary.hashFormats, {
        pbkdf2_sha256: 6,
        pbkdf2_sha1: 1,
        argon2: 1,
        bcrypt_sha256: 1,
        bcrypt: 1,
        scrypt: 1,
        md5: 1,
        unusable: 1,
      })
      // Emails differing only by case: the older account keeps it.
      assert.equal(rows.get(12)?.outcome, 'skipped')
      assert.equal(rows.get(12)?.kept_id, 11)
      assert.match(String(rows.get(12)?.reason), /email/)

      const before = new Map((await storedUsers(config)).map((row) => [row.id as number, row]))
      assert.deepEqual([...before.keys()], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13])
      assert.equal(before.get(8)?.first_name, 'Edsger', 'surrounding white space trimmed')
      assert.equal(before.get(10)?.username, 'José.Núñez')
      assert.equal(Boolean(before.get(6)?.is_active), false)
      assert.equal(Boolean(before.get(4)?.is_superuser), true)
      assert.equal(before.get(7)?.last_login, null)
      assert.equal(new Date(before.get(1)?.date_joined as string).toISOString(), '2025-11-03T08:33:03.228Z')
      assert.match(String(before.get(1)?.password_hash), /^pbkdf2_sha256\$260000\$/, 'the hash is imported as it is')

      for (const user of USERS.filter((user) => user.password !== null && user.conflict === null)) {
        const response = await signIn(client, user.username, user.password as string)
        if (!user.is_active) {
          assert.equal(response.statusCode, 401, user.username)
          continue
        }
        assert.equal(response.statusCode, 200, `${user.hash_format} ${user.username}: ${response.body}`)
        assert.equal(response.json().user.id, user.id)
      }
      const after = new Map((await storedUsers(config)).map((row) => [row.id as number, row]))
      for (const user of USERS.filter((user) => user.password !== null && user.conflict === null && user.is_active)) {
        assert.match(String(after.get(user.id)?.password_hash), /^\$argon2id\$/, `${user.username} upgraded`)
        // The upgraded hash holds the same password.
        const byEmail = await client.send('POST', '/api/auth/sign-in', { email: user.email, password: user.password })
        assert.equal(byEmail.statusCode, 200, byEmail.body)
        assert.equal((await signIn(client, user.username, `${user.password}!`)).statusCode, 401)
      }
      // The inactive user's hash is left as it was (never a successful sign-in); the unusable one matches nothing.
      assert.match(String(after.get(6)?.password_hash), /^bcrypt\$/)
      for (const password of ['', 'alan', String(before.get(9)?.password_hash)]) {
        const refused = await signIn(client, 'alan', password)
        assert.ok(refused.statusCode === 401 || (password === '' && refused.statusCode === 400), refused.body)
      }

      // New sign-ups continue after Django's sequence (14: a deleted row), never reusing an id.
      const created = await client.signUp({ username: 'newcomer', email: 'newcomer@example.com' })
      assert.equal(created.user.id, 15)
      assert.equal(summary.nextId, 15)
    })

    test('when a user with a legacy hash changes the password, then the current one is checked against it and argon2id is written', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      await runImport(config, `sqlite:${FIXTURE_DB}`, { mediaRoot: undefined })
      const session = (await signIn(client, 'linus', 'penguin-Kernel-1991')).json()
      // Back to the Django hash, as if this were the first request after the import.
      const django = new Database(FIXTURE_DB, { readonly: true })
      const legacy = (django.prepare('select password from users_users where id = 3').get() as { password: string }).password
      django.close()
      await setPasswordHash(config, 3, legacy)
      const wrong = await client.send('POST', '/api/users/3/password', { current_password: 'penguin', new_password: GOOD_PASSWORD }, session.access)
      assert.equal(wrong.statusCode, 400)
      const changed = await client.send(
        'POST',
        '/api/users/3/password',
        { current_password: 'penguin-Kernel-1991', new_password: GOOD_PASSWORD },
        session.access,
      )
      assert.equal(changed.statusCode, 204, changed.body)
      const [row] = (await storedUsers(config)).filter((user) => user.id === 3)
      assert.match(String(row?.password_hash), /^\$argon2id\$/)
      assert.equal((await signIn(client, 'linus', GOOD_PASSWORD)).statusCode, 200)
    })

    test('when the stored hash changed after it was verified, then the upgrade leaves the newer one', async (t) => {
      const { config } = await testApp(t, dialect.name)
      await runImport(config, `sqlite:${FIXTURE_DB}`, { mediaRoot: undefined })
      const db = createDb(config)
      try {
        const users = new UsersRepository(db.dialect)
        const legacy = (await users.findById(db.kysely, 5))?.password_hash as string
        // A password change committed between the sign-in's check and its upgrade:
        await users.update(db.kysely, 5, { password_hash: '$argon2id$changed' })
        assert.equal(await users.upgradePasswordHash(db.kysely, 5, legacy, '$argon2id$stale-upgrade'), false)
        assert.equal((await users.findById(db.kysely, 5))?.password_hash, '$argon2id$changed')
      } finally {
        await db.destroy()
      }
    })

    test('when avatars are imported, then they went through the upload pipeline; a missing one is reported and the user imported without', async (t) => {
      const { config, client } = await testApp(t, dialect.name, dialect.name === 'postgres' ? { mediaStorage: 'db' } : {})
      const { summary, rows } = await runImport(config, `sqlite:${FIXTURE_DB}`)
      assert.deepEqual(summary.avatars, { imported: 2, missing: 1, invalid: 0 })
      assert.equal(rows.get(13)?.outcome, 'imported')
      assert.equal(rows.get(13)?.avatar?.outcome, 'missing')
      const session = (await signIn(client, 'ada', 'analytical-Engine-1843')).json()
      assert.match(String(session.user.avatar), /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
      const served = await client.get(session.user.avatar)
      assert.equal(served.statusCode, 200)
      assert.equal(served.headers['content-type'], 'image/webp')
      const original = await sharp(join(MEDIA, 'avatars', 'ada.jpg')).metadata()
      const stored = await sharp(served.rawPayload).metadata()
      assert.equal(stored.format, 'webp')
      assert.equal(stored.exif, undefined, 'EXIF and GPS stripped')
      assert.ok(Math.max(stored.width ?? 0, stored.height ?? 0) <= config.avatarSize)
      // Orientation 6: the stored image is upright, so its sides are swapped relative to the stored JPEG's.
      assert.equal(original.orientation, 6)
      assert.equal((stored.width ?? 0) < (stored.height ?? 0), (original.height ?? 0) < (original.width ?? 0))
      const [row13] = (await storedUsers(config)).filter((row) => row.id === 13)
      assert.equal(row13?.avatar, null)
    })

    test('when the import is run again, then nothing already imported changes and it says so; a dry run writes nothing', async (t) => {
      const { config } = await testApp(t, dialect.name)
      const dry = await runImport(config, `sqlite:${FIXTURE_DB}`, { dryRun: true })
      assert.equal(dry.summary.imported, 12)
      assert.equal(dry.summary.skipped, 1)
      assert.equal(dry.summary.avatars.imported, 2)
      assert.equal(dry.rows.get(1)?.outcome, 'would_import')
      assert.equal(dry.rows.get(12)?.kept_id, 11, 'a dry run judges collisions across batches too')
      assert.equal(dry.summary.nextId, 15)
      assert.deepEqual(await storedUsers(config), [])
      if (config.mediaStorage === 'fs') assert.deepEqual(readdirSync(join(config.mediaRoot, 'avatars')).filter((name) => name.endsWith('.webp')), [])

      await runImport(config, `sqlite:${FIXTURE_DB}`)
      const first = await storedUsers(config)
      const again = await runImport(config, `sqlite:${FIXTURE_DB}`)
      assert.equal(again.summary.imported, 0)
      assert.equal(again.summary.alreadyImported, 12)
      assert.equal(again.summary.skipped, 1)
      assert.equal(again.rows.get(1)?.outcome, 'already_imported')
      assert.deepEqual(again.summary.avatars, { imported: 0, missing: 0, invalid: 0 })
      assert.deepEqual(await storedUsers(config), first, 'rows unchanged, versions included')
      if (config.mediaStorage === 'fs') assert.equal(readdirSync(join(config.mediaRoot, 'avatars')).filter((name) => name.endsWith('.webp')).length, 2)
    })

    test('when Django rows break Portrait rules, then repairable ones are trimmed, colliding and invalid ones reported with the reason and kept id', async (t) => {
      const { config, client } = await testApp(t, dialect.name)
      const dir = mkdtempSync(join(tmpdir(), 'portrait-django-'))
      removeWhenDone(t, dir)
      const source = join(dir, 'db.sqlite3')
      copyFileSync(FIXTURE_DB, source)
      cpSync(MEDIA, join(dir, 'media'), { recursive: true })
      writeFileSync(join(dir, 'media', 'avatars', 'notes.jpg'), 'this is not an image')
      const django = new Database(source)
      const insert = django.prepare(`insert into users_users (id, password, last_login, is_superuser, username, is_staff, is_active,
        date_joined, email, first_name, last_name, number_phone, avatar) values (?, 'md5$s$00000000000000000000000000000000', null, 0, ?, 0, 1,
        '2026-02-01 10:00:00.5', ?, '', '', ?, ?)`)
      insert.run(20, 'ADA', 'ada2@example.com', '', null) // username taken ignoring case
      insert.run(21, 'rnargaret', 'rn@example.com', '', null) // looks like "margaret" (rn → m)
      insert.run(22, 'pаypal', 'mixed@example.com', '', null) // Cyrillic а among Latin letters
      insert.run(23, 'no-email', 'not an email', '', null)
      insert.run(24, '  spacey  ', ' spacey@example.com ', ' +4420 ', 'avatars/notes.jpg') // trimmed; avatar undecodable
      insert.run(25, 'escaper', 'escaper@example.com', '', '../../db.sqlite3')
      insert.run(26, 'phone', 'phone@example.com', '555-0100', null) // not digits
      django.close()

      const { summary, rows } = await runImport(config, `sqlite:${source}`, { mediaRoot: join(dir, 'media'), batchSize: 5 })
      assert.equal(rows.get(20)?.kept_id, 1)
      assert.match(String(rows.get(20)?.reason), /^username taken/)
      assert.equal(rows.get(21)?.kept_id, 4)
      assert.match(String(rows.get(21)?.reason), /^username looks alike/)
      assert.match(String(rows.get(22)?.reason), /^invalid username .*one script/)
      assert.match(String(rows.get(23)?.reason), /^invalid email .*valid email/)
      assert.match(String(rows.get(26)?.reason), /^invalid number_phone/)
      for (const id of [20, 21, 22, 23, 26]) assert.equal(rows.get(id)?.outcome, 'skipped')
      assert.equal(rows.get(24)?.outcome, 'imported')
      assert.equal(rows.get(24)?.avatar?.outcome, 'invalid')
      assert.equal(rows.get(25)?.avatar?.outcome, 'missing')
      assert.match(String(rows.get(25)?.avatar?.reason), /outside/)
      assert.deepEqual(summary.avatars, { imported: 2, missing: 2, invalid: 1 })
      assert.equal(summary.skipped, 6)
      assert.deepEqual(summary.skippedBy, { 'email taken': 1, 'username taken': 1, 'username looks alike': 1, 'invalid username "pаypal"': 1, 'invalid email "not an email"': 1, 'invalid number_phone "555-0100"': 1 })

      const stored = (await storedUsers(config)).filter((row) => Number(row.id) >= 20)
      assert.deepEqual(
        stored.map((row) => [row.id, row.username, row.email, row.number_phone, row.avatar]),
        [
          [24, 'spacey', 'spacey@example.com', '+4420', null],
          [25, 'escaper', 'escaper@example.com', '', null],
        ],
      )
      // The next sign-up gets an id above every imported one.
      assert.equal((await client.signUp()).user.id, 27)
    })
  })
}

/** Django's own PostgreSQL table for the model (3.2: serial id, timestamptz, boolean), filled from the fixture's rows. */
async function djangoOnPostgres(schema: string): Promise<void> {
  await queryPostgres(
    `CREATE TABLE "users_users" ("id" serial NOT NULL PRIMARY KEY, "password" varchar(128) NOT NULL, "last_login" timestamp with time zone NULL,
      "is_superuser" boolean NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "is_staff" boolean NOT NULL, "is_active" boolean NOT NULL,
      "date_joined" timestamp with time zone NOT NULL, "email" varchar(200) NOT NULL UNIQUE, "first_name" varchar(200) NOT NULL,
      "last_name" varchar(200) NOT NULL, "number_phone" varchar(10) NOT NULL, "avatar" varchar(100) NULL)`,
    [],
    { schema },
  )
  const django = new Database(FIXTURE_DB, { readonly: true })
  const rows = django.prepare('select * from users_users order by id').all() as Record<string, unknown>[]
  django.close()
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL, options: `-c search_path=${schema}` })
  await client.connect()
  try {
    for (const row of rows) {
      const utc = (value: unknown) => (value === null ? null : `${value}+00`)
      await client.query(
        `insert into users_users (id, password, last_login, is_superuser, username, is_staff, is_active, date_joined, email, first_name,
          last_name, number_phone, avatar) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [row.id, row.password, utc(row.last_login), row.is_superuser === 1, row.username, row.is_staff === 1, row.is_active === 1,
          utc(row.date_joined), row.email, row.first_name, row.last_name, row.number_phone, row.avatar],
      )
    }
    // As on the SQLite original: the sequence handed out 14, whose row was deleted.
    await client.query(`select setval(pg_get_serial_sequence('users_users', 'id'), 14)`)
  } finally {
    await client.end()
  }
}

suite('Django import from a PostgreSQL source', POSTGRES_SKIP, () => {
  test('when the Django database is on PostgreSQL, then `portrait import-django` imports it the same, with a report of every row', async (t) => {
    const schema = await freshSchema(t)
    await djangoOnPostgres(schema)
    const dir = mkdtempSync(join(tmpdir(), 'portrait-django-cli-'))
    removeWhenDone(t, dir)
    const env = { ...process.env, DATABASE_URL: `sqlite:${join(dir, 'p.db')}`, MEDIA_ROOT: join(dir, 'media'), DATA_DIR: dir }
    const report = join(dir, 'report.json')
    const args = ['import-django', '--from', process.env.TEST_DATABASE_URL as string, '--table', `${schema}.users_users`, '--media-root', MEDIA, '--report', report]
    const run = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', input: '' })
    assert.equal(run.status, 0, run.stderr)
    assert.match(run.stdout, /imported: +12\n/)
    assert.match(run.stdout, /id 12 "frances2": email taken: .* user 11/)
    assert.match(run.stdout, /avatars: +2 imported, 1 missing, 0 invalid/)
    assert.match(run.stdout, /next new user id: +15/)
    assert.doesNotMatch(run.stdout + run.stderr, /\[#/, 'no progress bar without a terminal')
    const written = JSON.parse(readFileSync(report, 'utf8')) as { rows: RowReport[]; summary: Omit<ImportSummary, 'skippedExamples' | 'avatarProblems'> }
    assert.equal(written.rows.length, 13)
    assert.equal(written.summary.imported, 12)
    assert.deepEqual(written.rows.find((row) => row.id === 13)?.avatar, { source: 'avatars/gone.jpg', outcome: 'missing', reason: 'file not found' })

    const target = new Database(join(dir, 'p.db'), { readonly: true })
    const rows = target.prepare('select id, username, date_joined, last_login, is_active, password_hash from users order by id').all() as Record<string, unknown>[]
    target.close()
    assert.deepEqual(rows.map((row) => row.id), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13])
    assert.equal(rows[0]?.date_joined, '2025-11-03T08:33:03.228Z')
    assert.equal(rows[5]?.is_active, 0)

    const again = spawnSync(process.execPath, [CLI, ...args.slice(0, -2)], { env, encoding: 'utf8', input: '' })
    assert.equal(again.status, 0, again.stderr)
    assert.match(again.stdout, /already imported: +12 \(left unchanged\)/)
  })
})

test('when --from or --table is wrong, then the command says so in one line and exits 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-django-cli-'))
  try {
    const env = { ...process.env, DATABASE_URL: `sqlite:${join(dir, 'p.db')}`, DATA_DIR: dir }
    for (const args of [['--from', 'mysql://x'], ['--from', `sqlite:${FIXTURE_DB}`, '--table', 'users; drop table x'], ['--from', `sqlite:${join(dir, 'none.db')}`]]) {
      const run = spawnSync(process.execPath, [CLI, 'import-django', ...args], { env, encoding: 'utf8', input: '' })
      assert.equal(run.status, 2, run.stderr)
      assert.match(run.stderr, /^portrait: /)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

const SCRIPT = '/usr/bin/script'

test('when run on a terminal as a dry run against a target that does not exist, then it draws a progress bar and creates nothing', { skip: existsSync(SCRIPT) ? false : 'no script(1) to give the command a terminal' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-django-tty-'))
  try {
    const env = { ...process.env, DATABASE_URL: `sqlite:${join(dir, 'target', 'p.db')}`, MEDIA_ROOT: join(dir, 'media'), DATA_DIR: dir }
    const command = [process.execPath, CLI, 'import-django', '--from', `sqlite:${FIXTURE_DB}`, '--media-root', MEDIA, '--dry-run']
    // script(1) runs the command on a pseudo-terminal, as a person at a terminal would.
    const run = spawnSync(SCRIPT, ['-qec', command.map((part) => `'${part}'`).join(' '), '/dev/null'], { env, encoding: 'utf8', input: '' })
    assert.equal(run.status, 0, run.stdout + run.stderr)
    assert.match(run.stdout, /\[#{30}\] 13\/13 100%/)
    assert.match(run.stdout, /dry run: nothing written/)
    assert.match(run.stdout, /would import: +12/)
    assert.match(run.stdout, /avatars: +2 would be imported, 1 missing, 0 invalid/)
    assert.deepEqual(readdirSync(dir), [], 'no database file, no media directory')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
