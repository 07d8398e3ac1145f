import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { AppError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
import type { ServiceKeys } from './service-keys.js'
import type { SessionsRepository } from './sessions.repository.js'
import type { AccessTokens } from './tokens.js'

export interface KeysRoutesOptions {
  tokens: AccessTokens
  sessions: SessionsRepository
  serviceKeys: ServiceKeys
  issuer: () => string
  audience: readonly string[]
}

/** Verifiers may keep the JWKS this long: a new key is fetched on an unknown kid anyway, and a retired one leaves within it. */
export const JWKS_MAX_AGE_SECONDS = 300

const PublicJwkSchema = Type.Object(
  {
    kty: Type.String(),
    crv: Type.String(),
    x: Type.String(),
    y: Type.Optional(Type.String()),
    kid: Type.String(),
    alg: Type.String(),
    use: Type.Literal('sig'),
  },
  // The serialiser drops anything else, so a private member (d) could never be sent even if it were passed.
  { additionalProperties: false },
)

const JwksSchema = Type.Object({ keys: Type.Array(PublicJwkSchema) }, { additionalProperties: false })

const IntrospectBodySchema = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 4096, description: 'the access token to check' }),
    token_type_hint: Type.Optional(Type.String({ maxLength: 64 })),
  },
  // RFC 7662 §2.1: a server may accept other parameters; unknown ones are ignored rather than refused.
  { additionalProperties: true, description: 'application/x-www-form-urlencoded (RFC 7662) or JSON; other parameters are ignored' },
)

const IntrospectionSchema = Type.Object(
  {
    active: Type.Boolean(),
    sub: Type.Optional(Type.String()),
    sid: Type.Optional(Type.String()),
    exp: Type.Optional(Type.Integer()),
    iat: Type.Optional(Type.Integer()),
    iss: Type.Optional(Type.String()),
    aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
    amr: Type.Optional(Type.Array(Type.String(), { description: 'RFC 8176: how the session signed in (pwd, otp, hwk, user)' })),
  },
  { additionalProperties: false, description: 'RFC 7662: only {active: false} for a token that is not live' },
)

const SERVICE_BEARER = /^Bearer +(\S+)$/i
const CHALLENGE = { 'www-authenticate': 'Bearer realm="introspection"' }

/** GET /.well-known/jwks.json (register at the root) and POST /api/auth/introspect (register with that prefix: `introspectRoute`). */
export const jwksRoute: FastifyPluginAsyncTypebox<Pick<KeysRoutesOptions, 'tokens'>> = async (app, { tokens }) => {
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['auth'],
        operationId: 'getJwks',
        summary: 'The public keys that verify current access tokens (RFC 7517)',
        security: [],
        response: { 200: JwksSchema, ...problemResponses([]) },
      },
    },
    async (_request, reply) => {
      // Reads the keyset again at most once a second, so a rotation or revocation anywhere shows here at once;
      // a database that does not answer leaves the keys this instance already has.
      await tokens.keyset.reloadThrottled().catch(() => {})
      reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`)
      return { keys: tokens.keyset.jwks() }
    },
  )
}

export const introspectRoute: FastifyPluginAsyncTypebox<KeysRoutesOptions> = async (app, options) => {
  const { tokens, sessions, serviceKeys, issuer, audience } = options

  const requireService = async (request: FastifyRequest) => {
    const secret = SERVICE_BEARER.exec(request.headers.authorization ?? '')?.[1]
    if (secret === undefined || (await serviceKeys.check(secret)) === undefined) {
      throw new AppError('not_authenticated', { detail: 'Send a service credential: Authorization: Bearer <secret> (portrait service-keys create).', headers: CHALLENGE })
    }
  }

  app.post(
    '/introspect',
    {
      onRequest: requireService,
      schema: {
        tags: ['auth'],
        operationId: 'introspectToken',
        summary: 'Is this access token live now? (RFC 7662; for services holding a service credential)',
        security: [{ bearerAuth: [] }],
        body: IntrospectBodySchema,
        consumes: ['application/x-www-form-urlencoded', 'application/json'],
        response: { 200: IntrospectionSchema, ...problemResponses([400, 401, 413, 415], { bearer: true }) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store')
      let claims = tokens.verify(request.body.token)
      if (claims instanceof Promise) claims = await claims
      const user = claims && (await sessions.findLiveSessionUser(claims.sessionId, claims.userId, new Date().toISOString(), claims.kid))
      if (!claims || !user) return { active: false }
      return {
        active: true,
        sub: String(claims.userId),
        sid: claims.sessionId,
        exp: claims.exp,
        iat: claims.iat,
        iss: issuer(),
        ...(audience.length === 0 ? {} : { aud: audience.length === 1 ? (audience[0] as string) : [...audience] }),
        ...(claims.amr ? { amr: [...claims.amr] } : {}),
      }
    },
  )
}
