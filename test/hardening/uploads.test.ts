import assert from 'node:assert/strict'
import { test } from 'node:test'
import sharp from 'sharp'
import { Api, assertProblem, type Part, putMultipart } from './client.js'
import {
  EXIF_MARKER,
  GPS_MARKER,
  gifBomb,
  gifBytes,
  gifHtmlPolyglot,
  HTML_PAYLOAD,
  jpegBytes,
  jpegWithMetadata,
  PHP_PAYLOAD,
  pngBomb,
  pngBytes,
  SVG_WITH_SCRIPT,
  webpBomb,
  webpBytes,
  XMP_MARKER,
  zipBytes,
} from './images.js'
import { allFiles, avatarFiles, dataDir, startServer } from './server.js'

// ASVS V12 (files and resources): content decides, never the name or the client's type; nothing hostile is stored or served.

const AVATAR_MAX_BYTES = 256 * 1024
const STORED_NAME = /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/

test('uploads against a running server', async (t) => {
  const data = dataDir(t)
  const server = await startServer(t, { data, env: { AVATAR_MAX_BYTES: String(AVATAR_MAX_BYTES) } })
  const api = new Api(server.url)
  const user = await api.signUp('uploader')
  const upload = (parts: Part[]) => putMultipart(api, user.user.id, user.access, parts)
  const avatar = (content: Buffer | string, filename = 'avatar.png', contentType = 'image/png'): Part => ({ name: 'avatar', filename, content, contentType })

  const png = await pngBytes()
  const jpeg = await jpegBytes()
  const rejected: [string, Part[], number][] = [
    ['a text file labelled image/png', [avatar('just some text, not an image')], 400],
    ['an HTML page named .jpg', [avatar(HTML_PAYLOAD, 'x.jpg', 'image/jpeg')], 400],
    ['an SVG with a script', [avatar(SVG_WITH_SCRIPT, 'x.svg', 'image/svg+xml')], 400],
    ['an SVG with a script named .png', [avatar(SVG_WITH_SCRIPT, 'x.png', 'image/png')], 400],
    ['a GIF header followed by HTML and PHP', [avatar(gifHtmlPolyglot(), 'x.gif', 'image/gif')], 400],
    ['a PHP script named .php.png', [avatar(PHP_PAYLOAD, 'shell.php.png')], 400],
    ['a truncated PNG', [avatar(png.subarray(0, Math.floor(png.length / 2)))], 400],
    ['a truncated JPEG', [avatar(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), 'x.jpg', 'image/jpeg')], 400],
    ['PNG magic bytes only', [avatar(png.subarray(0, 8))], 400],
    ['a file one byte over AVATAR_MAX_BYTES', [avatar(Buffer.concat([png, Buffer.alloc(AVATAR_MAX_BYTES + 1 - png.length)]))], 413],
    ['a 20000×20000 PNG (decompression bomb)', [avatar(pngBomb(20_000, 20_000))], 400],
    ['a 65535×65535 GIF in a few bytes', [avatar(gifBomb(), 'x.gif', 'image/gif')], 400],
    ['a 16384×16384 WebP in a few bytes', [avatar(webpBomb(), 'x.webp', 'image/webp')], 400],
    ['a 0-byte file', [avatar(Buffer.alloc(0))], 400],
    ['a non-image named ../../evil.webp', [avatar(HTML_PAYLOAD, '../../evil.webp', 'image/webp')], 400],
    ['two avatar files at once', [avatar(png), avatar(jpeg, 'b.jpg', 'image/jpeg')], 400],
    ['an image under another field name', [{ name: 'picture', filename: 'a.png', content: png }], 400],
    ['an avatar file plus an avatar text field', [avatar(png), { name: 'avatar', value: '' }], 400],
  ]
  for (const [name, parts, status] of rejected) {
    await t.test(`when the upload is ${name}, then it answers ${status}, stores nothing and serves nothing`, async () => {
      const before = await api.me(user.access)
      const filesBefore = allFiles(data.dir)
      const reply = await upload(parts)
      assertProblem(reply, status)
      assert.equal((await api.me(user.access)).text, before.text, 'the profile changed')
      assert.deepEqual(allFiles(data.dir), filesBefore, 'a file was written')
      assertProblem(await api.call('/media/avatars/evil.webp'), 404)
      assertProblem(await api.call('/media/avatars/..%2F..%2Fevil.webp'), 404)
    })
  }

  await t.test('when the server has refused every hostile upload, then it still answers', async () => {
    assert.equal((await api.me(user.access)).status, 200)
    assert.deepEqual(avatarFiles(data), [])
  })

  await t.test('when a real image is named ../../evil.webp, then it is stored under a random name inside MEDIA_ROOT only', async () => {
    const reply = await upload([avatar(png, '../../evil.webp', 'text/html')])
    assert.equal(reply.status, 200, reply.text)
    assert.match(reply.json.avatar, STORED_NAME)
    assert.ok(!allFiles(data.dir).some((file) => file.includes('evil')), allFiles(data.dir).join('\n'))
    assert.deepEqual(avatarFiles(data), [reply.json.avatar.split('/').pop()])
  })

  await t.test('when a JPEG carries an appended zip or HTML, then what is stored and served is a clean WebP without it', async () => {
    for (const tail of [zipBytes(), Buffer.from(HTML_PAYLOAD + PHP_PAYLOAD)]) {
      const reply = await upload([avatar(Buffer.concat([jpeg, tail]), 'polyglot.jpg', 'image/jpeg')])
      if (reply.status !== 200) {
        assertProblem(reply, 400)
        continue
      }
      const served = await fetch(`${server.url}${reply.json.avatar}`)
      const bytes = Buffer.from(await served.arrayBuffer())
      assert.equal(served.headers.get('content-type'), 'image/webp')
      assert.equal(served.headers.get('x-content-type-options'), 'nosniff')
      assert.equal(bytes.subarray(8, 12).toString('latin1'), 'WEBP')
      for (const marker of ['PK\u0003\u0004', '<script', '<?php', 'evil.php']) assert.ok(!bytes.includes(marker), `served bytes contain ${marker}`)
      assert.equal(avatarFiles(data).length, 1, 'the replaced image was not removed')
    }
  })

  await t.test('when an image carries EXIF, GPS, XMP and ICC metadata, then the stored file carries none and is upright', async () => {
    const reply = await upload([avatar(await jpegWithMetadata(), 'photo.jpg', 'image/jpeg')])
    assert.equal(reply.status, 200, reply.text)
    const served = await fetch(`${server.url}${reply.json.avatar}`)
    assert.equal(served.status, 200)
    const bytes = Buffer.from(await served.arrayBuffer())
    for (const marker of [GPS_MARKER, EXIF_MARKER, XMP_MARKER, 'Exif', 'GPS', 'xmpmeta', 'ICCP']) {
      assert.ok(!bytes.includes(marker), `the stored image still contains ${marker}`)
    }
    const metadata = await sharp(bytes).metadata()
    assert.equal(metadata.format, 'webp')
    assert.equal(metadata.exif, undefined)
    assert.equal(metadata.xmp, undefined)
    assert.equal(metadata.icc, undefined)
    assert.equal(metadata.orientation, undefined)
    // Orientation 6 was applied to the pixels: 40×20 became 20×40.
    assert.deepEqual([metadata.width, metadata.height], [20, 40])
  })

  await t.test('when every allowed format is uploaded, then each is re-encoded as WebP and only the latest file remains', async () => {
    for (const [bytes, name] of [
      [png, 'a.png'],
      [jpeg, 'a.jpg'],
      [await gifBytes(), 'a.gif'],
      [await webpBytes(), 'a.webp'],
    ] as const) {
      const reply = await upload([avatar(bytes, name, 'application/octet-stream')])
      assert.equal(reply.status, 200, `${name}: ${reply.text}`)
      assert.match(reply.json.avatar, STORED_NAME)
      assert.deepEqual(avatarFiles(data), [reply.json.avatar.split('/').pop()])
    }
  })
})
