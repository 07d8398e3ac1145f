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

/** The image format by its magic bytes; the file name and the client's Content-Type are never consulted. */
export function sniffImageFormat(bytes: Buffer): string | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg'
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png'
  if (/^GIF8[79]a/.test(bytes.subarray(0, 6).toString('latin1'))) return 'gif'
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp'
  return undefined
}

/**
 * Turns an uploaded image into the stored avatar: auto-rotated, stripped of every metadata block,
 * fitted inside size×size without enlarging, re-encoded as WebP. Throws InvalidImageError for
 * anything that is not a whole, reasonably sized JPEG, PNG, WebP or GIF.
 */
export async function processAvatar(bytes: Buffer, size: number): Promise<Buffer> {
  if (!sniffImageFormat(bytes)) throw new InvalidImageError('Upload a JPEG, PNG, WebP or GIF image.')
  try {
    // One native call, no separate metadata() round trip: libvips picks its loader from the same magic bytes
    // we sniffed (a file cannot start as a JPEG and be read as another format), and limitInputPixels refuses
    // a pixel bomb from the header, before a single pixel is decoded.
    return await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'truncated', pages: 1 })
      .rotate()
      .resize({ width: size, height: size, fit: 'inside', withoutEnlargement: true })
      .webp(WEBP_OPTIONS)
      .toBuffer()
  } catch (error) {
    if (/pixel limit/i.test(String((error as Error).message))) throw new InvalidImageError(TOO_MANY_PIXELS, { cause: error })
    throw new InvalidImageError('The file is not a readable image (corrupt or truncated).', { cause: error })
  }
}
