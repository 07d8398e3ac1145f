import sharp from 'sharp'

/** Decompression-bomb bound (SPEC §4). */
export const MAX_INPUT_PIXELS = 40_000_000

export const AVATAR_CONTENT_TYPE = 'image/webp'

// Uploads are CPU-bound and the encoder is most of the work, so this setting decides upload throughput.
// On the benchmark's 100 KB 480×360 photo (one core, whole pipeline): effort 0 takes 11.7 ms and writes
// 43.7 KB; the default effort 4 takes 31.4 ms for 42.6 KB (2.7× the time for 2.5 % fewer bytes); effort 2
// already costs 20.8 ms. Quality stays at sharp's default 80: 75 would save only 1 ms (and a fifth of the
// bytes), so the time budget does not justify a lower-quality picture. See BENCHMARKS.md.
const WEBP_OPTIONS = { quality: 80, effort: 0 } as const

export class InvalidImageError extends Error {}

const TOO_MANY_PIXELS = 'The image has too many pixels (40 million at most).'

/**
 * Most scans (SOS segments) a JPEG may have. Each scan of a progressive JPEG is one more pass over every
 * coefficient block of the frame, and libjpeg reads all of them before libvips sees a single pixel, so
 * the time limit below cannot stop it: at 6000×6000 a scan costs about 3 ms, and a 1.9 MB file of 20,000
 * repeated scans held a core for over a minute (70,000 for six). Real encoders write few: a baseline
 * JPEG has 1 (3 if its components are not interleaved), libjpeg(-turbo)'s and sharp's progressive script
 * 10, mozjpeg's optimised scans 8 or 9; Photoshop offers 3 to 5. 100 leaves ten times the most any of
 * them writes, and bounds the cost of a 40 Mpx file's scans to about a third of a second. PNG, GIF and
 * WebP need no such count: their cost is bounded by the pixel limit and by `pages: 1` (measured: 1,000
 * WebP or 100 GIF frames of 36 Mpx cost what one does; 200,000 PNG chunks or a 1 GB zTXt take milliseconds).
 */
export const MAX_JPEG_SCANS = 100

/**
 * The sharp pipeline stops after this many seconds (measured: a legitimate 40 Mpx progressive JPEG
 * takes about 1 s on one core). libvips checks the clock as it computes the output, so this bounds the
 * resize and encode and a streaming (baseline) decode, not a progressive JPEG's scans: those are counted
 * first (MAX_JPEG_SCANS).
 */
export const IMAGE_TIMEOUT_SECONDS = 10

/** The image format by its magic bytes; the file name and the client's Content-Type are never consulted. */
export function sniffImageFormat(bytes: Buffer): string | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg'
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png'
  if (/^GIF8[79]a/.test(bytes.subarray(0, 6).toString('latin1'))) return 'gif'
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp'
  return undefined
}

/**
 * How many scans libjpeg would read from this JPEG, counted without decoding. The marker segments are
 * walked by their lengths, so markers inside one (an EXIF thumbnail in APP1) are not counted. Between
 * segments, as after a scan's header, the bytes are skipped up to the next marker, as libjpeg's decoder
 * does: in entropy-coded data 0xFF00 is a stuffed byte, 0xFFFF fill and RST0–7 carry no length, and stray
 * bytes before a marker cannot hide it. Counting ends at EOI (what follows is never decoded) or once the
 * count passes `stopAfter`.
 */
export function countJpegScans(bytes: Buffer, stopAfter = Number.POSITIVE_INFINITY): number {
  // Plain indexing, no Buffer methods: this runs on the event loop, and a hostile 5 MB file of 0xFF00
  // pairs or empty segments means millions of steps (on a busy two-core host: 230–280 ms with a native
  // indexOf call per step, 12–28 ms this way).
  const end = bytes.length
  let scans = 0
  let at = 2 // after SOI
  while (at < end) {
    while (at < end && bytes[at] !== 0xff) at++
    while (at < end && bytes[at] === 0xff) at++
    if (at >= end) break
    const marker = bytes[at++] as number
    // A stuffed 0x00, RST0–7, TEM and SOI stand alone; EOI ends the image.
    if (marker === 0x00 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01 || marker === 0xd8) continue
    if (marker === 0xd9 || at + 2 > end) break
    if (marker === 0xda && ++scans > stopAfter) break
    // Every other marker has a length that counts its own two bytes: skip the segment (for SOS, its header).
    at += ((bytes[at] as number) << 8) | (bytes[at + 1] as number)
  }
  return scans
}

/**
 * Turns an uploaded image into the stored avatar: auto-rotated, stripped of every metadata block,
 * fitted inside size×size without enlarging, re-encoded as WebP. Throws InvalidImageError for
 * anything that is not a whole, reasonably sized JPEG, PNG, WebP or GIF.
 */
export async function processAvatar(bytes: Buffer, size: number): Promise<Buffer> {
  const format = sniffImageFormat(bytes)
  if (!format) throw new InvalidImageError('Upload a JPEG, PNG, WebP or GIF image.')
  if (format === 'jpeg' && countJpegScans(bytes, MAX_JPEG_SCANS) > MAX_JPEG_SCANS) {
    throw new InvalidImageError(`The JPEG has too many scans (${MAX_JPEG_SCANS} at most); save it again as an ordinary JPEG.`)
  }
  return transcode(bytes, size, IMAGE_TIMEOUT_SECONDS)
}

/** The sharp pipeline of processAvatar alone, without the structural checks; stops after `timeoutSeconds`. */
export async function transcode(bytes: Buffer, size: number, timeoutSeconds: number): Promise<Buffer> {
  try {
    // One native call, no separate metadata() round trip: libvips picks its loader from the same magic bytes
    // we sniffed (a file cannot start as a JPEG and be read as another format), and limitInputPixels refuses
    // a pixel bomb from the header, before a single pixel is decoded.
    return await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'truncated', pages: 1 })
      .rotate()
      .resize({ width: size, height: size, fit: 'inside', withoutEnlargement: true })
      .webp(WEBP_OPTIONS)
      .timeout({ seconds: timeoutSeconds })
      .toBuffer()
  } catch (error) {
    const message = String((error as Error).message)
    if (/pixel limit/i.test(message)) throw new InvalidImageError(TOO_MANY_PIXELS, { cause: error })
    if (/^timeout/i.test(message)) {
      throw new InvalidImageError(`The image took too long to process (over ${timeoutSeconds} s); upload a smaller or simpler one.`, { cause: error })
    }
    throw new InvalidImageError('The file is not a readable image (corrupt or truncated).', { cause: error })
  }
}
