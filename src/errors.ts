/** Stable error codes; each becomes a problem+json `type` of `/problems/<code>`. */
export const ERROR_CODES = {
  validation_failed: { status: 400, title: 'Invalid request' },
  invalid_json: { status: 400, title: 'Malformed JSON body' },
  invalid_multipart: { status: 400, title: 'Malformed multipart body' },
  invalid_credentials: { status: 401, title: 'Invalid credentials' },
  not_authenticated: { status: 401, title: 'Authentication required' },
  invalid_token: { status: 401, title: 'Invalid or expired token' },
  invalid_refresh_token: { status: 401, title: 'Invalid refresh token' },
  invalid_mfa_challenge: { status: 401, title: 'Invalid or expired sign-in challenge' },
  invalid_second_factor: { status: 401, title: 'Invalid second-factor code' },
  forbidden: { status: 403, title: 'Forbidden' },
  step_up_required: { status: 403, title: 'A recent second factor is required' },
  reauthentication_required: { status: 403, title: 'Your password is required again' },
  not_found: { status: 404, title: 'Not found' },
  route_not_found: { status: 404, title: 'Not found' },
  passkeys_unavailable: { status: 404, title: 'Passkeys unavailable' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  mfa_already_enabled: { status: 409, title: 'Second factor already active' },
  mfa_not_enrolled: { status: 409, title: 'No second factor' },
  precondition_failed: { status: 412, title: 'Precondition failed' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  uri_too_long: { status: 414, title: 'URI too long' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  expectation_failed: { status: 417, title: 'Expectation failed' },
  too_many_requests: { status: 429, title: 'Too many requests' },
  request_timeout: { status: 408, title: 'Request timeout' },
  headers_too_large: { status: 431, title: 'Request header fields too large' },
  bad_request: { status: 400, title: 'Bad request' },
  internal_error: { status: 500, title: 'Internal server error' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** Field name → messages, as in problem+json `errors`. */
export type FieldErrors = Record<string, string[]>

export interface AppErrorOptions {
  detail?: string
  errors?: FieldErrors
  headers?: Record<string, string>
  /** Kept for the log only; never sent to the client. */
  cause?: unknown
  /** The dependency that did not answer, for a 503 that is an outage rather than a fault of ours. */
  dependency?: string
}

/** A failure the client can be told about. Domain code throws these; the error handler maps them to HTTP. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly detail: string | undefined
  readonly errors: FieldErrors | undefined
  readonly headers: Record<string, string> | undefined
  readonly dependency: string | undefined

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    super(options.detail ?? ERROR_CODES[code].title, { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.detail = options.detail
    this.errors = options.errors
    this.headers = options.headers
    this.dependency = options.dependency
  }

  get status(): number {
    return ERROR_CODES[this.code].status
  }
}

/** A 400 naming the failing fields. */
export function validationError(errors: FieldErrors, detail = 'One or more fields are invalid.'): AppError {
  return new AppError('validation_failed', { detail, errors })
}

/** Collects field errors so every failing field can be reported at once. */
export class FieldErrorList {
  // No prototype: a client-chosen field name such as `constructor` or `__proto__` is just a key here.
  readonly errors: FieldErrors = Object.create(null)

  add(field: string, message: string): void {
    const messages = this.errors[field]
    if (messages) messages.push(message)
    else this.errors[field] = [message]
  }

  get isEmpty(): boolean {
    return Object.keys(this.errors).length === 0
  }

  throwIfAny(): void {
    if (!this.isEmpty) throw validationError(this.errors)
  }
}

/** A 503 for a dependency that did not answer (database, Redis); the client may retry shortly. */
export function dependencyUnavailable(dependency: 'database' | 'redis', cause: unknown): AppError {
  return new AppError('service_unavailable', {
    detail: `${dependency === 'redis' ? 'Redis' : 'The database'} is not answering. Try again in a few seconds.`,
    headers: { 'retry-after': '5' },
    cause,
    dependency,
  })
}
