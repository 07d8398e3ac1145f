import sharp from 'sharp'

// Hostile and benign upload fixtures, built in code so every byte is explained.

export const GPS_MARKER = 'HARDENING-GPS-MARKER'
export const EXIF_MARKER = 'HARDENING-EXIF-MARKER'
export const XMP_MARKER = 'HARDENING-XMP-MARKER'

function solid(width: number, height: number) {
  return sharp({ create: { width, height, channels: 3, background: '#2a6' } })
}

export const pngBytes = (width = 32, height = 24) => solid(width, height).png().toBuffer()
export const jpegBytes = (width = 32, height = 24) => solid(width, height).jpeg().toBuffer()
export const gifBytes = (width = 32, height = 24) => solid(width, height).gif().toBuffer()
export const webpBytes = (width = 32, height = 24) => solid(width, height).webp().toBuffer()

/** A 40×20 JPEG saying "rotate 90°", carrying EXIF text, GPS tags, an XMP packet and an ICC profile. */
export function jpegWithMetadata(): Promise<Buffer> {
  return solid(40, 20)
    .jpeg()
    .withMetadata({ orientation: 6 })
    .withExif({
      IFD0: { ImageDescription: EXIF_MARKER, Artist: EXIF_MARKER },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1', GPSMapDatum: GPS_MARKER },
    })
    .withXmp(
      `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>${XMP_MARKER}</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>`,
    )
    .withIccProfile('p3')
    .toBuffer()
}

export const HTML_PAYLOAD = '<html><script>alert(document.cookie)</script></html>'
export const PHP_PAYLOAD = '<?php system($_GET["c"]); ?>'

/** A minimal zip archive (one empty stored file) — what a JPEG+ZIP polyglot appends. */
export function zipBytes(): Buffer {
  const name = Buffer.from('evil.php')
  const local = Buffer.alloc(30)
  local.writeUInt32LE(0x04034b50, 0)
  local.writeUInt16LE(name.length, 26)
  const central = Buffer.alloc(46)
  central.writeUInt32LE(0x02014b50, 0)
  central.writeUInt16LE(name.length, 28)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(1, 8)
  end.writeUInt16LE(1, 10)
  end.writeUInt32LE(central.length + name.length, 12)
  end.writeUInt32LE(local.length + name.length, 16)
  return Buffer.concat([local, name, central, name, end])
}

/** GIF magic and a screen descriptor, then markup: passes a naive magic-byte check, decodes as nothing. */
export function gifHtmlPolyglot(): Buffer {
  return Buffer.concat([Buffer.from('GIF89a'), Buffer.from([1, 0, 1, 0, 0, 0, 0]), Buffer.from(HTML_PAYLOAD + PHP_PAYLOAD)])
}

export const SVG_WITH_SCRIPT = `<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>`

/** A 1-bit PNG of width×height pixels in a few kilobytes: a decompression bomb (shared with the unit suite). */
export { bigPng as pngBomb } from '../helpers/images.js'

/** A GIF whose screen and single frame claim 65535×65535 pixels, in a few dozen bytes. */
export function gifBomb(): Buffer {
  return Buffer.concat([
    Buffer.from('GIF89a'),
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00]), // screen 65535×65535, no colour table
    Buffer.from([0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00]), // image descriptor 65535×65535
    Buffer.from([0x02, 0x02, 0x4c, 0x01, 0x00]), // LZW min code size 2, one tiny data block
    Buffer.from([0x3b]),
  ])
}

/** A lossless WebP (VP8L) header claiming 16384×16384 pixels, with hardly any data behind it. */
export function webpBomb(): Buffer {
  const vp8l = Buffer.alloc(5 + 16)
  vp8l[0] = 0x2f
  // 14 bits width-1, 14 bits height-1, 1 bit alpha, 3 bits version (0).
  const bits = (16383 & 0x3fff) | ((16383 & 0x3fff) << 14)
  vp8l.writeUInt32LE(bits >>> 0, 1)
  const chunk = Buffer.concat([Buffer.from('VP8L'), u32le(vp8l.length), vp8l])
  return Buffer.concat([Buffer.from('RIFF'), u32le(4 + chunk.length), Buffer.from('WEBP'), chunk])
}

function u32le(value: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32LE(value)
  return bytes
}

/** A progressive JPEG as sharp (libjpeg's default script: 10 scans) writes it. */
export const progressiveJpegBytes = (width = 640, height = 480) =>
  sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .jpeg({ progressive: true })
    .toBuffer()

/**
 * A scan bomb: a real side×side progressive JPEG (36 Mpx by default, under the 40 Mpx cap) with its first
 * luma AC scan, and the Huffman table before it, repeated `repeats` times before EOI. The copy is made a
 * spectral scan with no successive approximation (Ah = Al = 0), so libjpeg finds the progression consistent
 * and decodes every copy: one pass over all 562,500 luma blocks each, about 3 ms.
 */
export async function jpegScanBomb(repeats: number, side = 6000): Promise<Buffer> {
  const jpeg = await sharp({ create: { width: side, height: side, channels: 3, background: '#808080' } })
    .jpeg({ progressive: true })
    .toBuffer()
  const segments: { marker: number; start: number; end: number }[] = []
  let at = 2
  while (jpeg[at + 1] !== 0xd9) {
    const marker = jpeg[at + 1] as number
    let end = at + 2 + jpeg.readUInt16BE(at + 2)
    // After a scan's header comes its entropy-coded data, up to the next marker (0xFF00 is a stuffed byte).
    if (marker === 0xda) while (!(jpeg[end] === 0xff && jpeg[end + 1] !== 0x00)) end++
    segments.push({ marker, start: at, end })
    at = end
  }
  // SOS: FF DA, length, component count, (id, tables) per component, Ss, Se, Ah/Al.
  const index = segments.findIndex(({ marker, start }) => marker === 0xda && jpeg[start + 4] === 1 && (jpeg[start + 7] as number) > 0 && (jpeg[start + 9] as number) >> 4 === 0)
  const table = segments[index - 1]
  const scan = segments[index]
  if (table?.marker !== 0xc4 || !scan) throw new Error('sharp wrote no DHT + first AC scan to copy')
  const copy = Buffer.from(jpeg.subarray(table.start, scan.end))
  copy[scan.start - table.start + 9] = 0x00
  return Buffer.concat([jpeg.subarray(0, at), ...Array.from({ length: repeats }, () => copy), jpeg.subarray(at)])
}
