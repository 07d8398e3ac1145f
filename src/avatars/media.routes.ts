import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AppError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
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
        operationId: 'getAvatar',
        summary: 'An avatar image',
        params: Type.Object({ name: Type.String({ description: 'the file name in a user\'s `avatar` URL', example: 'k3J9xQ2mT8vZ.webp' }) }),
        response: {
          200: {
            description: 'The image, as stored (re-encoded WebP); never changes, cached for good',
            headers: {
              'Cache-Control': { type: 'string', description: 'public, max-age=31536000, immutable' },
              'X-Content-Type-Options': { type: 'string', description: 'nosniff' },
            },
            content: { [AVATAR_CONTENT_TYPE]: { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } },
          },
          ...problemResponses([404, 414]),
        },
      },
    },
    async (request, reply) => {
      const bytes = await storage.get(request.params.name)
      if (!bytes) throw new AppError('not_found', { detail: 'No such image.' })
      return reply.headers(IMAGE_HEADERS).send(bytes)
    },
  )
}
