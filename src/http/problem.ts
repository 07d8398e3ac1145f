import type { IncomingMessage, ServerResponse } from 'node:http'
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
}

// Errors Fastify's router raises before routing. Their messages quote the URL, so each gets a fixed detail.
const ROUTER_ERRORS: Record<string, [ErrorCode, string]> = {
  FST_ERR_BAD_URL: ['bad_request', 'The URL is malformed.'],
  FST_ERR_MAX_PARAM_LENGTH: ['uri_too_long', 'A part of the URL is too long.'],
  FST_ERR_ASYNC_CONSTRAINT: ['route_not_found', 'No route matches this request.'],
}

type ValidationEntry = NonNullable<FastifyError['validation']>[number]

/**
 * An Ajv error in the service's own words (Django REST framework's, as the field rules word theirs), never
 * Ajv's English ("must NOT have more than 200 characters"), which would also quote schema internals.
 */
function fieldMessage(entry: ValidationEntry): string {
  const params = entry.params as Record<string, unknown>
  switch (entry.keyword) {
    case 'required':
      return 'This field is required.'
    case 'additionalProperties':
      return 'Unknown field.'
    case 'maxLength':
      return `Ensure this field has no more than ${params.limit} characters.`
    case 'minLength':
      return params.limit === 1 ? 'This field may not be blank.' : `Ensure this field has at least ${params.limit} characters.`
    case 'maximum':
      return `Ensure this value is less than or equal to ${params.limit}.`
    case 'minimum':
      return `Ensure this value is greater than or equal to ${params.limit}.`
    case 'format':
      return params.format === 'email' ? 'Enter a valid email address.' : 'Enter a valid value.'
    case 'pattern':
      return 'Enter a valid value.'
    case 'enum':
    case 'const':
      return 'Select a valid choice.'
    case 'type': {
      const type = String(params.type)
      if (entry.instancePath === '' && type === 'object') return 'Send a JSON object.'
      if (type.includes('integer')) return 'A valid integer is required.'
      if (type.includes('number')) return 'A valid number is required.'
      if (type.includes('boolean')) return 'Must be a boolean.'
      if (type.includes('string')) return 'Not a valid string.'
      return 'Invalid value.'
    }
    default:
      return 'Invalid value.'
  }
}

/** Fastify's schema errors as a field → messages map. */
function fieldErrors(validation: ValidationEntry[]): FieldErrors {
  // No prototype: a client-chosen field name such as `constructor` or `__proto__` is just a key here.
  const errors: FieldErrors = Object.create(null)
  for (const entry of validation) {
    const params = entry.params as Record<string, unknown>
    let field = entry.instancePath.split('/').filter(Boolean).join('.')
    if (entry.keyword === 'required') field = String(params.missingProperty)
    else if (entry.keyword === 'additionalProperties') field = String(params.additionalProperty)
    field ||= 'non_field_errors'
    const message = fieldMessage(entry)
    const messages = (errors[field] ??= [])
    if (!messages.includes(message)) messages.push(message)
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
  const routerError = ROUTER_ERRORS[fastifyError.code]
  if (routerError) return { problem: build(routerError[0], routerError[1]) }
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
  // A client that went away mid-body fails the body's stream with ECONNRESET: its doing, not the database's.
  // Checked before toProblem, which would take that code for a lost database connection.
  if (!request.raw.complete && request.raw.readableAborted) {
    request.log.info({ code: (error as { code?: unknown }).code }, 'client aborted the request')
    reply.header('connection', 'close')
    // Nobody is left to read it; the status is for the access log.
    sendProblem(reply, toProblem(new AppError('bad_request', { detail: 'The request was not received in full.' }), request.id).problem)
    return
  }
  const { problem, headers } = toProblem(error, request.id)
  if (problem.status === 415 && !(error instanceof AppError)) problem.detail = acceptedTypes(request)
  // A body left half-read (e.g. an upload refused at 413 or 401) would stall the next request on this connection.
  if (bodyLeftUnread(request)) lingerThenClose(request, reply)
  // A dependency that does not answer is one outage (two warn lines, see Outages), not an error per request.
  const dependency = problem.status === 503 ? unavailableDependency(error) : undefined
  if (dependency && request.server.outages) request.server.outages.refused(dependency, error)
  else if (problem.status >= 500) request.log.error({ err: error }, 'request failed')
  else request.log.info({ code: problem.type, status: problem.status }, 'request rejected')
  sendProblem(reply, problem, headers)
}

/** A 415's detail: the body types this route reads (its schema's `consumes`, else JSON and forms), never the one sent. */
function acceptedTypes(request: FastifyRequest): string {
  // A route states its types as `consumes`, or as one body schema per content type.
  const schema = request.routeOptions.schema as { consumes?: string[]; body?: { content?: Record<string, unknown> } } | undefined
  const consumes = schema?.consumes ?? Object.keys(schema?.body?.content ?? {})
  if (consumes.length === 0) consumes.push('application/json', 'application/x-www-form-urlencoded')
  const list = consumes.length > 1 ? `${consumes.slice(0, -1).join(', ')} or ${consumes.at(-1)}` : consumes[0]
  return `This body type is not accepted here: send ${list}.`
}

export function sendProblem(reply: FastifyReply, problem: Problem, headers?: Record<string, string>): void {
  if (headers) reply.headers(headers)
  reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem))
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  // The path is not repeated: a response never echoes the client's input.
  const { problem } = toProblem(new AppError('route_not_found', { detail: 'No route matches this method and path.' }), request.id)
  if (bodyLeftUnread(request)) lingerThenClose(request, reply)
  sendProblem(reply, problem)
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route or hook runs (a malformed URL, a
 * path parameter over `maxParamLength`) leaves as problem+json with `X-Request-Id` like everything else,
 * instead of Fastify's own JSON that quotes the URL back.
 */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const { problem } = toProblem(error, request.id)
  // No onRequest or onResponse hook runs here: the header and the access line are written by hand.
  reply.header('x-request-id', request.id)
  if (bodyLeftUnread(request)) lingerThenClose(request, reply)
  request.log.info({ method: request.method, code: problem.type, status: problem.status }, 'request rejected by the router')
  sendProblem(reply, problem)
}

/**
 * Whether the request has a body not yet (fully) read. `complete` alone is not enough: a request without a
 * body is marked complete only after a synchronous handler has run.
 */
function bodyLeftUnread(request: FastifyRequest): boolean {
  const { complete, headers } = request.raw
  return !complete && (headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0'))
}

// Lingering close: how much of a refused request's unread body is read and thrown away, and for how long at most.
const LINGER_MAX_BYTES = 256 * 1024
const LINGER_MAX_MS = 3000

/**
 * Answers with `Connection: close` but, before closing, reads and discards what is left of the request body
 * (up to LINGER_MAX_BYTES, for LINGER_MAX_MS at most), as nginx's lingering close does. Closing at once resets
 * a connection the client is still writing to, and the reset destroys the answer before the client reads it:
 * Node's fetch streaming a small upload to a refused route got `fetch failed` (EPIPE) instead of its 401.
 * Nothing is kept, so a 413 still never buffers the body; past the cap or the deadline the socket is closed.
 */
export function lingerThenClose(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('connection', 'close')
  const raw = request.raw
  const socket = raw.socket
  // Fastify's inject() has no real socket: nothing to linger on.
  if (raw.complete || socket.destroyed || typeof socket.destroySoon !== 'function') return
  // Node ends a `Connection: close` answer with destroySoon(): FIN, then destroy once written. Here the FIN
  // goes out with the answer, and the socket is destroyed once the answer is written and the body has ended
  // or passed the cap.
  const destroySoon = socket.destroySoon.bind(socket)
  let answered = false
  let drained = false
  const closeIfDone = () => {
    if (answered && drained) destroySoon()
  }
  socket.destroySoon = () => {
    answered = true
    socket.end()
    closeIfDone()
  }
  const stopDraining = () => {
    if (drained) return
    drained = true
    raw.pause()
    closeIfDone()
  }
  const deadline = setTimeout(() => socket.destroy(), LINGER_MAX_MS)
  socket.once('close', () => clearTimeout(deadline))
  let bytes = 0
  // A body parser that gave up (multipart's) may still be piped: its data now goes nowhere.
  raw.unpipe()
  raw.on('error', () => {})
  raw.on('data', (chunk: Buffer) => {
    bytes += chunk.length
    if (bytes > LINGER_MAX_BYTES) stopDraining()
  })
  raw.once('end', stopDraining)
  raw.resume()
}

/** Node answers an `Expect` other than 100-continue with a bare 417 unless told otherwise: problem+json here too. */
export function expectationFailedHandler(_request: IncomingMessage, response: ServerResponse): void {
  const { problem } = toProblem(new AppError('expectation_failed', { detail: 'Only "Expect: 100-continue" is supported.' }), crypto.randomUUID())
  const body = JSON.stringify(problem)
  response.writeHead(problem.status, {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': Buffer.byteLength(body),
    'x-request-id': problem.request_id,
    connection: 'close',
  })
  response.end(body)
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
