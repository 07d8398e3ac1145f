import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { problemResponses } from '../http/problem.schema.js'
import { numericQuery } from '../http/validation.js'
import { usersPolicy } from '../users/users.policy.js'
import { IdParamsSchema } from '../users/users.schemas.js'
import type { UsersService } from '../users/users.service.js'
import { ActivityPageSchema, ActivityQuerySchema, SessionListSchema, SessionParamsSchema } from './activity.schemas.js'
import type { ActivityLog } from './activity.service.js'
import { clientOf } from './client.js'
import type { AccountSessions } from './sessions.service.js'

export interface ActivityRoutesOptions {
  activity: ActivityLog
  sessions: AccountSessions
  users: UsersService
  authenticate: (request: FastifyRequest) => Promise<void>
}

const tags = ['activity']
const security = [{ bearerAuth: [] }]
const bearer = { bearer: true }

/** A person's sessions and security activity, under /api/users (and staff's view of someone's activity). */
export const activityRoutes: FastifyPluginAsyncTypebox<ActivityRoutesOptions> = async (app, options) => {
  const { activity, sessions, users, authenticate } = options

  app.get(
    '/me/sessions',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'listMySessions',
        summary: 'Your live sessions, newest first',
        response: { 200: { ...SessionListSchema, description: 'Your sessions; `current` is this one' }, ...problemResponses([401], bearer) },
      },
    },
    async (request) => ({ results: await sessions.list(request.actor.id, request.sessionId) }),
  )

  app.delete(
    '/me/sessions/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'endMySession',
        summary: 'End one of your sessions at once',
        params: SessionParamsSchema,
        response: {
          204: Type.Null({ description: 'Ended: its refresh token and access tokens stop working' }),
          ...problemResponses([400, 401, 404, 414], bearer),
        },
      },
    },
    async (request, reply) => {
      await sessions.end(request.actor.id, request.params.id, clientOf(request))
      reply.code(204).send(null)
    },
  )

  const page = async (userId: number, path: string, query: { before?: number; limit?: number }) => {
    const limit = query.limit ?? 20
    const { results, more } = await activity.page(userId, limit, query.before)
    const last = results.at(-1)
    const next = more && last ? `${users.mediaBaseUrl}${path}?${new URLSearchParams({ before: String(last.id), limit: String(limit) })}` : null
    return { results, next }
  }

  app.get(
    '/me/activity',
    {
      onRequest: authenticate,
      preValidation: numericQuery(['before', 'limit']),
      schema: {
        tags,
        security,
        operationId: 'listMyActivity',
        summary: 'Your security activity, newest first',
        querystring: ActivityQuerySchema,
        response: { 200: { ...ActivityPageSchema, description: 'One page of entries' }, ...problemResponses([400, 401], bearer) },
      },
    },
    async (request) => page(request.actor.id, '/api/users/me/activity', request.query),
  )

  app.get(
    '/:id/activity',
    {
      // 401, then 404, then 403 before the query is judged (SPEC §3's order).
      onRequest: async (request) => {
        await authenticate(request)
        request.target = await users.resolveTarget(request.actor, (request.params as { id: string }).id, usersPolicy.canReadActivity)
      },
      preValidation: numericQuery(['before', 'limit']),
      schema: {
        tags,
        security,
        operationId: 'listUserActivity',
        summary: "A user's security activity (yourself, or anyone for staff)",
        params: IdParamsSchema,
        querystring: ActivityQuerySchema,
        response: { 200: { ...ActivityPageSchema, description: 'One page of entries' }, ...problemResponses([400, 401, 403, 404, 414], bearer) },
      },
    },
    async (request) => page(request.target.id, `/api/users/${request.target.id}/activity`, request.query),
  )
}
