import type { FastifyBaseLogger } from 'fastify'
import { isDatabaseUnavailable } from '../db/unavailable.js'
import { AppError } from '../errors.js'
import type { HealthCheck } from './health.routes.js'

declare module 'fastify' {
  interface FastifyInstance {
    outages: Outages
  }
}

/** The dependency an error says did not answer (`database`, `redis`, …), or undefined for any other error. */
export function unavailableDependency(error: unknown): string | undefined {
  if (error instanceof AppError) return error.dependency
  return isDatabaseUnavailable(error) ? 'database' : undefined
}

interface Outage {
  since: number
  lastRefusal: number
  refused: number
  probing: boolean
}

export interface OutagesOptions {
  /** How often a dependency in outage is asked whether it answers again. */
  probeIntervalMs?: number
  /** A dependency without a health check is deemed back once no request was refused for this long. */
  quietMs?: number
}

/**
 * Logs an outage of a dependency as two warn lines, one when the first request is refused and one when the
 * dependency answers again (how long it lasted, how many requests were refused), instead of an error with a
 * stack for each of thousands of refused requests. While an outage lasts, the dependency's health check runs
 * once per `probeIntervalMs` (never two at a time) to notice its end; nothing runs while all is well.
 */
export class Outages {
  private readonly current = new Map<string, Outage>()
  private timer: NodeJS.Timeout | undefined
  private readonly probeIntervalMs: number
  private readonly quietMs: number

  constructor(
    private readonly log: FastifyBaseLogger,
    private readonly checks: readonly HealthCheck[],
    { probeIntervalMs = 1000, quietMs = 10_000 }: OutagesOptions = {},
  ) {
    this.probeIntervalMs = probeIntervalMs
    this.quietMs = quietMs
  }

  /** A request was refused because `dependency` did not answer. */
  refused(dependency: string, error: unknown): void {
    const now = Date.now()
    const outage = this.current.get(dependency)
    if (outage) {
      outage.refused += 1
      outage.lastRefusal = now
      return
    }
    this.current.set(dependency, { since: now, lastRefusal: now, refused: 1, probing: false })
    this.log.warn({ dependency, cause: describe(error) }, `${dependency} outage: it does not answer, requests that need it get 503`)
    if (!this.timer) {
      this.timer = setInterval(() => this.probe(), this.probeIntervalMs)
      this.timer.unref()
    }
  }

  close(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private probe(): void {
    for (const [dependency, outage] of this.current) {
      const check = this.checks.find((candidate) => candidate.name === dependency)
      if (!check) {
        if (Date.now() - outage.lastRefusal >= this.quietMs) this.end(dependency, outage)
        continue
      }
      if (outage.probing) continue
      outage.probing = true
      check.check().then(
        () => this.end(dependency, outage),
        () => {
          outage.probing = false
        },
      )
    }
  }

  private end(dependency: string, outage: Outage): void {
    if (this.current.get(dependency) !== outage) return
    this.current.delete(dependency)
    const durationMs = Date.now() - outage.since
    this.log.warn({ dependency, durationMs, refused: outage.refused }, `${dependency} outage over: it answers again`)
    if (this.current.size === 0) this.close()
  }
}

/** The code and message of the underlying failure, never its stack. */
function describe(error: unknown): { code?: unknown; message?: unknown } {
  const cause = error instanceof AppError && error.cause !== undefined ? error.cause : error
  if (typeof cause !== 'object' || cause === null) return { message: String(cause) }
  const { code, message } = cause as { code?: unknown; message?: unknown }
  return { code, message }
}
