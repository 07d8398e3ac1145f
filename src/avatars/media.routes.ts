import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AppError } from '../errors.js'
import { ProblemSchema } from '../http/problem.schema.js'
import { AVATAR_CONTENT_TYPE } from './image.js'
import type { AvatarStorage } from './storage.js'

// Names are random and never reused, so a stored image never changes: cache it for good.
const IMAGE_HEADERS = {
  'content-type': AVATAR_CONTENT_TYPE,
  'cache-control': 'public, max-age=31536000, immutable',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; sandbox",
  'cross-origin-resource-policy': 'cross-origin',
}

export const mediaRoutes: FastifyPluginAsyncTypebox<{ storage: AvatarStorage }> = async (app, { storage }) => {
  app.get(
    '/avatars/:name',
    {
      schema: {
        tags: ['media'],
        summary: 'An avatar image',
        params: Type.Object({ name: Type.String() }),
        response: { 200: Type.Unsafe({ type: 'string', format: 'binary' }), 404: ProblemSchema },
      },
    },
    async (request, reply) => {
      const bytes = await storage.get(request.params.name)
      if (!bytes) throw new AppError('not_found', { detail: 'No such image.' })
      return reply.headers(IMAGE_HEADERS).send(bytes)
    },
  )
}
