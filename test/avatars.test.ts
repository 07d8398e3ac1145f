import assert from 'node:assert/strict'
import { existsSync, utimesSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import sharp from 'sharp'
import { type SweepOptions, sweepUnreferencedAvatars } from '../src/avatars/media-sweep.js'
import { createAvatarStorage } from '../src/avatars/storage-factory.js'
import { ConcurrencyLimit } from '../src/concurrency.js'
import { createDb } from '../src/db/database.js'
import { UsersRepository } from '../src/users/users.repository.js'
import { DIALECTS, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { BOUNDARY, bigPng, EXIF_MARKER, type Format, GPS_MARKER, image, jpegWithExif, multipart, type Part, storedFiles } from './helpers/images.js'
import { suite } from './helpers/suite.js'

/** Serves the app on a real socket (closed with the app) and returns the port. */
async function listen(app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as AddressInfo).port
}

/** The status line of the first response that arrives on a raw socket. */
function firstStatusLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = ''
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1')
      const end = received.indexOf('\r\n')
      if (end >= 0) resolve(received.slice(0, end))
    })
    socket.on('error', reject)
    socket.on('close', () => reject(new Error(`closed before a status line: ${JSON.stringify(received)}`)))
  })
}

const AVATAR_URL = /^\/media\/avatars\/([A-Za-z0-9_-]{22}\.webp)$/

function upload(client: TestClient, me: Session, parts: Part[], method: 'PUT' | 'PATCH' = 'PUT', headers: Record<string, string> = {}) {
  const body = multipart(parts)
  return client.send(method, `/api/users/${me.user.id}`, body.payload, me.access, { ...body.headers, ...headers })
}

const avatarPart = (content: Buffer | string, filename = 'me.jpg', contentType = 'image/jpeg'): Part => ({
  name: 'avatar',
  filename,
  content,
  contentType,
})

/** The stored name behind an avatar URL (asserting the URL has our shape). */
function nameOf(url: unknown): string {
  const match = AVATAR_URL.exec(String(url))
  assert.ok(match, `not an avatar URL: ${url}`)
  return match[1] as string
}

for (const dialect of DIALECTS) {
  suite(`avatars (${dialect.name})`, dialect.skip, () => {
    test('when a JPEG, PNG, WebP or GIF is uploaded under any name and type, then a WebP is stored and served with strict headers', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const formats: Format[] = ['jpeg', 'png', 'webp', 'gif']
      for (const format of formats) {
        // The file name and the part's Content-Type lie on purpose: content decides.
        const response = await upload(client, me, [avatarPart(await image(format, 30, 20), `photo.${format}.txt`, 'text/plain')])
        assert.equal(response.statusCode, 200, `${format}: ${response.body}`)
        const name = nameOf(response.json().avatar)
        assert.deepEqual(storedFiles(config.mediaRoot), [name], format)
        const served = await client.get(`/media/avatars/${name}`)
        assert.equal(served.statusCode, 200)
        assert.equal(served.headers['content-type'], 'image/webp')
        assert.equal(served.headers['cache-control'], 'public, max-age=31536000, immutable')
        assert.equal(served.headers['x-content-type-options'], 'nosniff')
        assert.match(String(served.headers['content-security-policy']), /default-src 'none'/)
        const stored = await sharp(served.rawPayload).metadata()
        assert.deepEqual([stored.format, stored.width, stored.height], ['webp', 30, 20], format)
      }
    })

    test('when an image is larger than AVATAR_SIZE, then it is fitted inside it; a smaller one is not enlarged', async (t) => {
      const { client } = await testApp(t, dialect.name, { avatarSize: 32 })
      const me = await client.signUp()
      const cases: [number, number, number, number][] = [
        [100, 50, 32, 16],
        [40, 80, 16, 32],
        [64, 64, 32, 32],
        [20, 10, 20, 10],
      ]
      for (const [width, height, fittedWidth, fittedHeight] of cases) {
        const response = await upload(client, me, [avatarPart(await image('png', width, height), 'x.png', 'image/png')])
        const served = await client.get(`/media/avatars/${nameOf(response.json().avatar)}`)
        const { width: w, height: h } = await sharp(served.rawPayload).metadata()
        assert.deepEqual([w, h], [fittedWidth, fittedHeight], `${width}x${height}`)
      }
    })

    test('when a JPEG carries an EXIF orientation, GPS tags and an ICC profile, then the stored image is rotated and carries none of them', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const original = await jpegWithExif()
      // The fixture really has what we claim to strip.
      const before = await sharp(original).metadata()
      assert.deepEqual([before.width, before.height, before.orientation], [40, 20, 6])
      assert.ok(before.exif && before.icc && original.includes(GPS_MARKER))
      const response = await upload(client, me, [avatarPart(original)])
      assert.equal(response.statusCode, 200, response.body)
      const name = nameOf(response.json().avatar)
      const { readFile } = await import('node:fs/promises')
      const stored = await readFile(join(config.mediaRoot, 'avatars', name))
      const after = await sharp(stored).metadata()
      assert.deepEqual([after.format, after.width, after.height], ['webp', 20, 40])
      assert.equal(after.orientation, undefined)
      assert.equal(after.exif, undefined)
      assert.equal(after.icc, undefined)
      assert.equal(after.xmp, undefined)
      assert.ok(!stored.includes(GPS_MARKER) && !stored.includes(EXIF_MARKER))
      assert.ok(!stored.includes('Exif') && !stored.includes('ICCP'))
    })

    test('when the upload is not an acceptable image, then 400 on avatar, the profile is unchanged and no file is left', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const first = await upload(client, me, [avatarPart(await image('jpeg'))])
      const kept = storedFiles(config.mediaRoot)
      const before = (await client.get('/api/users/me', me.access)).body
      assert.equal(JSON.parse(before).avatar, first.json().avatar)
      const jpeg = await image('jpeg', 200, 200)
      const gif = await image('gif')
      const cases: [string, Part][] = [
        ['text named .png', avatarPart('just some text, honestly', 'photo.png', 'image/png')],
        [
          'SVG with a script',
          avatarPart('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>', 'a.svg', 'image/svg+xml'),
        ],
        ['GIF header followed by HTML', avatarPart(Buffer.concat([Buffer.from('GIF89a'), Buffer.from('<html><script>alert(1)</script></html>')]), 'a.gif', 'image/gif')],
        ['GIF cut short', avatarPart(gif.subarray(0, 20), 'a.gif', 'image/gif')],
        ['truncated JPEG', avatarPart(jpeg.subarray(0, Math.floor(jpeg.length / 2)))],
        ['JPEG header with PHP', avatarPart(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('<?php system($_GET["c"]); ?>')]), 'a.php.jpg')],
        ['TIFF', avatarPart(await image('tiff' as Format), 'a.tiff', 'image/tiff')],
        ['20000x20000 PNG', avatarPart(bigPng(20000, 20000), 'bomb.png', 'image/png')],
        ['just over 40 million pixels', avatarPart(bigPng(6325, 6325), 'bomb.png', 'image/png')],
        ['a 0-byte file with a name', avatarPart(Buffer.alloc(0), 'empty.jpg')],
      ]
      for (const [name, part] of cases) {
        const problem = problemOf(await upload(client, me, [{ name: 'first_name', value: 'Changed' }, part]), 400)
        assert.deepEqual(Object.keys(problem.errors ?? {}), ['avatar'], name)
        if (name.includes('pixels') || name.includes('20000')) assert.match(problem.errors?.avatar?.[0] ?? '', /too many pixels/, name)
        assert.deepEqual(storedFiles(config.mediaRoot), kept, name)
      }
      assert.equal((await client.get('/api/users/me', me.access)).body, before)
    })

    test('when the multipart body itself is wrong, then 4xx (never 500), nothing changes and no file is left', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { avatarMaxBytes: 1024 * 1024 })
      const me = await client.signUp()
      await upload(client, me, [avatarPart(await image('jpeg'))])
      const kept = storedFiles(config.mediaRoot)
      const before = (await client.get('/api/users/me', me.access)).body
      const png = await image('png')
      const url = `/api/users/${me.user.id}`
      const send = (payload: Buffer | string, contentType = multipart([]).headers['content-type'] as string) =>
        client.send('PATCH', url, payload, me.access, { 'content-type': contentType })
      const tooBig = await upload(client, me, [avatarPart(Buffer.alloc(1024 * 1024 + 1, 0xff))])
      problemOf(tooBig, 413)
      const sixMiB = await upload(client, me, [{ name: 'first_name', value: 'x' }, avatarPart(Buffer.alloc(6 * 1024 * 1024, 7))])
      problemOf(sixMiB, 413)
      const twoAvatars = await upload(client, me, [avatarPart(png, 'a.png'), avatarPart(png, 'b.png')])
      assert.ok(twoAvatars.statusCode >= 400 && twoAvatars.statusCode < 500, twoAvatars.body)
      problemOf(twoAvatars, twoAvatars.statusCode)
      const otherName = problemOf(await upload(client, me, [{ name: 'photo', filename: 'a.png', content: png }]), 400)
      assert.deepEqual(Object.keys(otherName.errors ?? {}), ['photo'])
      const fileAndField = problemOf(await upload(client, me, [{ name: 'avatar', value: '' }, avatarPart(png)]), 400)
      assert.deepEqual(Object.keys(fileAndField.errors ?? {}), ['avatar'])
      const unclosed = multipart([{ name: 'first_name', value: 'x' }, avatarPart(png)], { close: false })
      const broken: [string, Buffer | string, string?][] = [
        ['boundary never closes', unclosed.payload],
        ['boundary never closes, mid-file', unclosed.payload.subarray(0, unclosed.payload.length - 40)],
        ['not multipart at all', '{"first_name": "x"}'],
        ['no boundary parameter', multipart([{ name: 'first_name', value: 'x' }]).payload, 'multipart/form-data'],
        ['another boundary', multipart([{ name: 'first_name', value: 'x' }]).payload, 'multipart/form-data; boundary=other'],
        ['garbage part headers', `--${multipart([]).headers['content-type']?.split('boundary=')[1]}\r\nnonsense\r\n\r\nx\r\n`],
      ]
      for (const [name, payload, contentType] of broken) {
        const response = await send(payload, contentType)
        assert.ok(response.statusCode >= 400 && response.statusCode < 500, `${name}: ${response.statusCode} ${response.body}`)
        problemOf(response, response.statusCode)
      }
      assert.deepEqual(storedFiles(config.mediaRoot), kept)
      assert.equal((await client.get('/api/users/me', me.access)).body, before)
    })

    test('when a form sends an empty nameless file part (no file chosen), then nothing changes', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const first = await upload(client, me, [avatarPart(await image('png'))])
      const response = await upload(client, me, [{ name: 'first_name', value: 'Kept' }, avatarPart(Buffer.alloc(0), '', 'application/octet-stream')])
      assert.equal(response.statusCode, 200, response.body)
      assert.equal(response.json().avatar, first.json().avatar)
      assert.equal(response.json().first_name, 'Kept')
      assert.deepEqual(storedFiles(config.mediaRoot), [nameOf(first.json().avatar)])
    })

    test('when an avatar is replaced or removed, then the old file is gone and its URL answers 404', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const url = `/api/users/${me.user.id}`
      const removals: [string, () => ReturnType<TestClient['request']>][] = [
        ['JSON null', () => client.send('PATCH', url, { avatar: null }, me.access)],
        ['urlencoded empty field', () => client.send('PUT', url, 'avatar=', me.access, { 'content-type': 'application/x-www-form-urlencoded' })],
        ['multipart empty field', () => upload(client, me, [{ name: 'avatar', value: '' }])],
      ]
      for (const [how, remove] of removals) {
        const first = nameOf((await upload(client, me, [avatarPart(await image('jpeg'))])).json().avatar)
        const second = nameOf((await upload(client, me, [avatarPart(await image('webp'))], 'PATCH')).json().avatar)
        assert.notEqual(first, second)
        assert.deepEqual(storedFiles(config.mediaRoot), [second], how)
        problemOf(await client.get(`/media/avatars/${first}`), 404)
        assert.equal((await client.get(`/media/avatars/${second}`)).statusCode, 200)
        const removed = await remove()
        assert.equal(removed.statusCode, 200, `${how}: ${removed.body}`)
        assert.equal(removed.json().avatar, null, how)
        assert.deepEqual(storedFiles(config.mediaRoot), [], how)
        problemOf(await client.get(`/media/avatars/${second}`), 404)
      }
    })

    test('when JSON sends back the current avatar URL, then it is accepted and nothing changes', async (t) => {
      const { client } = await testApp(t, dialect.name, { publicUrl: 'https://cdn.example.com' })
      const me = await client.signUp()
      const first = await upload(client, me, [avatarPart(await image('png'))])
      const avatar = first.json().avatar as string
      assert.match(avatar, /^https:\/\/cdn\.example\.com\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
      const response = await client.send('PUT', `/api/users/${me.user.id}`, { ...(first.json() as object), first_name: 'Same avatar' }, me.access)
      assert.equal(response.statusCode, 200, response.body)
      assert.equal(response.json().avatar, avatar)
      problemOf(await client.send('PUT', `/api/users/${me.user.id}`, { avatar: avatar.replace('https://cdn.example.com', '') }, me.access), 400)
    })

    test('when an upload comes with other fields and one of them fails, then the new image is not kept', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      await client.signUp({ username: 'taken' })
      const me = await client.signUp()
      const first = nameOf((await upload(client, me, [avatarPart(await image('jpeg'))])).json().avatar)
      const png = await image('png')
      problemOf(await upload(client, me, [{ name: 'username', value: 'TAKEN' }, avatarPart(png)]), 400)
      problemOf(await upload(client, me, [{ name: 'is_admin', value: '1' }, avatarPart(png)]), 400)
      problemOf(await upload(client, me, [avatarPart(png)], 'PUT', { 'if-match': '"stale"' }), 412)
      assert.deepEqual(storedFiles(config.mediaRoot), [first])
      const read = await client.get('/api/users/me', me.access)
      assert.equal(nameOf(read.json().avatar), first)
      // With the current ETag the same upload goes through, and the tag it answered with is then the only good one.
      const matched = await upload(client, me, [avatarPart(png)], 'PATCH', { 'if-match': String(read.headers.etag) })
      assert.equal(matched.statusCode, 200, matched.body)
      assert.notEqual(matched.headers.etag, read.headers.etag)
      problemOf(await upload(client, me, [avatarPart(png)], 'PATCH', { 'if-match': String(read.headers.etag) }), 412)
      assert.deepEqual(storedFiles(config.mediaRoot), [nameOf(matched.json().avatar)])
    })

    test('when many uploads for one user run at once, then the profile points at exactly one file and no other remains', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const images = await Promise.all((['jpeg', 'png', 'webp', 'gif', 'jpeg', 'png', 'webp', 'gif'] as Format[]).map((f, i) => image(f, 20 + i, 20)))
      const responses = await Promise.all(images.map((bytes) => upload(client, me, [avatarPart(bytes)])))
      for (const response of responses) assert.equal(response.statusCode, 200, response.body)
      const name = nameOf((await client.get('/api/users/me', me.access)).json().avatar)
      assert.deepEqual(storedFiles(config.mediaRoot), [name])
      assert.equal((await client.get(`/media/avatars/${name}`)).statusCode, 200)
    })

    test('when an upload is far too large, then 413 arrives before the client has sent the rest', async (t) => {
      const { app, client, config } = await testApp(t, dialect.name, { avatarMaxBytes: 64 * 1024 })
      const me = await client.signUp()
      const port = await listen(app)
      const head = multipart([avatarPart(Buffer.alloc(0))]).payload.subarray(0, -(`\r\n--${BOUNDARY}--\r\n`.length))
      const declared = 64 * 1024 * 1024
      const socket = connect(port, '127.0.0.1')
      deferCleanup(t, () => socket.destroy())
      socket.write(
        `PUT /api/users/${me.user.id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${me.access}\r\n` +
          `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${head.length + declared}\r\n\r\n`,
      )
      socket.write(head)
      // A quarter MiB of a declared 64 MiB: the answer must not wait for the other 63.75 MiB.
      socket.write(Buffer.alloc(256 * 1024, 0xff))
      const status = await firstStatusLine(socket)
      assert.match(status, /^HTTP\/1\.1 413 /)
      assert.deepEqual(storedFiles(config.mediaRoot), [])
    })

    test('when a client aborts in the middle of an upload, then the server carries on and keeps no file', async (t) => {
      const { app, client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const port = await listen(app)
      const jpeg = await image('jpeg', 400, 400)
      for (const cut of [10, jpeg.length / 2, jpeg.length]) {
        const body = multipart([{ name: 'first_name', value: 'Aborted' }, avatarPart(jpeg)]).payload
        const socket = connect(port, '127.0.0.1')
        await new Promise((resolve) => socket.once('connect', resolve))
        socket.write(
          `PATCH /api/users/${me.user.id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${me.access}\r\n` +
            `Content-Type: multipart/form-data; boundary=${BOUNDARY}\r\nContent-Length: ${body.length}\r\n\r\n`,
        )
        socket.write(body.subarray(0, Math.floor(body.indexOf(Buffer.from([0xff, 0xd8])) + cut)))
        await new Promise((resolve) => setTimeout(resolve, 50))
        socket.destroy()
      }
      // The server still answers, over the socket and in process, and nothing was applied or kept.
      const response = await fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: { authorization: `Bearer ${me.access}` } })
      assert.equal(response.status, 200)
      assert.equal((await response.json()).first_name, '')
      assert.deepEqual(storedFiles(config.mediaRoot), [])
      const after = await upload(client, me, [avatarPart(jpeg)])
      assert.equal(after.statusCode, 200, after.body)
    })

    test('when the sweep runs, then unreferenced images and stale temporary files go, and with a minimum age young ones stay', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const kept = nameOf((await upload(client, me, [avatarPart(await image('png'))])).json().avatar)
      const dir = join(config.mediaRoot, 'avatars')
      const hourAgo = new Date(Date.now() - 3_600_000)
      const planted = { oldOrphan: `${'o'.repeat(22)}.webp`, youngOrphan: `${'y'.repeat(22)}.webp`, oldTemp: `.${'t'.repeat(22)}.webp.abc.tmp`, notOurs: 'README.txt' }
      for (const name of Object.values(planted)) writeFileSync(join(dir, name), 'x')
      for (const name of [planted.oldOrphan, planted.oldTemp, kept]) utimesSync(join(dir, name), hourAgo, hourAgo)
      const db = createDb(config)
      deferCleanup(t, () => db.destroy())
      const sweep = async (options?: SweepOptions) =>
        sweepUnreferencedAvatars(db.kysely, new UsersRepository(db.dialect), await createAvatarStorage(config, db), options)
      assert.equal(await sweep({ minAgeMs: 600_000 }), 2)
      assert.deepEqual(storedFiles(config.mediaRoot), [kept, planted.youngOrphan, planted.notOurs].sort())
      assert.equal(await sweep(), 1)
      assert.deepEqual(storedFiles(config.mediaRoot), [kept, planted.notOurs].sort())
      assert.equal((await client.get(`/media/avatars/${kept}`)).statusCode, 200)
    })

    test('when a media name is not one we handed out, then 404', async (t) => {
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const name = nameOf((await upload(client, me, [avatarPart(await image('png'))])).json().avatar)
      assert.ok(existsSync(join(config.mediaRoot, 'avatars', name)))
      for (const bad of [
        '..',
        '%2e%2e',
        '%2e%2e%2f',
        '..%2f..%2fportrait.db',
        '%2e%2e%2f%2e%2e%2fportrait.db',
        'unknown',
        `${'A'.repeat(22)}.webp`,
        name.replace('.webp', '.WEBP'),
        `${name}.png`,
        `.${name}`,
        `${name}%00`,
        encodeURIComponent(`../avatars/${name}`),
      ]) {
        const response = await client.get(`/media/avatars/${bad}`)
        assert.equal(response.statusCode, 404, bad)
        assert.notEqual(response.headers['content-type'], 'image/webp', bad)
      }
      assert.equal((await client.get(`/media/avatars/${name}`)).statusCode, 200)
    })
  })
}

test('when more image tasks arrive than the limit allows, then at most the limit run at once and a failure frees its slot', async () => {
  const limit = new ConcurrencyLimit(2)
  let running = 0
  let most = 0
  const gates: (() => void)[] = []
  const task = (value: number, fail = false) => async () => {
    running++
    most = Math.max(most, running)
    await new Promise<void>((resolve) => gates.push(resolve))
    running--
    if (fail) throw new Error(`task ${value} failed`)
    return value
  }
  const settling = Promise.allSettled([1, 2, 3, 4, 5, 6].map((n) => limit.run(task(n, n === 2))))
  // Open the gates one by one as tasks reach them, until every task has run.
  for (let opened = 0; opened < 6; opened++) {
    while (gates.length === 0) await new Promise((resolve) => setImmediate(resolve))
    assert.ok(running <= 2)
    ;(gates.shift() as () => void)()
  }
  const settled = await settling
  assert.equal(most, 2)
  assert.deepEqual(settled.map((r) => (r.status === 'fulfilled' ? r.value : 'failed')), [1, 'failed', 3, 4, 5, 6])
})
