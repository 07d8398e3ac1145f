import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isDatabaseUnavailable } from '../db/unavailable.js'
import { AppError, dependencyUnavailable, ERROR_CODES, type ErrorCode, type FieldErrors } from '../errors.js'
import { unavailableDependency } from '../health/outages.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  errors?: FieldErrors
  request_id: string
}

// Fastify's and @fastify/multipart's own errors, by code. Their messages are safe to show.
const FRAMEWORK_ERRORS: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_REQ_FILE_TOO_LARGE: 'payload_too_large',
  FST_PARTS_LIMIT: 'payload_too_large',
  FST_FILES_LIMIT: 'payload_too_large',
  FST_FIELDS_LIMIT: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'validation_failed',
  FST_PROTO_VIOLATION: 'validation_failed',
  FST_ERR_BAD_URL: 'route_not_found',
  FST_ERR_ASYNC_CONSTRAINT: 'route_not_found',
}

type ValidationEntry = NonNullable<FastifyError['validation']>[number]

/** Fastify's schema errors as a field → messages map. */
function fieldErrors(validation: ValidationEntry[]): FieldErrors {
  // No prototype: a client-chosen field name such as `constructor` or `__proto__` is just a key here.
  const errors: FieldErrors = Object.create(null)
  for (const entry of validation) {
    const params = entry.params as Record<string, unknown>
    let field = entry.instancePath.split('/').filter(Boolean).join('.')
    let message = entry.message ?? 'Invalid value.'
    if (entry.keyword === 'required') {
      field = String(params.missingProperty)
      message = 'This field is required.'
    } else if (entry.keyword === 'additionalProperties') {
      field = String(params.additionalProperty)
      message = 'Unknown field.'
    }
    field ||= 'non_field_errors'
    ;(errors[field] ??= []).push(message)
  }
  return errors
}

/** Turns any error into the problem it should be shown as, plus extra headers. */
export function toProblem(error: unknown, requestId: string): { problem: Problem; headers?: Record<string, string> } {
  const build = (code: ErrorCode, detail?: string, errors?: FieldErrors): Problem => ({
    type: `/problems/${code}`,
    title: ERROR_CODES[code].title,
    status: ERROR_CODES[code].status,
    detail: detail ?? ERROR_CODES[code].title,
    ...(errors ? { errors } : {}),
    request_id: requestId,
  })
  if (error instanceof AppError) return { problem: build(error.code, error.detail, error.errors), headers: error.headers }
  if (isDatabaseUnavailable(error)) return toProblem(dependencyUnavailable('database', error), requestId)
  const fastifyError = error as FastifyError
  if (fastifyError.validation) {
    return { problem: build('validation_failed', 'One or more fields are invalid.', fieldErrors(fastifyError.validation)) }
  }
  const code = FRAMEWORK_ERRORS[fastifyError.code]
  if (code) return { problem: build(code, fastifyError.message) }
  if (fastifyError.statusCode === 400 && fastifyError instanceof SyntaxError) return { problem: build('invalid_json', 'The body is not valid JSON.') }
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // Another client error raised by Fastify or a plugin; keep its status, generic code.
    const problem = build('validation_failed', fastifyError.message)
    return { problem: { ...problem, status: fastifyError.statusCode, title: 'Bad request', type: '/problems/bad_request' } }
  }
  return { problem: build('internal_error', 'Something went wrong on our side. Quote the request id when reporting it.') }
}

/** The one error handler: every error leaves as problem+json; server faults are logged, never shown. */
export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const { problem, headers } = toProblem(error, request.id)
  // A body left half-read (e.g. an upload refused at 413) would stall the next request on this connection.
  if (!request.raw.complete) reply.header('connection', 'close')
  // A dependency that does not answer is one outage (two warn lines, see Outages), not an error per request.
  const dependency = problem.status === 503 ? unavailableDependency(error) : undefined
  if (dependency && request.server.outages) request.server.outages.refused(dependency, error)
  else if (problem.status >= 500) request.log.error({ err: error }, 'request failed')
  else request.log.info({ code: problem.type, status: problem.status }, 'request rejected')
  sendProblem(reply, problem, headers)
}

export function sendProblem(reply: FastifyReply, problem: Problem, headers?: Record<string, string>): void {
  if (headers) reply.headers(headers)
  reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem))
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  const { problem } = toProblem(new AppError('route_not_found', { detail: `No route ${request.method} ${request.url.split('?')[0]}.` }), request.id)
  sendProblem(reply, problem)
}

// Errors Node raises on a connection before any request object exists.
const CONNECTION_ERRORS: Record<string, [ErrorCode, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: ['request_timeout', 'The request did not arrive in time.'],
  HPE_HEADER_OVERFLOW: ['headers_too_large', 'The request headers are too large.'],
}

/**
 * Answers requests that never reach Fastify's routing (too slow, headers too large, unparsable) as
 * problem+json like every other error, then closes the connection.
 */
export function clientErrorHandler(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [code, detail] = CONNECTION_ERRORS[error.code ?? ''] ?? ['bad_request', 'The request could not be read.']
  const { problem } = toProblem(new AppError(code, { detail }), crypto.randomUUID())
  this.log.info({ reqId: problem.request_id, code: error.code, status: problem.status }, 'connection-level client error')
  if (socket.writable) {
    const body = JSON.stringify(problem)
    socket.write(
      `HTTP/1.1 ${problem.status} ${problem.title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-Id: ${problem.request_id}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(error)
}
