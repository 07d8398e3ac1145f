import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AuthService } from '../auth/auth.service.js'
import { deliverDeviceProof } from '../auth/device-proof.js'
import { SessionResponseSchema } from '../auth/auth.schemas.js'
import { isWebClient, type RefreshCookieSettings, setRefreshCookie } from '../auth/refresh-cookie.js'
import { AppError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
import type { UsersService } from '../users/users.service.js'
import {
  CreatePasskeyBodySchema,
  PasskeyIdParamsSchema,
  PasskeyListSchema,
  PasskeySchema,
  PasskeySignInBodySchema,
  PasskeySupportSchema,
  RegistrationOptionsSchema,
  RenamePasskeyBodySchema,
  SignInOptionsSchema,
} from './passkeys.schemas.js'
import { availableRp, PASSKEY_AMR, type PasskeysService } from './passkeys.service.js'
import type { RelyingPartyAnswer } from './relying-party.js'

export interface PasskeysRoutesOptions {
  passkeys: PasskeysService
  authenticate: (request: FastifyRequest) => Promise<void>
  /** RP ID and origin for a request's Host header (see relying-party.ts). */
  relyingParty: (hostHeader: string | undefined) => RelyingPartyAnswer
}

const security = [{ bearerAuth: [] }]
const bearer = { bearer: true }
const NoContent = Type.Null({ description: 'Deleted; no body' })
const ID = /^[1-9]\d{0,15}$/

/** The passkey id of the path, or 404 (a malformed id names no passkey). */
function passkeyId(request: FastifyRequest): number {
  const { id } = request.params as { id: string }
  if (!ID.test(id)) throw new AppError('not_found', { detail: 'No passkey of yours has this id.' })
  return Number(id)
}

/** The signed-in user's passkeys: /api/users/me/passkeys. */
export const passkeysRoutes: FastifyPluginAsyncTypebox<PasskeysRoutesOptions> = async (app, options) => {
  const { passkeys, authenticate, relyingParty } = options
  const tags = ['users']
  const rpOf = (request: FastifyRequest) => availableRp(relyingParty(request.headers.host))
  /** onRequest hook: 401, then 404 for a passkey that is not the caller's, before the body is read (SPEC §3). */
  const ownPasskey = async (request: FastifyRequest) => {
    await authenticate(request)
    await passkeys.assertOwn(request.actor.id, passkeyId(request))
  }

  app.post(
    '/registration-options',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'passkeyRegistrationOptions',
        summary: 'Options for navigator.credentials.create: register a passkey',
        description: 'A discoverable credential with user verification; the challenge works once, for five minutes.',
        response: { 200: RegistrationOptionsSchema, ...problemResponses([400, 401, 404], bearer) },
      },
    },
    async (request) => passkeys.registrationOptions(request.actor, rpOf(request)),
  )

  app.post(
    '/',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'createPasskey',
        summary: 'Register a passkey: the navigator.credentials.create response, and a name',
        body: CreatePasskeyBodySchema,
        response: { 201: { ...PasskeySchema, description: 'Registered' }, ...problemResponses([400, 401, 404, 413, 415], bearer) },
      },
    },
    async (request, reply) => {
      const created = await passkeys.register(request.actor, request.body.name, request.body.response as never, rpOf(request), request.log)
      reply.code(201)
      return created
    },
  )

  app.get(
    '/',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'listPasskeys',
        summary: 'Your passkeys, oldest first',
        response: { 200: PasskeyListSchema, ...problemResponses([401], bearer) },
      },
    },
    async (request) => ({ results: await passkeys.list(request.actor.id) }),
  )

  app.patch(
    '/:id',
    {
      onRequest: ownPasskey,
      schema: {
        tags,
        security,
        operationId: 'renamePasskey',
        summary: 'Rename one of your passkeys',
        params: PasskeyIdParamsSchema,
        body: RenamePasskeyBodySchema,
        response: { 200: PasskeySchema, ...problemResponses([400, 401, 404, 413, 414, 415], bearer) },
      },
    },
    async (request) => passkeys.rename(request.actor.id, passkeyId(request), request.body.name),
  )

  app.delete(
    '/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'deletePasskey',
        summary: 'Delete one of your passkeys; it signs nobody in any more',
        params: PasskeyIdParamsSchema,
        response: { 204: NoContent, ...problemResponses([401, 404, 414], bearer) },
      },
    },
    async (request, reply) => {
      await passkeys.remove(request.actor.id, passkeyId(request))
      reply.code(204).send(null)
    },
  )
}

export interface PasskeyAuthRoutesOptions extends Omit<PasskeysRoutesOptions, 'authenticate'> {
  auth: AuthService
  users: UsersService
  refreshTokenTtlSeconds: number
  refreshCookie: RefreshCookieSettings
}

/** Passwordless sign-in with a passkey: /api/auth/passkey… and /api/auth/sign-in/passkey (inside the cookie scope). */
export const passkeyAuthRoutes: FastifyPluginAsyncTypebox<PasskeyAuthRoutesOptions> = async (app, options) => {
  const { passkeys, relyingParty, auth, users, refreshTokenTtlSeconds, refreshCookie } = options
  const tags = ['auth']

  app.get(
    '/passkey',
    {
      schema: {
        tags,
        operationId: 'passkeySupport',
        summary: 'Whether passkeys work for a page on this origin (the page hides its buttons otherwise)',
        response: { 200: PasskeySupportSchema, ...problemResponses([]) },
      },
    },
    async (request) => {
      const answer = relyingParty(request.headers.host)
      return answer.available ? { available: true, rp_id: answer.rp.rpID, reason: null } : { available: false, rp_id: null, reason: answer.reason }
    },
  )

  app.post(
    '/passkey/options',
    {
      schema: {
        tags,
        operationId: 'passkeySignInOptions',
        summary: 'Options for navigator.credentials.get: sign in with a passkey, no password',
        description: 'No credential list: the authenticator offers the discoverable passkeys it holds for this site.',
        response: { 200: SignInOptionsSchema, ...problemResponses([400, 404, 429]) },
      },
    },
    async (request) => passkeys.signInOptions(availableRp(relyingParty(request.headers.host)), request.ip),
  )

  app.post(
    '/sign-in/passkey',
    {
      schema: {
        tags,
        operationId: 'signInWithPasskey',
        summary: 'Sign in with the navigator.credentials.get response to those options',
        description: 'The same answer as a password sign-in (the web page gets its refresh token as a cookie); 401 for an unknown passkey or an inactive account.',
        body: PasskeySignInBodySchema,
        response: { 200: { ...SessionResponseSchema, description: 'Signed in' }, ...problemResponses([400, 401, 404, 413, 415, 429]) },
      },
      // JSON only, as for a password sign-in.
      onRequest: async (request) => {
        const type = request.headers['content-type']
        if (type !== undefined && type.split(';')[0]?.trim().toLowerCase() !== 'application/json') {
          throw new AppError('unsupported_media_type', { detail: 'Sign-in accepts application/json only.' })
        }
      },
    },
    async (request, reply) => {
      const rp = availableRp(relyingParty(request.headers.host))
      const { challenge_id, response } = request.body
      const user = await passkeys.signIn(challenge_id, response as never, rp, request.ip, request.log)
      // A passkey with user verification is two factors in one (possession, and the biometric or PIN that unlocked it).
      const { user: signedIn, deviceProof, ...tokens } = await auth.finishSignIn(user, { amr: PASSKEY_AMR, secondFactor: true })
      return { ...deliver(request, reply, tokens), ...deliverDeviceProof(request, reply, deviceProof, refreshCookie.alwaysSecure), user: users.present(signedIn) }
    },
  )

  /** As the password sign-in does: the web page gets its refresh token as an HttpOnly cookie instead of in the body. */
  function deliver(request: FastifyRequest, reply: FastifyReply, tokens: { access: string; refresh: string }) {
    if (!isWebClient(request)) return tokens
    setRefreshCookie(request, reply, tokens.refresh, refreshTokenTtlSeconds, refreshCookie)
    return { access: tokens.access }
  }
}
