import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import sharp from 'sharp'
import { processAvatar } from '../src/avatars/image.js'

/**
 * The upload limit: the avatar pipeline alone (decode, rotate, resize, encode WebP with the service's
 * settings), one image after another on one thread, configured as buildApp configures sharp.
 * argv: <jpeg file> <seconds> <warm-up seconds> <avatar size>
 */
const [file, seconds, warmupSeconds, size] = process.argv.slice(2) as [string, string, string, string]
const jpeg = readFileSync(file)
sharp.concurrency(1)
sharp.cache(false)

async function loop(forMs: number): Promise<number[]> {
  const times: number[] = []
  const end = performance.now() + forMs
  while (performance.now() < end) {
    const start = performance.now()
    await processAvatar(jpeg, Number(size))
    times.push(performance.now() - start)
  }
  return times
}

await loop(Number(warmupSeconds) * 1000)
const started = performance.now()
const cpuBefore = process.cpuUsage()
const times = (await loop(Number(seconds) * 1000)).sort((a, b) => a - b)
const elapsed = (performance.now() - started) / 1000
const cpu = process.cpuUsage(cpuBefore)
const at = (p: number) => times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)] ?? Number.NaN
const webp = await processAvatar(jpeg, Number(size))
process.stdout.write(
  `${JSON.stringify({ requests: times.length, seconds: elapsed, requestsPerSecond: times.length / elapsed, p50Ms: at(50), p99Ms: at(99), non2xx: 0, errors: 0, statusCodes: {}, cpuUsPerRequest: (cpu.user + cpu.system) / times.length, webpBytes: webp.length })}\n`,
)
