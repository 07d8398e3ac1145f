import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { clientOf } from '../activity/client.js'
import { validationError } from '../errors.js'
import { problemResponses } from '../http/problem.schema.js'
import { emptyBodyAsObject } from '../http/validation.js'
import {
  ConfirmBodySchema,
  DisableBodySchema,
  MfaStatusSchema,
  RecoveryCodesSchema,
  StepUpBodySchema,
  TotpEnrolmentSchema,
  VerifyBodySchema,
} from './mfa.schemas.js'
import type { MfaService } from './mfa.service.js'
import type { StepUp } from './step-up.js'

export interface MfaRoutesOptions {
  mfa: MfaService
  stepUp: StepUp
  authenticate: (request: FastifyRequest) => Promise<void>
}

const tags = ['mfa']
const security = [{ bearerAuth: [] }]
const bearer = { bearer: true }
const NoContent = Type.Null({ description: 'Done; no body' })

/** The signed-in user's second factor, under /api/users/me/mfa. */
export const mfaRoutes: FastifyPluginAsyncTypebox<MfaRoutesOptions> = async (app, { mfa, stepUp, authenticate }) => {
  app.addHook('onRequest', authenticate)
  const client = (request: FastifyRequest) => ({ address: request.ip })

  app.get(
    '/',
    {
      schema: {
        tags,
        security,
        operationId: 'getMfa',
        summary: 'Your second factor: whether it is on, and how many recovery codes are left',
        response: { 200: MfaStatusSchema, ...problemResponses([401], bearer) },
      },
    },
    async (request) => mfa.status(request.actor.id),
  )

  app.post(
    '/totp',
    {
      schema: {
        tags,
        security,
        operationId: 'enrolTotp',
        summary: 'Start setting up an authenticator app (replaces a pending set-up)',
        description:
          'Without a second factor yet, a session signed in more than 5 minutes ago confirms the password first (403 `reauthentication_required`: POST /api/users/me/reauthenticate); an authenticator added with a stolen access token would lock the owner out.',
        response: { 200: TotpEnrolmentSchema, ...problemResponses([401, 403, 409], bearer) },
      },
    },
    async (request) => {
      const { actor, sessionId } = request
      await stepUp.require('enrol_second_factor', { actor, target: actor, sessionId, proof: {}, client: client(request) })
      return mfa.enrol(actor)
    },
  )

  app.post(
    '/totp/confirm',
    {
      schema: {
        tags,
        security,
        operationId: 'confirmTotp',
        summary: 'Turn the authenticator app on with its first code; returns the recovery codes, once',
        body: ConfirmBodySchema,
        response: { 200: RecoveryCodesSchema, ...problemResponses([400, 401, 409, 413, 415], bearer) },
      },
    },
    async (request) => ({ recovery_codes: await mfa.confirm(request.actor, request.sessionId, request.body.code.trim(), clientOf(request)) }),
  )

  app.delete(
    '/totp',
    {
      schema: {
        tags,
        security,
        operationId: 'disableTotp',
        summary: 'Turn the second factor off (password, plus a code or a recovery code)',
        body: DisableBodySchema,
        response: { 204: NoContent, ...problemResponses([400, 401, 403, 409, 413, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      const { password, code, recovery_code } = request.body
      const proof = { otp_code: code?.trim(), recovery_code }
      await stepUp.require('disable_second_factor', { actor: request.actor, target: request.actor, sessionId: request.sessionId, proof, client: client(request) })
      await mfa.disable(request.actor, password, clientOf(request))
      reply.code(204).send(null)
    },
  )

  app.post(
    '/recovery-codes',
    {
      preValidation: emptyBodyAsObject,
      schema: {
        tags,
        security,
        operationId: 'regenerateRecoveryCodes',
        summary: 'Ten new recovery codes; the old ones stop working (needs a recent second factor)',
        body: StepUpBodySchema,
        response: { 200: RecoveryCodesSchema, ...problemResponses([400, 401, 403, 409, 413, 415, 429], bearer) },
      },
    },
    async (request) => {
      const { actor, sessionId } = request
      await stepUp.require('regenerate_recovery_codes', { actor, target: actor, sessionId, proof: request.body, client: client(request) })
      return { recovery_codes: await mfa.regenerateRecoveryCodes(actor, clientOf(request)) }
    },
  )

  app.post(
    '/verify',
    {
      schema: {
        tags,
        security,
        operationId: 'verifySecondFactor',
        summary: 'Prove the second factor now: sensitive operations in this session need no code for 5 minutes',
        body: VerifyBodySchema,
        response: { 204: NoContent, ...problemResponses([400, 401, 409, 413, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      const { code, recovery_code } = request.body
      if ((code === undefined) === (recovery_code === undefined)) throw validationError({ non_field_errors: ['Send either code or recovery_code.'] })
      await mfa.verify(request.actor, request.sessionId, code !== undefined ? { code: code.trim() } : { recovery_code }, client(request))
      reply.code(204).send(null)
    },
  )
}
