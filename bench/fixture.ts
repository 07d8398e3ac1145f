import sharp from 'sharp'

const WIDTH = 480
const HEIGHT = 360
const TARGET_BYTES = 100 * 1024
const QUALITY = 95

/**
 * A 480×360 JPEG of about 100 KB that codes like a photo: smooth colour gradients, 8-pixel texture and
 * fine grain (a flat test card would be a few KB and make decoding look cheaper than it is).
 * Deterministic (seeded), so every run uploads the same bytes.
 */
export async function photoLikeJpeg(): Promise<Buffer> {
  // The grain strength that lands closest to 100 KB with this libjpeg.
  let low = 10
  let high = 160
  let best = await render(85)
  for (let step = 0; step < 8; step++) {
    const middle = (low + high) / 2
    const candidate = await render(middle)
    if (Math.abs(candidate.length - TARGET_BYTES) < Math.abs(best.length - TARGET_BYTES)) best = candidate
    if (candidate.length < TARGET_BYTES) low = middle
    else high = middle
  }
  return best
}

function render(grain: number): Promise<Buffer> {
  let seed = 42
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed / 2 ** 32 - 0.5
  }
  const columns = WIDTH / 8
  const texture = Float64Array.from({ length: columns * (HEIGHT / 8) * 3 }, random)
  const pixels = Buffer.alloc(WIDTH * HEIGHT * 3)
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const gradient = [
        128 + 90 * Math.sin(x / 37) * Math.cos(y / 53),
        100 + 80 * Math.sin((x + y) / 61),
        90 + 70 * Math.cos(x / 23 - y / 41),
      ]
      const cell = ((y >> 3) * columns + (x >> 3)) * 3
      for (let channel = 0; channel < 3; channel++) {
        const value = (gradient[channel] as number) + (texture[cell + channel] as number) * grain + random() * grain * 0.6
        pixels[(y * WIDTH + x) * 3 + channel] = Math.max(0, Math.min(255, Math.round(value)))
      }
    }
  }
  return sharp(pixels, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: QUALITY }).toBuffer()
}

/** A multipart/form-data body with one `avatar` file part, as a browser form sends it. */
export function avatarMultipart(jpeg: Buffer): { body: Buffer; contentType: string } {
  const boundary = '----PortraitBench7d1f0c2b'
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="avatar"; filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`
  return {
    body: Buffer.concat([Buffer.from(head), jpeg, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  }
}
