import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { registerSqliteFunctions } from '../src/db/database.js'
import { deferCleanup } from './helpers/cleanup.js'

const CLI = join(import.meta.dirname, '..', 'bin', 'portrait.js')

function portrait(args: string[], env: Record<string, string>) {
  const result = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', input: '' })
  return { code: result.status, out: result.stdout, err: result.stderr }
}

function sandbox() {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-cli-'))
  return { dir, env: { DATABASE_URL: `sqlite:${join(dir, 'p.db')}`, MEDIA_ROOT: join(dir, 'media'), DATA_DIR: dir } }
}

test('when migrate runs twice, then the second run has nothing to do', () => {
  const { env } = sandbox()
  const first = portrait(['migrate'], env)
  assert.equal(first.code, 0, first.err)
  assert.match(first.out, /applied: 0001_initial/)
  assert.match(portrait(['migrate'], env).out, /up to date/)
})

test('when create-superuser is given a name, an email and a password, then a staff superuser exists and can sign in', () => {
  const { dir, env } = sandbox()
  const result = portrait(['create-superuser', '--username', 'root', '--email', 'root@example.com'], { ...env, PORTRAIT_PASSWORD: 'Very-long-admin-pass-7' })
  assert.equal(result.code, 0, result.err)
  const row = new Database(join(dir, 'p.db')).prepare('select is_staff, is_superuser, password_hash from users where username = ?').get('root') as Record<string, unknown>
  assert.equal(row.is_superuser, 1)
  assert.equal(row.is_staff, 1)
  assert.match(String(row.password_hash), /^\$argon2id\$/)
  assert.doesNotMatch(result.out + result.err, /Very-long-admin-pass-7/)
  const again = portrait(['create-superuser', '--username', 'ROOT', '--email', 'other@example.com'], { ...env, PORTRAIT_PASSWORD: 'Very-long-admin-pass-7' })
  assert.equal(again.code, 2)
  assert.match(again.err, /already exists/)
})

test('when create-superuser gets a weak password or no terminal to ask on, then it refuses', () => {
  const { env } = sandbox()
  const weak = portrait(['create-superuser', '--username', 'root', '--email', 'root@example.com'], { ...env, PORTRAIT_PASSWORD: 'password' })
  assert.equal(weak.code, 2)
  assert.match(weak.err, /too common|too short/)
  const noTty = portrait(['create-superuser', '--username', 'root', '--email', 'root@example.com'], env)
  assert.equal(noTty.code, 2)
  assert.match(noTty.err, /PORTRAIT_PASSWORD/)
})

test('when media gc runs, then image files no profile references are removed and nothing else', () => {
  const { dir, env } = sandbox()
  assert.equal(portrait(['migrate'], env).code, 0)
  const avatars = join(dir, 'media', 'avatars')
  mkdirSync(avatars, { recursive: true })
  const kept = `${'k'.repeat(22)}.webp`
  const orphan = `${'o'.repeat(22)}.webp`
  for (const name of [kept, orphan, 'README.txt']) writeFileSync(join(avatars, name), 'x')
  const db = new Database(join(dir, 'p.db'))
  // The search index's triggers call the app's own functions (src/users/search-index.ts).
  registerSqliteFunctions(db)
  db.prepare(
    `insert into users (username, username_lower, email, email_lower, password_hash, avatar, date_joined, is_active, is_staff, is_superuser)
     values ('a', 'a', 'a@x.io', 'a@x.io', 'h', ?, '2026-01-01T00:00:00.000Z', 1, 0, 0)`,
  ).run(kept)
  db.close()
  // By default a recent orphan is spared: it may be an upload whose profile row is about to commit.
  const spared = portrait(['media', 'gc'], env)
  assert.equal(spared.code, 0, spared.err)
  assert.match(spared.out, /removed 0 /)
  const old = new Date(Date.now() - 11 * 60_000)
  utimesSync(join(avatars, orphan), old, old)
  const result = portrait(['media', 'gc'], env)
  assert.equal(result.code, 0, result.err)
  assert.match(result.out, /removed 1 /)
  assert.deepEqual(readdirSync(avatars).sort(), ['README.txt', kept].sort())
  writeFileSync(join(avatars, orphan), 'x')
  assert.match(portrait(['media', 'gc', '--min-age', '0'], env).out, /removed 1 /)
  assert.equal(portrait(['media', 'gc', '--min-age', 'soon'], env).code, 2)
})

test('when the command is unknown or the config is bad, then it exits 2 with a usage line', () => {
  const { env } = sandbox()
  const unknown = portrait(['frobnicate'], env)
  assert.equal(unknown.code, 2)
  assert.match(unknown.err, /unknown command: frobnicate/)
  const badConfig = portrait(['migrate'], { ...env, DATABASE_URL: 'mysql://nope' })
  assert.equal(badConfig.code, 2)
  assert.match(badConfig.err, /DATABASE_URL=/)
})

test('when help is asked for, in any of its spellings, then the usage goes to stdout and the exit code is 0', () => {
  const { env } = sandbox()
  for (const args of [['--help'], ['-h'], ['help']]) {
    const help = portrait(args, { ...env, DATABASE_URL: 'mysql://not-even-read' })
    assert.equal(help.code, 0, args.join(' '))
    assert.equal(help.err, '')
    assert.match(help.out, /^usage: portrait <command>/)
    for (const command of ['migrate', 'create-superuser', 'users reset-mfa', 'media gc']) assert.match(help.out, new RegExp(`^  ${command}\\b`, 'm'))
  }
  for (const args of [['create-superuser', '--help'], ['media', 'gc', '-h'], ['help', 'migrate']]) {
    const help = portrait(args, env)
    assert.equal(help.code, 0, args.join(' '))
    assert.match(help.out, new RegExp(`^usage: portrait ${args.filter((word) => !/^(-h|--help|help)$/.test(word)).join(' ')}\\b`), args.join(' '))
    assert.doesNotMatch(help.out, /commands:/, 'one command, not the whole list')
  }
})

test('when a command refuses its input, then only the reason is printed; a usage error prints the usage', () => {
  const { env } = sandbox()
  const args = ['create-superuser', '--username', 'root', '--email', 'root@example.com']
  const weak = portrait(args, { ...env, PORTRAIT_PASSWORD: 'password' })
  assert.equal(weak.code, 2)
  assert.match(weak.err, /^portrait: password: This password is too common\.\n$/)
  assert.equal(portrait(args, { ...env, PORTRAIT_PASSWORD: 'Quartz-lantern-4f9c2e' }).code, 0)
  const taken = portrait(args, { ...env, PORTRAIT_PASSWORD: 'Quartz-lantern-4f9c2e' })
  assert.equal(taken.code, 2)
  assert.match(taken.err, /^portrait: A user with that username already exists\.\n$/)
  const wrong = portrait(['create-superuser', '--username', 'x', '--bogus'], env)
  assert.equal(wrong.code, 2)
  assert.match(wrong.err, /^portrait: Unknown option '--bogus'.*\n\nusage: portrait create-superuser --username U --email E\n/s)
})

/** create-superuser on a terminal (script(1) gives it one), typing each answer once its prompt appears. */
function onTerminal(t: test.TestContext, env: Record<string, string>, answers: string[]): Promise<{ code: number | null; out: string }> {
  const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} create-superuser --username root --email root@example.com`
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  deferCleanup(t, () => child.kill('SIGKILL'))
  let out = ''
  let asked = 0
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk
    const prompts = out.match(/Password( \(again\))?: /g)?.length ?? 0
    while (asked < prompts && asked < answers.length) child.stdin.write(`${answers[asked++]}\r`)
  })
  return new Promise((resolveRun) => child.once('exit', (code) => resolveRun({ code, out })))
}

test('when create-superuser prompts for the password, then it asks twice, hides it, and refuses two different answers', { skip: !existsSync('/usr/bin/script') && 'needs script(1)' }, async (t) => {
  const { env } = sandbox()
  const differ = await onTerminal(t, env, ['Quartz-lantern-4f9c2e', 'Quartz-lantern-4f9c2f'])
  assert.equal(differ.code, 2, differ.out)
  assert.match(differ.out, /Password: [\s\S]*Password \(again\): [\s\S]*the two passwords differ/)
  assert.doesNotMatch(differ.out, /Quartz/, 'nothing typed is echoed')
  const same = await onTerminal(t, env, ['Quartz-lantern-4f9c2e', 'Quartz-lantern-4f9c2e'])
  assert.equal(same.code, 0, same.out)
  assert.match(same.out, /superuser root created/)
})

test('when users send-reset names a user, then a reset link is recorded in the outbox and delivered at once (an .eml without SMTP_URL)', async (t) => {
  const { dir, env } = sandbox()
  const created = portrait(['create-superuser', '--username', 'Ada', '--email', 'ada@example.com'], { ...env, PORTRAIT_PASSWORD: 'Very-long-admin-pass-7' })
  assert.equal(created.code, 0, created.err)
  const sent = portrait(['users', 'send-reset', 'ADA@example.com'], env)
  assert.equal(sent.code, 0, sent.err)
  assert.match(sent.out, /password-reset link for Ada \(id \d+\) sent to a\*\*\*@example\.com/)
  assert.match(sent.err, /mail written to file.*\.eml/)
  assert.doesNotMatch(sent.out + sent.err, /ada@example\.com/)
  const files = readdirSync(join(dir, 'outbox'))
  assert.equal(files.length, 1)
  const { simpleParser } = await import('mailparser')
  const { readFileSync } = await import('node:fs')
  const mail = await simpleParser(readFileSync(join(dir, 'outbox', files[0] as string)))
  assert.match(mail.text ?? '', /http:\/\/127\.0\.0\.1:8000\/reset-password#token=[A-Za-z0-9_-]{43}/)
  // By username too; the row is in the same outbox a server would deliver from.
  assert.equal(portrait(['users', 'send-reset', 'ada'], env).code, 0)
  const rows = new Database(join(dir, 'p.db')).prepare('select sent_at from mail_outbox').all() as { sent_at: string | null }[]
  assert.equal(rows.length, 2)
  assert.ok(rows.every((row) => row.sent_at !== null))
  t.diagnostic(sent.out.trim())
})

test('when users send-reset gets no user, an unknown one or a deactivated one, then it refuses with exit code 2', () => {
  const { dir, env } = sandbox()
  assert.equal(portrait(['create-superuser', '--username', 'bea', '--email', 'bea@example.com'], { ...env, PORTRAIT_PASSWORD: 'Very-long-admin-pass-7' }).code, 0)
  const none = portrait(['users', 'send-reset'], env)
  assert.equal(none.code, 2)
  assert.match(none.err, /takes one USER[\s\S]*usage: portrait users send-reset USER/)
  const unknown = portrait(['users', 'send-reset', 'nobody'], env)
  assert.equal(unknown.code, 2)
  assert.match(unknown.err, /no user has the username or email "nobody"/)
  new Database(join(dir, 'p.db')).prepare('update users set is_active = 0').run()
  const inactive = portrait(['users', 'send-reset', 'bea'], env)
  assert.equal(inactive.code, 2)
  assert.match(inactive.err, /deactivated/)
  const help = portrait(['users', 'send-reset', '--help'], env)
  assert.equal(help.code, 0)
  assert.match(help.out, /password-reset link/)
})
