import multipart, { type Multipart, type MultipartFile } from '@fastify/multipart'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { clientOf } from '../activity/client.js'
import { AppError, validationError } from '../errors.js'
import { HEADERS, problemResponses, withHeaders } from '../http/problem.schema.js'
import { bodyFields, emptyBodyAsObject, numericQuery } from '../http/validation.js'
import { humanSize } from '../human-size.js'
import { stepUpFields } from '../mfa/mfa.schemas.js'
import type { ProfileUpdateInput } from './profile-update.js'
import { usersPolicy } from './users.policy.js'
import {
  etagOf,
  IdParamsSchema,
  ProfileUpdateFormSchema,
  ProfileUpdateJsonSchema,
  ProfileUpdateMultipartSchema,
  UserListSchema,
  UserSchema,
} from './users.schemas.js'
import type { UsersService } from './users.service.js'
import type { UserRow } from './users.table.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The user named by `{id}`, resolved and authorized before the body is read. */
    target: UserRow
  }
}

export interface UsersRoutesOptions {
  users: UsersService
  authenticate: (request: FastifyRequest) => Promise<void>
  avatarMaxBytes: number
}

const tags = ['users']
const security = [{ bearerAuth: [] }]
const bearer = { bearer: true }
// Every user response carries the profile's version.
const UserWithEtag = withHeaders(UserSchema, { ETag: HEADERS.etag }, 'The user')
const IfMatchSchema = Type.Object({
  'if-match': Type.Optional(Type.String({ description: 'The ETag of the profile as read: a profile changed since answers 412, unchanged' })),
})
const NoContent = Type.Null({ description: 'Done; no body' })
const MAX_FORM_FIELDS = 20

export const usersRoutes: FastifyPluginAsyncTypebox<UsersRoutesOptions> = async (app, options) => {
  const { users, authenticate, avatarMaxBytes } = options

  /** onRequest hook: 401, then 404, then 403 — all before the body is read (SPEC §3). */
  const target = (rule: (actor: UserRow, target: UserRow) => boolean) => async (request: FastifyRequest) => {
    await authenticate(request)
    request.target = await users.resolveTarget(request.actor, (request.params as { id: string }).id, rule)
  }

  const sendUser = (reply: FastifyReply, row: UserRow) => {
    reply.header('etag', etagOf(row))
    return users.present(row)
  }

  app.get(
    '/me',
    {
      onRequest: authenticate,
      schema: { tags, security, operationId: 'getMe', summary: 'The signed-in user', response: { 200: UserWithEtag, ...problemResponses([401], bearer) } },
    },
    async (request, reply) => sendUser(reply, request.actor),
  )

  app.get(
    '/',
    {
      // 401, then 403, before the query is judged (SPEC §3's order).
      preValidation: numericQuery(['page', 'page_size', 'after']),
      onRequest: async (request) => {
        await authenticate(request)
        if (!usersPolicy.canList(request.actor)) throw new AppError('forbidden', { detail: 'Only staff may list users.' })
      },
      schema: {
        tags,
        security,
        operationId: 'listUsers',
        summary: 'List users (staff)',
        // Query values arrive as text: numericQuery turns the numbers' digits into numbers, Ajv judges the rest.
        querystring: Type.Object({
          search: Type.Optional(Type.String({ default: '', maxLength: 200, description: 'case-insensitive substring of username, email or names' })),
          page: Type.Optional(Type.Integer({ default: 1, minimum: 1, maximum: 1_000_000, description: 'page number, from 1' })),
          page_size: Type.Optional(Type.Integer({ default: 20, minimum: 1, maximum: 100, description: 'results per page, 1 to 100' })),
          after: Type.Optional(
            Type.Integer({ minimum: 0, description: 'keyset paging: the users after this id (page is then ignored; `next` continues with after)' }),
          ),
        }),
        response: { 200: { ...UserListSchema, description: 'One page of users, by id' }, ...problemResponses([400, 401, 403], bearer) },
      },
    },
    async (request) => {
      // Defaults filled in by Ajv (useDefaults).
      const { search = '', page = 1, page_size = 20, after } = request.query
      const { count, countExact, more, results } = await users.list(search.trim(), page, page_size, after)
      const link = (to: Record<string, string>) => {
        const query = new URLSearchParams({ ...to, page_size: String(page_size), ...(search ? { search } : {}) })
        return `${users.mediaBaseUrl}/api/users?${query}`
      }
      const last = results.at(-1)
      if (after !== undefined) {
        // Keyset: the next page starts after this page's last id; there is no "previous" to point at.
        return { count, count_exact: countExact, next: more && last ? link({ after: String(last.id) }) : null, previous: null, results }
      }
      // Past an inexact count the last page is unknown, so "previous" is simply the page before.
      const lastPage = countExact ? Math.max(1, Math.ceil(count / page_size)) : page - 1
      return {
        count,
        count_exact: countExact,
        next: more ? link({ page: String(page + 1) }) : null,
        previous: page > 1 ? link({ page: String(Math.min(page - 1, lastPage)) }) : null,
        results,
      }
    },
  )

  app.get(
    '/:id',
    {
      onRequest: target(usersPolicy.canRead),
      schema: {
        tags,
        security,
        operationId: 'getUser',
        summary: 'A user (yourself, or anyone for staff)',
        params: IdParamsSchema,
        response: { 200: UserWithEtag, ...problemResponses([401, 403, 404, 414], bearer) },
      },
    },
    async (request, reply) => sendUser(reply, request.target),
  )

  const update = async (request: FastifyRequest, reply: FastifyReply) => {
    const input = request.isMultipart() ? await readMultipart(request, avatarMaxBytes) : readFields(request)
    const ifMatch = request.headers['if-match']
    return sendUser(reply, await users.update(request.actor, request.target, input, ifMatch, { sessionId: request.sessionId, ...clientOf(request) }))
  }
  const updateRoute = {
    onRequest: target(usersPolicy.canUpdate),
    // The schema documents the body for every content type; the service's field rules judge it (every
    // failing field at once). Ajv would only repeat that work, and for multipart build an error for a body
    // it cannot see, so it does not run here. `{id}` needs no validator: a path parameter is always a string.
    validatorCompiler: () => () => true,
    schema: {
      tags,
      security,
      operationId: 'updateUser',
      summary: 'Update a profile (partial), optionally uploading an avatar',
      params: IdParamsSchema,
      headers: IfMatchSchema,
      body: {
        content: {
          'application/json': { schema: ProfileUpdateJsonSchema },
          'multipart/form-data': { schema: ProfileUpdateMultipartSchema },
          'application/x-www-form-urlencoded': { schema: ProfileUpdateFormSchema },
        },
      },
      response: { 200: UserWithEtag, ...problemResponses([400, 401, 403, 404, 412, 413, 414, 415, 429], bearer) },
    },
  }

  // SPEC §4: /me takes the same updates as /{id}, on the signed-in user's own profile.
  const { params: _noParams, ...meSchema } = updateRoute.schema
  const updateMeRoute = {
    ...updateRoute,
    onRequest: async (request: FastifyRequest) => {
      await authenticate(request)
      request.target = request.actor
    },
    schema: {
      ...meSchema,
      operationId: 'updateMe',
      summary: 'Update your own profile (the same as PUT /api/users/{id})',
      response: { 200: UserWithEtag, ...problemResponses([400, 401, 403, 412, 413, 415, 429], bearer) },
    },
  }
  const patch = <T extends { schema: object }>(route: T, operationId: string) => ({ ...route, schema: { ...route.schema, operationId } })
  // Multipart is read by these four routes only: registered here, its parser and its two async hooks (a
  // response 'close' listener, a temp-file cleanup) stay off every other request (GET /me among them).
  await app.register(async (updates) => {
    await updates.register(multipart, { limits: { fileSize: avatarMaxBytes } })
    updates.put('/:id', updateRoute, update)
    updates.patch('/:id', patch(updateRoute, 'patchUser'), update)
    updates.put('/me', updateMeRoute, update)
    updates.patch('/me', patch(updateMeRoute, 'patchMe'), update)
  })

  app.post(
    '/me/reauthenticate',
    {
      onRequest: authenticate,
      schema: {
        tags,
        security,
        operationId: 'reauthenticate',
        summary: 'Confirm your password: for 5 minutes this session may change the email, add a passkey or an authenticator app',
        description:
          'For an account without a second factor (one with a second factor steps up with it instead). A wrong password counts against the sign-in limit (400, then 429).',
        body: Type.Object({ password: Type.String({ maxLength: 1024 }) }, { additionalProperties: false }),
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        response: { 204: NoContent, ...problemResponses([400, 401, 413, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      await users.reauthenticate(request.actor, request.sessionId, request.body.password, request.ip)
      reply.code(204).send(null)
    },
  )

  app.post(
    '/:id/password',
    {
      onRequest: target(usersPolicy.canChangePassword),
      schema: {
        tags,
        security,
        operationId: 'changePassword',
        summary: 'Change the password; ends every other session',
        params: IdParamsSchema,
        body: Type.Object(
          {
            current_password: Type.String({ maxLength: 1024 }),
            new_password: Type.String({ maxLength: 1024, description: 'The sign-up password rules (8–128 characters, not common, not all digits, not like the username or email)' }),
            ...stepUpFields,
          },
          { additionalProperties: false },
        ),
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        response: { 204: NoContent, ...problemResponses([400, 401, 403, 404, 413, 414, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      await users.changePassword(request.target, request.sessionId, request.body, clientOf(request))
      reply.code(204).send(null)
    },
  )

  app.delete(
    '/:id',
    {
      onRequest: target(usersPolicy.canDelete),
      preValidation: emptyBodyAsObject,
      schema: {
        tags,
        security,
        operationId: 'deleteUser',
        summary: 'Delete an account (yourself with current_password, or a non-superuser as superuser)',
        params: IdParamsSchema,
        headers: IfMatchSchema,
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: Type.Object(
          {
            current_password: Type.Optional(
              Type.String({ maxLength: 1024, description: 'Required to delete yourself. A superuser deleting someone else sends it (or otp_code, with a second factor) only when this session has not proven it in the last 5 minutes' }),
            ),
            ...stepUpFields,
          },
          { additionalProperties: false },
        ),
        response: { 204: NoContent, ...problemResponses([400, 401, 403, 404, 412, 413, 414, 415, 429], bearer) },
      },
    },
    async (request, reply) => {
      await users.delete(request.actor, request.target, request.body, request.headers['if-match'], { sessionId: request.sessionId, address: request.ip })
      reply.code(204).send(null)
    },
  )
}

function readFields(request: FastifyRequest): ProfileUpdateInput {
  const fields = bodyFields(request.body)
  if (!fields) throw validationError({ non_field_errors: ['Send a JSON object.'] })
  const isForm = request.headers['content-type']?.startsWith('application/x-www-form-urlencoded') ?? false
  return { fields, source: isForm ? 'form' : 'json' }
}

/**
 * Streams the parts: text fields are collected, the `avatar` file is read up to the size limit
 * (beyond it: 413, the rest never buffered). Any other file, or a second one, is refused.
 */
async function readMultipart(request: FastifyRequest, avatarMaxBytes: number): Promise<ProfileUpdateInput> {
  try {
    return await collectParts(request, avatarMaxBytes)
  } catch (error) {
    throw asMultipartProblem(error)
  }
}

/**
 * The parser's own failures (a boundary that never closes, a missing boundary, broken part headers,
 * a body cut short) are the client's fault: 400, never a 500. Our errors and the plugin's coded
 * limits (413) pass through unchanged.
 */
function asMultipartProblem(error: unknown): unknown {
  if (error instanceof AppError) return error
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code.startsWith('FST_')) return error
  return new AppError('invalid_multipart', { detail: 'The multipart/form-data body is malformed or incomplete.', cause: error })
}

async function collectParts(request: FastifyRequest, avatarMaxBytes: number): Promise<ProfileUpdateInput> {
  const fields: Record<string, unknown> = Object.create(null)
  let upload: Buffer | undefined
  const parts = request.parts({
    // One byte over the limit is enough to know the file is too large; readFile stops right there.
    limits: { fileSize: avatarMaxBytes + 1, files: 2, fields: MAX_FORM_FIELDS, parts: MAX_FORM_FIELDS + 2, fieldSize: 16 * 1024 },
  })
  for await (const part of parts as AsyncIterable<Multipart>) {
    if (part.type === 'field') {
      const previous = fields[part.fieldname]
      fields[part.fieldname] = previous === undefined ? part.value : [previous, part.value].flat()
      continue
    }
    if (part.fieldname !== 'avatar') {
      throw validationError({ [part.fieldname]: ['Unexpected file; the only file field is avatar.'] })
    }
    if (upload !== undefined) throw validationError({ avatar: ['Send one avatar file only.'] })
    upload = await readFile(part, avatarMaxBytes)
  }
  return { fields, source: 'form', ...(upload && upload.length > 0 ? { upload } : {}) }
}

/**
 * Reads the file part, answering 413 as soon as it passes the limit: the rest of the body is never
 * buffered, and the client hears back without having to send it all first.
 */
async function readFile(part: MultipartFile, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of part.file as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBytes) {
      throw new AppError('payload_too_large', { detail: `The avatar may be at most ${humanSize(maxBytes)}.` })
    }
    chunks.push(chunk)
  }
  const bytes = Buffer.concat(chunks)
  // A browser sends an empty, nameless part when no file was chosen: that changes nothing.
  if (bytes.length === 0 && part.filename !== '') throw validationError({ avatar: ['The submitted file is empty.'] })
  return bytes
}
