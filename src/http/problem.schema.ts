import { STATUS_CODES } from 'node:http'
import { Type } from 'typebox'
import { ERROR_CODES, type ErrorCode } from '../errors.js'

/** RFC 9457 problem details, as every error leaves the service. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: '`/problems/<code>`, one of the codes listed for the status' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    errors: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()), { description: 'field name → messages' })),
    request_id: Type.String({ description: 'the same as the X-Request-Id header' }),
  },
  { description: 'application/problem+json' },
)

/** The response headers the document names, each described once. */
export const HEADERS = {
  'x-request-id': {
    type: 'string',
    description: 'The request id (the client\'s own X-Request-Id when it is 1–64 of `A-Z a-z 0-9 . _ -`); also in every problem body',
  },
  'retry-after': { type: 'string', pattern: '^[0-9]+$', description: 'Seconds to wait before trying again' },
  'www-authenticate': { type: 'string', description: 'The scheme to authenticate with: `Bearer`' },
  etag: { type: 'string', description: 'The profile\'s version (strong ETag); send it back in If-Match to update or delete only that version' },
} as const

const PROBLEM_CONTENT_TYPE = 'application/problem+json'

const codesOf = (status: number) => (Object.keys(ERROR_CODES) as ErrorCode[]).filter((code) => ERROR_CODES[code].status === status)

/** Statuses every operation can answer with: a fault of ours, or the server shutting down or a dependency down. */
const ALWAYS = [500, 503] as const

/**
 * The error responses of an operation, as the error handler sends them (src/http/problem.ts): problem+json,
 * typed to the codes of src/errors.ts for that status, with Retry-After on 429/503 and, for operations taking
 * a bearer token, WWW-Authenticate on 401. 500 and 503 are always added. Use it for every route:
 * `response: { 200: UserSchema, ...problemResponses([400, 401, 404]) }`.
 */
export function problemResponses(statuses: readonly number[], options: { bearer?: boolean } = {}): Record<number, unknown> {
  const responses: Record<number, unknown> = {}
  for (const status of [...new Set([...statuses, ...ALWAYS])].sort()) {
    const codes = codesOf(status)
    const headers = {
      ...(status === 429 || status === 503 ? { 'Retry-After': HEADERS['retry-after'] } : {}),
      ...(status === 401 && options.bearer ? { 'WWW-Authenticate': HEADERS['www-authenticate'] } : {}),
    }
    responses[status] = {
      description: `${STATUS_CODES[status]}: problem types ${codes.map((code) => `\`${code}\``).join(', ')}`,
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      content: problemContent(status),
    }
  }
  return responses
}

/** The problem+json content of one status: the problem schema with that status's codes from src/errors.ts. */
export function problemContent(status: number): Record<string, { schema: unknown }> {
  const codes = codesOf(status)
  const first = codes[0]
  if (first === undefined) throw new Error(`no error code in src/errors.ts has status ${status}`)
  const schema = {
    ...ProblemSchema,
    properties: {
      ...ProblemSchema.properties,
      type: { type: 'string', enum: codes.map((code) => `/problems/${code}`) },
      status: { type: 'integer', enum: [status] },
    },
    example: {
      type: `/problems/${first}`,
      title: ERROR_CODES[first].title,
      status,
      detail: ERROR_CODES[first].title,
      ...(first === 'validation_failed' ? { errors: { email: ['Enter a valid email address.'] } } : {}),
      request_id: '0e8f3ac6-3a3f-4d3c-9d47-2c1d6f0b5a11',
    },
  }
  return { [PROBLEM_CONTENT_TYPE]: { schema } }
}

/** A success response schema with its description and the headers it carries (documented; the serializer ignores them). */
export function withHeaders<T extends object>(schema: T, headers: Record<string, unknown>, description?: string): T {
  return { ...schema, headers, ...(description ? { description } : {}) }
}
