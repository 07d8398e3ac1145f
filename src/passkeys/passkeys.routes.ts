import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { clientOf } from '../activity/client.js'
import { SessionResponseSchema } from '../auth/auth.schemas.js'
import type { AuthService } from '../auth/auth.service.js'
import { deliverDeviceProof, presentedDeviceProof } from '../auth/device-proof.js'
import { isWebClient, type RefreshCookieSettings, setRefreshCookie } from '../auth/refresh-cookie.js'
import { AppError, validationError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
import type { MfaService } from '../mfa/mfa.service.js'
import type { SensitiveOperation, StepUp } from '../mfa/step-up.js'
import type { UsersService } from '../users/users.service.js'
import {
  AuthenticationOptionsSchema,
  CreatePasskeyBodySchema,
  MfaPasskeyOptionsBodySchema,
  PasskeyIdParamsSchema,
  PasskeyListSchema,
  PasskeySchema,
  PasskeySignInBodySchema,
  PasskeySupportSchema,
  PasskeyVerifyBodySchema,
  RegistrationOptionsSchema,
  RenamePasskeyBodySchema,
  SignInOptionsSchema,
} from './passkeys.schemas.js'
import { availableRp, PASSKEY_AMR, type PasskeysService } from './passkeys.service.js'
import type { RelyingPartyAnswer } from './relying-party.js'

export interface PasskeysRoutesOptions {
  passkeys: PasskeysService
  /** The second factors: a passkey assertion is counted and recorded as one (step-up, sign-in's second step). */
  mfa: MfaService
  authenticate: (request: FastifyRequest) => Promise<void>
  /** Adding and deleting a passkey need a recent second factor from an account that has one; adding, a recent password from one without. */
  stepUp: StepUp
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
  const { passkeys, mfa, authenticate, stepUp, relyingParty } = options
  const tags = ['users']
  const steppedUp = (operation: SensitiveOperation, request: FastifyRequest) =>
    stepUp.require(operation, { actor: request.actor, target: request.actor, sessionId: request.sessionId, proof: {}, client: { address: request.ip } })
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
        description:
          'A discoverable credential with user verification; the challenge works once, for five minutes. An account with a second factor verifies one first (403 `step_up_required`), here and when registering; one without confirms the password first when its sign-in is more than 5 minutes old (403 `reauthentication_required`: POST /api/users/me/reauthenticate).',
        response: { 200: RegistrationOptionsSchema, ...problemResponses([400, 401, 403, 404], bearer) },
      },
    },
    async (request) => {
      // Checked before the ceremony too, so nobody touches an authenticator for a registration that will be refused.
      await steppedUp('add_passkey', request)
      return passkeys.registrationOptions(request.actor, rpOf(request))
    },
  )

  app.post(
    '/step-up-options',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'passkeyStepUpOptions',
        summary: 'Options for navigator.credentials.get: prove a second factor with one of your passkeys (step-up)',
        response: { 200: AuthenticationOptionsSchema, ...problemResponses([400, 401, 404], bearer) },
      },
    },
    async (request) => passkeys.secondFactorOptions(request.actor.id, rpOf(request)),
  )

  app.post(
    '/verify',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'verifyPasskey',
        summary: 'Step up with a passkey: this session counts as having just proven a second factor',
        description: 'As POST /api/users/me/mfa/verify with a code: a refusal counts against the sign-in limit (400, then 429).',
        body: PasskeyVerifyBodySchema,
        response: { 204: Type.Null({ description: 'Verified; no body' }), ...problemResponses([400, 401, 404, 413, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      const rp = rpOf(request)
      const check = passkeys.secondFactorCheck({ available: true, rp }, request.body.response as never, request.log)
      if (!(await mfa.attempt(request.actor.id, { passkey: check }, { address: request.ip }))) {
        throw validationError({ response: ['This passkey was not accepted. Ask for new options and try again.'] })
      }
      await mfa.markSession(request.sessionId)
      reply.code(204).send(null)
    },
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
        response: { 201: { ...PasskeySchema, description: 'Registered' }, ...problemResponses([400, 401, 403, 404, 413, 415], bearer) },
      },
    },
    async (request, reply) => {
      await steppedUp('add_passkey', request)
      const created = await passkeys.register(request.actor, request.body.name, request.body.response as never, rpOf(request), clientOf(request), request.log)
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
        summary: 'Delete one of your passkeys; it signs nobody in any more (needs a recent second factor)',
        params: PasskeyIdParamsSchema,
        response: { 204: NoContent, ...problemResponses([401, 403, 404, 414], bearer) },
      },
    },
    async (request, reply) => {
      await steppedUp('delete_passkey', request)
      await passkeys.remove(request.actor, passkeyId(request), clientOf(request))
      reply.code(204).send(null)
    },
  )
}

export interface PasskeyAuthRoutesOptions extends Omit<PasskeysRoutesOptions, 'authenticate' | 'stepUp'> {
  auth: AuthService
  users: UsersService
  refreshTokenTtlSeconds: number
  refreshCookie: RefreshCookieSettings
}

/** Passwordless sign-in with a passkey: /api/auth/passkey… and /api/auth/sign-in/passkey (inside the cookie scope). */
export const passkeyAuthRoutes: FastifyPluginAsyncTypebox<PasskeyAuthRoutesOptions> = async (app, options) => {
  const { passkeys, mfa, relyingParty, auth, users, refreshTokenTtlSeconds, refreshCookie } = options
  const tags = ['auth']

  app.post(
    '/sign-in/mfa/passkey-options',
    {
      schema: {
        tags,
        operationId: 'passkeySecondFactorOptions',
        summary: 'Options for navigator.credentials.get: complete a challenged sign-in with a passkey',
        description: 'For a sign-in answer whose `methods` include `passkey`; send the response to POST /api/auth/sign-in/mfa as `passkey`.',
        body: MfaPasskeyOptionsBodySchema,
        response: { 200: AuthenticationOptionsSchema, ...problemResponses([400, 401, 404, 413, 415]) },
      },
    },
    async (request) => {
      const rp = availableRp(relyingParty(request.headers.host))
      const opened = await mfa.openChallenge(request.body.challenge)
      if (!opened) {
        throw new AppError('invalid_mfa_challenge', { detail: 'The sign-in challenge is unknown, expired or used already: sign in with the password again.' })
      }
      return passkeys.secondFactorOptions(opened.userId, rp)
    },
  )

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
      const { user: signedIn, deviceProof, ...tokens } = await auth.finishSignIn(user, { amr: PASSKEY_AMR, secondFactor: true }, {
        client: { ...clientOf(request), deviceProof: presentedDeviceProof(request, undefined) },
      })
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
