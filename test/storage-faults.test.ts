import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmdirSync, rmSync, utimesSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { deferCleanup, removeWhenDone } from './helpers/cleanup.js'
import { image, multipart } from './helpers/images.js'
import { callServer, startServer, waitForHealth } from './helpers/processes.js'
import { suite } from './helpers/suite.js'

// Real faults on file systems of the test's own: a small tmpfs that can be filled or remounted read-only.
// We run as root, so permission bits would not stop a write; a read-only mount or a full disk does.

/** Why mount tests cannot run here (mount not permitted), or false when they can. */
const MOUNT_SKIP: string | false = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-mount-probe-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' })
    execFileSync('umount', [dir], { stdio: 'pipe' })
    return false
  } catch (error) {
    return `cannot mount a tmpfs here (${String((error as { stderr?: Buffer }).stderr ?? error).trim()})`
  } finally {
    rmdirSync(dir)
  }
})()

interface Tmpfs {
  dir: string
  remount(mode: 'ro' | 'rw'): void
  /** Writes a file until the file system has no block left. */
  fill(): void
  /** Removes what fill() wrote. */
  free(): void
}

/** A tmpfs of `size` (e.g. `2m`) on a fresh directory, unmounted and removed when the test ends. */
function tmpfs(t: TestContext, size: string): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-tmpfs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  deferCleanup(t, () => {
    // Lazy: a server or app of this test may still hold a file open; the mount goes once it lets go.
    execFileSync('umount', ['-l', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  const filler = join(dir, 'filler')
  return {
    dir,
    remount: (mode) => execFileSync('mount', ['-o', `remount,${mode}`, dir]),
    fill() {
      const fd = openSync(filler, 'a')
      const chunk = Buffer.alloc(4096, 1)
      try {
        for (;;) writeSync(fd, chunk)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
      } finally {
        closeSync(fd)
      }
    },
    free: () => rmSync(filler, { force: true }),
  }
}

const temporaryFiles = (avatarsDir: string) => readdirSync(avatarsDir).filter((name) => name.endsWith('.tmp'))

async function uploadAvatar(client: TestClient, me: Session) {
  const body = multipart([{ name: 'avatar', filename: 'me.png', content: await image('png', 40, 30), contentType: 'image/png' }])
  return client.send('PATCH', `/api/users/${me.user.id}`, body.payload, me.access, body.headers)
}

function assertStorageUnavailable(response: Awaited<ReturnType<typeof uploadAvatar>>, detail: RegExp) {
  const problem = problemOf(response, 503)
  assert.equal(problem.type, '/problems/service_unavailable')
  assert.match(problem.detail, detail)
  assert.ok(Number(response.headers['retry-after']) > 0, 'Retry-After')
  assert.doesNotMatch(response.body, /ENOSPC|EROFS|\/tmp\//)
}

/** What does not need the media disk: a JSON profile edit, a sign-in, reading the profile. */
async function assertEverythingElseWorks(client: TestClient, me: Session, firstName: string) {
  const edited = await client.send('PATCH', `/api/users/${me.user.id}`, { first_name: firstName }, me.access)
  assert.equal(edited.statusCode, 200, edited.body)
  assert.equal(edited.json().first_name, firstName)
  const signIn = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
  assert.equal(signIn.statusCode, 200, signIn.body)
  assert.equal((await client.get('/api/users/me', me.access)).statusCode, 200)
}

suite('media storage faults (fs driver, real tmpfs)', MOUNT_SKIP, () => {
  test('when the avatar disk is full, then uploads get 503 "full", no temp file stays, the rest works, health names media; freeing space recovers', async (t) => {
    const disk = tmpfs(t, '2m')
    const { client } = await testApp(t, 'sqlite', { mediaRoot: disk.dir })
    const avatarsDir = join(disk.dir, 'avatars')
    const me = await client.signUp()
    const before = await uploadAvatar(client, me)
    assert.equal(before.statusCode, 200, before.body)

    disk.fill()
    assertStorageUnavailable(await uploadAvatar(client, me), /avatar storage is full/i)
    assert.deepEqual(temporaryFiles(avatarsDir), [], 'a failed write leaves no temporary file')
    await assertEverythingElseWorks(client, me, 'Full')
    // The image stored before the fault is still served.
    assert.equal((await client.get(new URL(before.json().avatar, 'http://x').pathname)).statusCode, 200)
    const health = await client.get('/api/health')
    assert.equal(health.statusCode, 503)
    assert.deepEqual(health.json(), { status: 'unavailable', checks: { database: 'ok', media: 'down' } })

    disk.free()
    const after = await uploadAvatar(client, me)
    assert.equal(after.statusCode, 200, after.body)
    const healthy = await client.get('/api/health')
    assert.equal(healthy.statusCode, 200, healthy.body)
    assert.deepEqual(healthy.json().checks, { database: 'ok', media: 'ok' })
    assert.deepEqual(temporaryFiles(avatarsDir), [])
  })

  test('when the avatar directory is read-only, then uploads get 503 "not writable", removing an avatar and the rest work; rw recovers', async (t) => {
    const disk = tmpfs(t, '4m')
    const { client } = await testApp(t, 'sqlite', { mediaRoot: disk.dir })
    const me = await client.signUp()
    assert.equal((await uploadAvatar(client, me)).statusCode, 200)

    disk.remount('ro')
    assertStorageUnavailable(await uploadAvatar(client, me), /avatar storage is not writable/i)
    await assertEverythingElseWorks(client, me, 'Readonly')
    // Dropping the avatar commits; the file it can no longer delete is left for the sweep, not thrown at the client.
    const removed = await client.send('PATCH', `/api/users/${me.user.id}`, { avatar: null }, me.access)
    assert.equal(removed.statusCode, 200, removed.body)
    assert.equal(removed.json().avatar, null)
    const health = await client.get('/api/health')
    assert.equal(health.statusCode, 503)
    assert.equal(health.json().checks.media, 'down')

    disk.remount('rw')
    assert.equal((await uploadAvatar(client, me)).statusCode, 200)
    assert.equal((await client.get('/api/health')).statusCode, 200)
  })
})

test('when a temporary file is older than the configured age, then the periodic sweep removes it while the app runs; a young one stays', async (t) => {
  const { app, config } = await testApp(t, 'sqlite', { mediaTempSweepIntervalMs: 50, mediaTempMaxAgeMs: 60_000 })
  const avatarsDir = join(config.mediaRoot, 'avatars')
  // Planted after the start-up sweep, so only a sweep that runs while serving can take it.
  const old = join(avatarsDir, `.${'o'.repeat(22)}.webp.0123456789ab.tmp`)
  const young = join(avatarsDir, `.${'y'.repeat(22)}.webp.0123456789ab.tmp`)
  writeFileSync(old, 'partial')
  writeFileSync(young, 'in flight')
  const hourAgo = new Date(Date.now() - 3_600_000)
  utimesSync(old, hourAgo, hourAgo)
  const deadline = Date.now() + 10_000
  while (existsSync(old) && Date.now() < deadline) await new Promise((wait) => setTimeout(wait, 25))
  assert.equal(existsSync(old), false, 'the old temporary file was swept')
  assert.equal(existsSync(young), true, 'a young temporary file (a write in flight) stays')
  assert.equal((await app.inject({ method: 'GET', url: '/api/health' })).statusCode, 200)
})

function assertDatabaseUnavailable(response: Awaited<ReturnType<typeof callServer>>) {
  assert.equal(response.status, 503, JSON.stringify(response.json))
  assert.equal(response.json.type, '/problems/service_unavailable')
  assert.match(response.json.detail, /database/)
  assert.ok(Number(response.headers.get('retry-after')) > 0, 'Retry-After')
  assert.doesNotMatch(JSON.stringify(response.json), /SQLITE|readonly|\/tmp\//)
}

const signUpBody = { username: 'rosa', email: 'rosa@example.com', password: GOOD_PASSWORD }
const signInBody = { username: 'rosa', password: GOOD_PASSWORD }

suite('SQLite storage faults (real tmpfs)', MOUNT_SKIP, () => {
  test('when the SQLite file system is read-only at a restart, then health says database down, writes get 503, and rw recovers without a restart', async (t) => {
    const disk = tmpfs(t, '16m')
    const env = { DATABASE_URL: `sqlite:${join(disk.dir, 'portrait.db')}` }
    const first = await startServer(t, { env })
    const { access } = (await callServer(first, 'POST', '/api/auth/sign-up', signUpBody)).json
    // A crash leaves the WAL and its index behind, as when a host's disk turns read-only under a running server.
    await first.kill()
    assert.ok(existsSync(join(disk.dir, 'portrait.db-wal')))
    // The kernel refuses to remount read-only while a process holds a file open for writing, so the fault comes between runs.
    disk.remount('ro')

    const server = await startServer(t, { env, waitForHealthy: false })
    const health = await waitForHealth(server.url, 503, Date.now() + 20_000, server.output)
    assert.deepEqual(health, { status: 'unavailable', checks: { database: 'down', media: 'ok' } })
    // Reads still work; every write is a 503, never a 500.
    assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).status, 200)
    assertDatabaseUnavailable(await callServer(server, 'PATCH', '/api/users/me', { first_name: 'Rosa' }, access))
    assertDatabaseUnavailable(await callServer(server, 'POST', '/api/auth/sign-in', signInBody))

    disk.remount('rw')
    // Traffic alone brings it back (no health poll in between): the next writes reopen the file.
    let edited = await callServer(server, 'PATCH', '/api/users/me', { first_name: 'Rosa' }, access)
    for (const deadline = Date.now() + 20_000; edited.status === 503 && Date.now() < deadline; ) {
      await new Promise((wait) => setTimeout(wait, 200))
      edited = await callServer(server, 'PATCH', '/api/users/me', { first_name: 'Rosa' }, access)
    }
    assert.equal(edited.status, 200, JSON.stringify(edited.json))
    assert.equal((await callServer(server, 'GET', '/api/health')).status, 200)
    assert.equal((await callServer(server, 'POST', '/api/auth/sign-in', signInBody)).status, 200)
    assert.equal((await callServer(server, 'GET', '/api/users/me', undefined, access)).json.first_name, 'Rosa')
    assert.equal(server.child.exitCode, null)
  })

  test('when the SQLite database cannot be opened at start, then the server exits 1 with one line naming the cause', async (t) => {
    const disk = tmpfs(t, '16m')
    const env = { DATABASE_URL: `sqlite:${join(disk.dir, 'portrait.db')}` }
    const first = await startServer(t, { env })
    await first.stop()
    // A clean stop removes the WAL index; read-only, SQLite cannot make a new one, so the file cannot be opened.
    disk.remount('ro')
    const dir = mkdtempSync(join(tmpdir(), 'portrait-rodb-'))
    removeWhenDone(t, dir)
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: join(import.meta.dirname, '..'),
      env: { PATH: process.env.PATH, DATA_DIR: dir, MEDIA_ROOT: join(dir, 'media'), PORT: '0', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    })
    assert.equal(result.status, 1, result.stderr)
    assert.match(result.stderr.trim(), /^portrait: [^\n]*SQLite file[^\n]*\(SQLITE_CANTOPEN[^\n]*$/)
    assert.doesNotMatch(result.stderr, /SqliteError|\n\s+at /)
  })

  test('when the SQLite disk fills while serving, then writes get 503 (not 500), reads work, and freeing space recovers', async (t) => {
    const disk = tmpfs(t, '8m')
    const { client } = await testApp(t, 'sqlite', { databaseUrl: `sqlite:${join(disk.dir, 'portrait.db')}` })
    const me = await client.signUp()
    disk.fill()
    const refused = await client.send('PATCH', `/api/users/${me.user.id}`, { first_name: 'x'.repeat(100), last_name: 'y'.repeat(100) }, me.access)
    const problem = problemOf(refused, 503)
    assert.match(problem.detail, /database/)
    assert.ok(Number(refused.headers['retry-after']) > 0)
    assert.equal((await client.get('/api/users/me', me.access)).statusCode, 200)
    disk.free()
    const edited = await client.send('PATCH', `/api/users/${me.user.id}`, { first_name: 'Freed' }, me.access)
    assert.equal(edited.statusCode, 200, edited.body)
  })
})
