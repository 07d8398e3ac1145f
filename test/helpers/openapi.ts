import { Ajv, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'

/**
 * Holds exchanges with a running Portrait to its own /api/openapi.json: every answer must have a status the
 * operation documents, a documented content type, a body that validates against the documented schema,
 * and every header documented for that status. Requests are named by operationId, so the path, method and
 * parameters come from the document too.
 */

export interface OpenApiOperation {
  operationId?: string
  security?: Record<string, string[]>[]
  parameters?: { in: string; name: string; required?: boolean; schema?: unknown }[]
  requestBody?: { required?: boolean; content: Record<string, { schema?: unknown }> }
  responses: Record<string, { description?: string; headers?: Record<string, { schema?: unknown }>; content?: Record<string, { schema?: unknown }> }>
}
export interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, OpenApiOperation>>
  [key: string]: unknown
}

export interface Located {
  id: string
  method: string
  path: string
  operation: OpenApiOperation
}

export interface Exchange {
  status: number
  headers: Headers
  body: Buffer
}

export interface CallOptions {
  params?: Record<string, string | number>
  query?: Record<string, string>
  token?: string
  headers?: Record<string, string>
  /** A JSON value (sent as application/json), or raw bytes with a content-type header of your own. */
  json?: unknown
  raw?: { body: string | FormData | URLSearchParams; contentType?: string }
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']

/** Every operation in the document, by operationId. */
export function operationsOf(document: OpenApiDocument): Map<string, Located> {
  const found = new Map<string, Located>()
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue
      const id = operation.operationId ?? `${method.toUpperCase()} ${path}`
      found.set(id, { id, method: method.toUpperCase(), path, operation })
    }
  }
  return found
}

/** The problems with one exchange, empty when it conforms. Exported for the negative self-test. */
export function conformanceProblems(located: Located, exchange: Exchange, compile: (schema: unknown) => ValidateFunction): string[] {
  const problems: string[] = []
  const { operation } = located
  const response = operation.responses[String(exchange.status)] ?? operation.responses[`${String(exchange.status)[0]}XX`] ?? operation.responses.default
  if (!response) return [`status ${exchange.status} is not documented for ${located.id} (documented: ${Object.keys(operation.responses).join(', ')})`]
  for (const name of Object.keys(response.headers ?? {})) {
    if (!exchange.headers.has(name)) problems.push(`header ${name} documented for ${exchange.status} is missing`)
  }
  const contentType = exchange.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase()
  const content = response.content
  if (!content || Object.keys(content).length === 0) {
    if (exchange.body.length > 0) problems.push(`${exchange.status} is documented without a body but has ${exchange.body.length} bytes (${contentType})`)
    return problems
  }
  const media = contentType === undefined ? undefined : content[contentType]
  if (!media) {
    problems.push(`content type ${contentType} is not documented for ${exchange.status} (documented: ${Object.keys(content).join(', ')})`)
    return problems
  }
  if (contentType === 'application/json' || contentType?.endsWith('+json')) {
    let body: unknown
    try {
      body = JSON.parse(exchange.body.toString('utf8'))
    } catch {
      return [...problems, `${exchange.status} body is not JSON`]
    }
    const validate = compile(media.schema ?? {})
    if (!validate(body)) {
      problems.push(`${exchange.status} body breaks its schema: ${JSON.stringify(validate.errors)} body=${exchange.body.toString('utf8').slice(0, 300)}`)
    }
  } else if (exchange.body.length === 0) {
    problems.push(`${exchange.status} ${contentType} body is empty`)
  }
  return problems
}

/** An Ajv that reads OpenAPI 3.0 schemas as the service's own does (formats, `nullable`, `u` patterns). */
export function schemaCompiler(): (schema: unknown) => ValidateFunction {
  const ajv = new Ajv({ strict: false, allErrors: true })
  addFormats.default(ajv)
  ajv.addFormat('binary', true)
  const cache = new Map<unknown, ValidateFunction>()
  return (schema) => {
    let validate = cache.get(schema)
    if (!validate) cache.set(schema, (validate = ajv.compile(schema as object)))
    return validate
  }
}

export class Contract {
  readonly operations: Map<string, Located>
  /** operationId → statuses seen (and held to the document). */
  readonly covered = new Map<string, Set<number>>()
  readonly failures: string[] = []
  private readonly compile = schemaCompiler()

  constructor(
    readonly baseUrl: string,
    readonly document: OpenApiDocument,
  ) {
    this.operations = operationsOf(document)
  }

  static async load(baseUrl: string): Promise<Contract> {
    const reply = await fetch(`${baseUrl}/api/openapi.json`)
    if (reply.status !== 200) throw new Error(`GET /api/openapi.json answered ${reply.status}`)
    return new Contract(baseUrl, (await reply.json()) as OpenApiDocument)
  }

  operation(id: string): Located {
    const located = this.operations.get(id)
    if (!located) throw new Error(`no operation ${id} in the document`)
    return located
  }

  /** Sends the request named by operationId, checks the answer against the document, and returns it. */
  async call(id: string, options: CallOptions = {}): Promise<Exchange & { json: () => any }> {
    const located = this.operation(id)
    const path = located.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = options.params?.[name]
      if (value === undefined) throw new Error(`${id}: no value for {${name}}`)
      return encodeURIComponent(String(value))
    })
    const query = options.query ? `?${new URLSearchParams(options.query)}` : ''
    const headers: Record<string, string> = { ...options.headers }
    if (options.token) headers.authorization = `Bearer ${options.token}`
    let body: string | FormData | URLSearchParams | undefined
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.json)
    } else if (options.raw) {
      if (options.raw.contentType) headers['content-type'] = options.raw.contentType
      body = options.raw.body
    }
    const reply = await fetch(`${this.baseUrl}${path}${query}`, { method: located.method, headers, body, signal: AbortSignal.timeout(30_000) })
    const exchange: Exchange = { status: reply.status, headers: reply.headers, body: Buffer.from(await reply.arrayBuffer()) }
    this.record(located, exchange)
    return { ...exchange, json: () => JSON.parse(exchange.body.toString('utf8')) }
  }

  /** Checks an exchange made by other means (a raw socket, say). */
  record(located: Located, exchange: Exchange): void {
    let statuses = this.covered.get(located.id)
    if (!statuses) this.covered.set(located.id, (statuses = new Set()))
    statuses.add(exchange.status)
    for (const problem of conformanceProblems(located, exchange, this.compile)) this.failures.push(`${located.method} ${located.path} (${located.id}): ${problem}`)
  }

  /** Documented statuses never seen, per operation. */
  uncovered(): Map<string, string[]> {
    const missing = new Map<string, string[]>()
    for (const [id, { operation }] of this.operations) {
      const seen = this.covered.get(id) ?? new Set()
      const left = Object.keys(operation.responses).filter((status) => !seen.has(Number(status)))
      if (left.length > 0) missing.set(id, left)
    }
    return missing
  }
}
