import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { clientOf } from '../activity/client.js'
import { problemResponses } from '../http/problem.schema.js'
import { usersPolicy } from '../users/users.policy.js'
import { IdParamsSchema } from '../users/users.schemas.js'
import type { UsersService } from '../users/users.service.js'
import type { UserRow } from '../users/users.table.js'
import type { AccountMail } from './account-mail.service.js'
import { AcceptedSchema, PasswordResetBodySchema, PasswordResetConfirmBodySchema, VerifyEmailBodySchema } from './account-tokens.schemas.js'

export interface AccountTokensRoutesOptions {
  accountMail: AccountMail
  users: UsersService
  authenticate: (request: FastifyRequest) => Promise<void>
}

const NoContent = Type.Null({ description: 'Done; no body' })
const FORMS = ['application/json', 'application/x-www-form-urlencoded']
// The same words whether or not an account has the address (nothing here tells which addresses exist).
const RESET_REQUESTED = 'If an active account has this address, a link to reset its password is on its way to it.'

/** Under /api/auth: ask for a reset, use a reset link, use a verification link. No bearer token. */
export const accountTokensAuthRoutes: FastifyPluginAsyncTypebox<AccountTokensRoutesOptions> = async (app, { accountMail }) => {
  const tags = ['auth']

  app.post(
    '/password-reset',
    {
      schema: {
        tags,
        operationId: 'requestPasswordReset',
        summary: 'Mail a password-reset link to the account with this address, if there is one',
        description:
          'The same 202 and body whether or not an account has the address, after the same work (the account is looked up once the reply is sent). Limited per email address and per client address (MAIL_REQUESTS_PER_EMAIL, MAIL_REQUESTS_PER_ADDRESS).',
        body: PasswordResetBodySchema,
        consumes: FORMS,
        response: { 202: { ...AcceptedSchema, description: 'Accepted: a mail goes out if an active account has the address' }, ...problemResponses([400, 413, 415, 429]) },
      },
    },
    async (request, reply) => {
      // The response's 'finish' (or 'close', for a client gone first): the lookup starts only after the reply left.
      const replied = new Promise((resolve) => {
        reply.raw.once('finish', resolve)
        reply.raw.once('close', resolve)
      })
      await accountMail.requestReset(request.body.email, request.ip, replied)
      reply.code(202)
      return { detail: RESET_REQUESTED }
    },
  )

  app.post(
    '/password-reset/confirm',
    {
      schema: {
        tags,
        operationId: 'confirmPasswordReset',
        summary: 'Set a new password with the token of a reset link; signs out every session',
        description:
          'A token that is unknown, expired (PASSWORD_RESET_TTL), used, or issued before the password last changed is a 400 on `token`, and nothing changes. On success the sign-in failure count of the account is cleared and a notice is mailed.',
        body: PasswordResetConfirmBodySchema,
        consumes: FORMS,
        response: { 204: NoContent, ...problemResponses([400, 413, 415]) },
      },
    },
    async (request, reply) => {
      await accountMail.confirmReset(request.body.token, request.body.new_password, clientOf(request))
      reply.code(204).send(null)
    },
  )

  app.post(
    '/verify-email',
    {
      schema: {
        tags,
        operationId: 'verifyEmail',
        summary: 'Confirm an email address with the token of a verification link',
        description: 'A token that is unknown, expired (EMAIL_VERIFICATION_TTL), used, or sent to an address the account no longer has is a 400 on `token`.',
        body: VerifyEmailBodySchema,
        consumes: FORMS,
        response: { 204: NoContent, ...problemResponses([400, 413, 415]) },
      },
    },
    async (request, reply) => {
      await accountMail.verifyEmail(request.body.token)
      reply.code(204).send(null)
    },
  )
}

/** Under /api/users: mail links about a user, in the order 401, 404, 403 like the other /users/{id} routes. */
export const accountTokensUserRoutes: FastifyPluginAsyncTypebox<AccountTokensRoutesOptions> = async (app, { accountMail, users, authenticate }) => {
  const tags = ['users']
  const security = [{ bearerAuth: [] }]
  const target = (rule: (actor: UserRow, target: UserRow) => boolean) => async (request: FastifyRequest) => {
    await authenticate(request)
    request.target = await users.resolveTarget(request.actor, (request.params as { id: string }).id, rule)
  }

  app.post(
    '/:id/verify-email',
    {
      onRequest: target(usersPolicy.canRequestVerification),
      schema: {
        tags,
        security,
        operationId: 'resendVerificationEmail',
        summary: 'Mail yourself a new verification link (limited)',
        params: IdParamsSchema,
        response: { 202: { ...AcceptedSchema, description: 'A new link is on its way, or the address is verified already' }, ...problemResponses([401, 403, 404, 414, 429], { bearer: true }) },
      },
    },
    async (request, reply) => {
      const sent = await accountMail.resendVerification(request.target, request.ip)
      reply.code(202)
      return { detail: sent ? `A new verification link is on its way to ${request.target.email}.` : 'The address is verified already; no mail was sent.' }
    },
  )

  app.post(
    '/:id/password-reset',
    {
      onRequest: target(usersPolicy.canSendPasswordReset),
      schema: {
        tags,
        security,
        operationId: 'sendPasswordReset',
        summary: 'Mail another user a password-reset link (superuser)',
        params: IdParamsSchema,
        response: { 202: { ...AcceptedSchema, description: 'The link is on its way to the user’s address' }, ...problemResponses([400, 401, 403, 404, 414, 429], { bearer: true }) },
      },
    },
    async (request, reply) => {
      await accountMail.sendResetFor(request.target, request.ip)
      reply.code(202)
      return { detail: 'A password-reset link is on its way to the user’s address.' }
    },
  )
}
