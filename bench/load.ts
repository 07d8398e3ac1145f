import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'

/** What the orchestrator asks this load-generator process to do (argv[2], JSON). */
export interface LoadSpec {
  url: string
  method: 'GET' | 'POST' | 'PUT' | 'PATCH'
  path: string
  connections: number
  durationSeconds: number
  headers?: Record<string, string>
  body?: string
  /** Raw request body read from a file (the multipart upload). */
  bodyFile?: string
  /** A fresh `first_name` in every request body. */
  uniqueFirstName?: boolean
}

export interface LoadResult {
  requests: number
  seconds: number
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  non2xx: number
  errors: number
  statusCodes: Record<string, number>
  /** Server CPU time (all threads) per request served, filled in by the orchestrator. */
  cpuUsPerRequest?: number
}

const spec = JSON.parse(process.argv[2] as string) as LoadSpec
const body = spec.bodyFile ? readFileSync(spec.bodyFile) : spec.body
let counter = 0

function run(seconds: number, latencies?: number[]): autocannon.Instance {
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: seconds,
    // Latencies are recorded below at full resolution; autocannon's own histogram counts whole milliseconds.
    requests: [
      {
        method: spec.method,
        path: spec.path,
        headers: spec.headers,
        body,
        ...(spec.uniqueFirstName
          ? {
              setupRequest: (request: autocannon.Request) => {
                request.body = JSON.stringify({ first_name: `Bench ${process.pid} ${counter++}` })
                return request
              },
            }
          : {}),
      },
    ],
  })
  if (latencies) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, milliseconds: number) => {
      latencies.push(milliseconds)
    })
  }
  return instance
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

const latencies: number[] = []
const result = await run(spec.durationSeconds, latencies)
const sorted = Float64Array.from(latencies).sort()
const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, Number(count)]))
const output: LoadResult = {
  requests: result.requests.total,
  seconds: result.duration,
  requestsPerSecond: result.requests.total / result.duration,
  p50Ms: percentile(sorted, 50),
  p99Ms: percentile(sorted, 99),
  non2xx: result.non2xx,
  errors: result.errors,
  statusCodes,
}
process.stdout.write(`${JSON.stringify(output)}\n`)
