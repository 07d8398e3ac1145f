import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { sql } from 'kysely'
import { Type } from 'typebox'
import type { Db } from '../db/database.js'
import { problemContent, problemResponses } from '../http/problem.schema.js'

export interface HealthCheck {
  name: string
  check(): Promise<void>
}

const HealthSchema = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  checks: Type.Record(Type.String(), Type.Union([Type.Literal('ok'), Type.Literal('down')])),
})

export function databaseCheck(db: Db): HealthCheck {
  // SQLite answers `select 1` from a read-only file too; its probe checks that a write could start.
  return { name: 'database', check: async () => void (await (db.probe ? db.probe() : sql`select 1`.execute(db.kysely))) }
}

/** 200 when every dependency answers, 503 naming the ones that do not. */
export const healthRoutes: FastifyPluginAsyncTypebox<{ checks: HealthCheck[] }> = async (app, { checks }) => {
  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        operationId: 'health',
        summary: 'Liveness and dependencies',
        response: {
          ...problemResponses([]),
          200: { description: 'Every dependency answers', content: { 'application/json': { schema: HealthSchema } } },
          // A check that fails answers JSON; a server shutting down answers problem+json (src/http/shutdown.ts).
          503: {
            description: 'A dependency is down (JSON naming it), or the server is shutting down (problem+json)',
            content: { 'application/json': { schema: HealthSchema }, ...problemContent(503) },
          },
        },
      },
    },
    async (_request, reply) => {
      const results = await Promise.all(
        checks.map(async ({ name, check }) => {
          try {
            await withTimeout(check(), 2000)
            return [name, 'ok'] as const
          } catch {
            return [name, 'down'] as const
          }
        }),
      )
      const healthy = results.every(([, state]) => state === 'ok')
      reply.code(healthy ? 200 : 503)
      return { status: healthy ? ('ok' as const) : ('unavailable' as const), checks: Object.fromEntries(results) }
    },
  )
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
