import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import sharp from 'sharp'
import { countJpegScans, InvalidImageError, MAX_JPEG_SCANS, processAvatar, transcode } from '../src/avatars/image.js'
import { ConfigError, imageConcurrencyFor, loadConfig } from '../src/config.js'
import { jpegScanBomb, progressiveJpegBytes } from './hardening/images.js'

// Issue 11 §3: the cost of one upload is bounded before decoding (scan count) and during it (time limit),
// and image work never takes every libuv thread.

const ROOT = join(import.meta.dirname, '..')
const bytes = (...parts: (number[] | string)[]) => Buffer.concat(parts.map((part) => Buffer.from(part as never, typeof part === 'string' ? 'latin1' : undefined)))
const SOI = [0xff, 0xd8]
const EOI = [0xff, 0xd9]
const SOS = [0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x00] // one component, Ss 1, Se 63

test('when JPEG scans are counted, then only the SOS markers libjpeg would read count', async () => {
  assert.equal(countJpegScans(await sharp({ create: { width: 64, height: 48, channels: 3, background: '#3a7' } }).jpeg().toBuffer()), 1)
  const progressive = await progressiveJpegBytes()
  assert.equal(countJpegScans(progressive), 10)
  assert.equal(countJpegScans(await jpegScanBomb(500, 64)), 510)
  assert.equal(countJpegScans(await jpegScanBomb(500, 64), MAX_JPEG_SCANS), MAX_JPEG_SCANS + 1, 'counting stops past the limit')

  // A thumbnail inside APP1 (as EXIF carries one) is skipped by its segment length.
  const app1 = (content: Buffer) => bytes([0xff, 0xe1, (content.length + 2) >> 8, (content.length + 2) & 0xff], content.toString('latin1'))
  const thumbnail = await progressiveJpegBytes(64, 48)
  assert.equal(countJpegScans(Buffer.concat([progressive.subarray(0, 2), app1(thumbnail), progressive.subarray(2)])), 10)
  // In entropy-coded data: FF00 is a stuffed byte (the DA after it is data), FFD0–D7 restart markers, FFFF fill before a marker.
  assert.equal(countJpegScans(bytes(SOI, SOS, [0x11, 0xff, 0x00, 0xda, 0xff, 0xd0, 0x22, 0xff, 0xd7, 0xff, 0x00], [0xff, 0xff], SOS, [0x33], EOI)), 2)
  // Stray bytes before a marker do not hide it (libjpeg skips them with a warning and reads the scan).
  assert.equal(countJpegScans(bytes(SOI, SOS, 'junk', SOS, 'more junk\u0000\u0001', SOS, EOI)), 3)
  // Nothing after EOI is decoded (a JPEG+ZIP polyglot), so nothing after it counts.
  assert.equal(countJpegScans(bytes(SOI, SOS, EOI, SOS, SOS)), 1)
  // A truncated file or a segment whose length runs past the end ends the count without an error.
  assert.equal(countJpegScans(bytes(SOI, SOS, [0xff, 0xe1, 0xff, 0xff, 0x00])), 1)
  assert.equal(countJpegScans(bytes(SOI, [0xff])), 0)
})

test('when a JPEG has more than 100 scans, then it is refused before sharp sees it; 100 scans are accepted', async () => {
  await assert.rejects(processAvatar(await jpegScanBomb(MAX_JPEG_SCANS - 10 + 1, 64), 512), (error) => {
    assert.ok(error instanceof InvalidImageError)
    assert.match(error.message, /^The JPEG has too many scans \(100 at most\)/)
    return true
  })
  const atTheLimit = await processAvatar(await jpegScanBomb(MAX_JPEG_SCANS - 10, 64), 512)
  assert.equal((await sharp(atTheLimit).metadata()).format, 'webp')
})

test('when the pipeline runs past its time limit, then it stops and the error is an InvalidImageError saying so', async () => {
  // 700 scans of 36 Mpx: a couple of seconds of decoding, past a one-second limit (libvips checks the
  // clock once the scans are decoded, which is why processAvatar counts them first).
  await assert.rejects(transcode(await jpegScanBomb(700), 512, 1), (error) => {
    assert.ok(error instanceof InvalidImageError)
    assert.equal(error.message, 'The image took too long to process (over 1 s); upload a smaller or simpler one.')
    return true
  })
})

test('when image concurrency is sized, then it is at most one per CPU and two fewer than the libuv threads', () => {
  const cases: [cpus: number, pool: number, images: number][] = [
    [1, 4, 1],
    [2, 4, 2],
    [4, 4, 2],
    [64, 4, 2],
    [4, 6, 4],
    [8, 2, 1],
    [8, 3, 1],
  ]
  for (const [cpus, pool, images] of cases) assert.equal(imageConcurrencyFor(cpus, pool), images, `${cpus} CPUs, ${pool} threads`)

  assert.equal(loadConfig({}).threadPoolSize, 4, "unset is libuv's default")
  assert.deepEqual(
    (({ threadPoolSize, imageConcurrency }) => ({ threadPoolSize, imageConcurrency }))(loadConfig({ UV_THREADPOOL_SIZE: '2' })),
    { threadPoolSize: 2, imageConcurrency: 1 },
  )
  for (const value of ['', '1', '0', 'many', '1025']) {
    assert.throws(() => loadConfig({ UV_THREADPOOL_SIZE: value }), (error) => error instanceof ConfigError && /^UV_THREADPOOL_SIZE=.* 2 to 1024$/.test(error.message))
  }
})

test('when npm start preloads scripts/threadpool.cjs, then libuv really starts the pool size it sets', { skip: !existsSync('/proc/self/task') && 'needs /proc' }, () => {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.match(scripts.start ?? '', / --require \.\/scripts\/threadpool\.cjs dist\/current\/server\.js$/)
  // libuv starts every pool thread at the first task: the threads that appear then are the pool.
  const probe = `const { readdirSync, stat } = require('node:fs')
    const threads = () => readdirSync('/proc/self/task').length
    const before = threads()
    stat('.', () => console.log(JSON.stringify({ started: threads() - before, env: process.env.UV_THREADPOOL_SIZE })))`
  const run = (env: Record<string, string>) => {
    const result = spawnSync(process.execPath, ['--require', './scripts/threadpool.cjs', '-e', probe], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' })
    assert.equal(result.status, 0, result.stderr)
    return JSON.parse(result.stdout)
  }
  const expected = Math.max(4, availableParallelism() + 2)
  assert.deepEqual(run({}), { started: expected, env: String(expected) })
  assert.deepEqual(run({ UV_THREADPOOL_SIZE: '3' }), { started: 3, env: '3' }, 'a size the environment gives is kept')
})
