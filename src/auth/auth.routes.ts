import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { clientOf } from '../activity/client.js'
import { AppError, validationError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
import { bodyFields, emptyBodyAsObject } from '../http/validation.js'
import type { UsersService } from '../users/users.service.js'
import {
  MfaRequiredResponseSchema,
  RefreshBodySchema,
  RefreshResponseSchema,
  SessionResponseSchema,
  SignInBodySchema,
  SignInMfaBodySchema,
  SignOutBodySchema,
  SignUpBodySchema,
} from './auth.schemas.js'
import type { AuthService, SignedIn, TokenPair } from './auth.service.js'
import { deliverDeviceProof, presentedDeviceProof } from './device-proof.js'
import { clearRefreshCookie, isWebClient, presentedRefreshToken, type RefreshCookieSettings, setRefreshCookie } from './refresh-cookie.js'

export interface AuthRoutesOptions {
  auth: AuthService
  users: UsersService
  authenticate: (request: import('fastify').FastifyRequest) => Promise<void>
  refreshTokenTtlSeconds: number
  /** The refresh cookie's name and Secure rule (from PUBLIC_URL). */
  refreshCookie: RefreshCookieSettings
  /** Checks a passkey assertion sent as the second factor (src/passkeys), for this request's relying party. */
  passkeySecondFactor: (request: import('fastify').FastifyRequest, response: unknown) => (userId: number) => Promise<boolean>
}

const tags = ['auth']
const FORMS = ['application/json', 'application/x-www-form-urlencoded']
const NoContent = Type.Null({ description: 'Done; no body' })

export const authRoutes: FastifyPluginAsyncTypebox<AuthRoutesOptions> = async (app, options) => {
  const { auth, users, authenticate, refreshTokenTtlSeconds, refreshCookie } = options

  /** The web page gets its refresh token as an HttpOnly cookie instead of in the body. */
  const deliver = <T extends TokenPair>(request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply, tokens: T) => {
    if (!isWebClient(request)) return tokens
    setRefreshCookie(request, reply, tokens.refresh, refreshTokenTtlSeconds, refreshCookie)
    const { refresh: _sentAsCookie, ...rest } = tokens
    return rest
  }

  app.post(
    '/sign-up',
    {
      schema: {
        tags,
        operationId: 'signUp',
        summary: 'Create an account and sign in',
        body: SignUpBodySchema,
        consumes: FORMS,
        response: { 201: { ...SessionResponseSchema, description: 'Signed up and signed in' }, ...problemResponses([400, 413, 415, 429]) },
      },
      // The schema documents the body; the service's field rules judge it (trimmed, every field at once).
      attachValidation: true,
    },
    async (request, reply) => {
      const fields = bodyFields(request.body)
      if (!fields) throw validationError({ non_field_errors: ['Send a JSON object.'] })
      const { user, ...tokens } = await auth.signUp(fields, clientOf(request))
      reply.code(201)
      const session = deliver(request, reply, tokens)
      return { ...session, ...deliverDeviceProof(request, reply, auth.deviceProofFor(user), refreshCookie.alwaysSecure), user: users.present(user) }
    },
  )

  /** The answer to a finished sign-in: tokens (the refresh one as a cookie for the page), device proof, user. */
  const signedIn = (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply, result: SignedIn) => {
    const { user, deviceProof, ...tokens } = result
    const session = deliver(request, reply, tokens)
    return { ...session, ...deliverDeviceProof(request, reply, deviceProof, refreshCookie.alwaysSecure), user: users.present(user) }
  }

  // JSON only: a cross-site form can post urlencoded or multipart without a CORS preflight, JSON it cannot.
  const jsonOnly = async (request: import('fastify').FastifyRequest) => {
    const type = request.headers['content-type']
    if (type !== undefined && type.split(';')[0]?.trim().toLowerCase() !== 'application/json') {
      throw new AppError('unsupported_media_type', { detail: 'Sign-in accepts application/json only.' })
    }
  }

  app.post(
    '/sign-in',
    {
      schema: {
        tags,
        operationId: 'signIn',
        summary: 'Sign in with email or username and password',
        body: SignInBodySchema,
        response: {
          // The session first: fast-json-stringify tries the branches in order, and most accounts have no second factor.
          200: Type.Union([SessionResponseSchema, MfaRequiredResponseSchema], {
            description: 'Signed in; or, for an account with a second factor, a challenge to complete at POST /api/auth/sign-in/mfa',
          }),
          ...problemResponses([400, 401, 413, 415, 429]),
        },
      },
      onRequest: jsonOnly,
    },
    async (request, reply) => {
      const { email, username, password, device_token } = request.body
      if ((email === undefined) === (username === undefined)) {
        throw validationError({ non_field_errors: ['Send either email or username, with password.'] })
      }
      const login = email !== undefined ? { field: 'email' as const, value: email } : { field: 'username' as const, value: username as string }
      const client = { ...clientOf(request), deviceProof: presentedDeviceProof(request, device_token) }
      const result = await auth.signIn(login, password, client)
      if ('mfaRequired' in result) return { mfa_required: true as const, challenge: result.challenge, methods: result.methods }
      return signedIn(request, reply, result)
    },
  )

  app.post(
    '/sign-in/mfa',
    {
      schema: {
        tags,
        operationId: 'signInSecondFactor',
        summary: 'Complete a sign-in with a TOTP code, a recovery code or a passkey',
        description:
          'A wrong code counts against the account\'s sign-in limit (401 `invalid_second_factor`, then 429); an unknown, expired or used challenge is 401 `invalid_mfa_challenge`.',
        body: SignInMfaBodySchema,
        response: { 200: { ...SessionResponseSchema, description: 'Signed in' }, ...problemResponses([400, 401, 413, 415, 429]) },
      },
      onRequest: jsonOnly,
    },
    async (request, reply) => {
      const { challenge, code, recovery_code, passkey, device_token } = request.body
      if ([code, recovery_code, passkey].filter((given) => given !== undefined).length !== 1) {
        throw validationError({ non_field_errors: ['Send one of code, recovery_code or passkey, with the challenge.'] })
      }
      const client = { ...clientOf(request), deviceProof: presentedDeviceProof(request, device_token) }
      const proof =
        passkey !== undefined
          ? { passkey: options.passkeySecondFactor(request, passkey) }
          : code !== undefined
            ? { code: code.trim() }
            : { recovery_code: recovery_code as string }
      return signedIn(request, reply, await auth.signInWithSecondFactor(challenge, proof, client))
    },
  )

  app.post(
    '/refresh',
    {
      preValidation: emptyBodyAsObject,
      schema: {
        tags,
        operationId: 'refreshToken',
        summary: 'Rotate the refresh token',
        body: RefreshBodySchema,
        consumes: FORMS,
        response: {
          200: { ...RefreshResponseSchema, description: 'A new token pair; the old refresh token stops working' },
          204: Type.Null({ description: 'the web page (x-portrait-web: 1) with no refresh cookie: nobody is signed in' }),
          ...problemResponses([400, 401, 413, 415]),
        },
      },
    },
    async (request, reply) => {
      const token = presentedRefreshToken(request, request.body.refresh, refreshCookie)
      // The page asks at every load whether someone is signed in; without a cookie the answer is "no", not an error.
      if (token === undefined && isWebClient(request)) return reply.code(204).send(null)
      if (token === undefined) throw new AppError('invalid_refresh_token', { detail: 'Send the refresh token.' })
      try {
        return deliver(request, reply, await auth.refresh(token, clientOf(request)))
      } catch (error) {
        if (isWebClient(request)) clearRefreshCookie(request, reply, refreshCookie)
        throw error
      }
    },
  )

  app.post(
    '/sign-out',
    {
      preValidation: emptyBodyAsObject,
      schema: {
        tags,
        operationId: 'signOut',
        summary: 'End this session (refresh token) or, with an access token and {"all": true}, every session',
        description: 'The bearer token is optional: without `refresh` (or with `all`) it names the session(s) to end.',
        security: [{}, { bearerAuth: [] }],
        body: SignOutBodySchema,
        consumes: FORMS,
        response: { 204: NoContent, ...problemResponses([400, 401, 413, 415], { bearer: true }) },
      },
    },
    async (request, reply) => {
      const { body } = request
      if (body.all || (request.headers.authorization && body.refresh === undefined && !isWebClient(request))) {
        await authenticate(request)
        if (body.all) await auth.endAllSessions(request.actor.id, clientOf(request))
        else await auth.endSession(request.sessionId, request.actor.id, clientOf(request))
      } else {
        const token = presentedRefreshToken(request, body.refresh, refreshCookie)
        if (token !== undefined) await auth.signOut(token, clientOf(request))
      }
      if (isWebClient(request)) clearRefreshCookie(request, reply, refreshCookie)
      reply.code(204).send(null)
    },
  )
}
