import { readFileSync } from 'node:fs'
import type { SwaggerOptions } from '@fastify/swagger'
import type { FastifySwaggerUiOptions } from '@fastify/swagger-ui'
import { HEADERS } from './problem.schema.js'

// package.json sits two levels up both in src/http and in the bundled dist/ (scripts/build.mjs).
const VERSION = readPackageVersion()

function readPackageVersion(): string {
  for (const path of ['../../package.json', '../package.json']) {
    try {
      const parsed = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (parsed.name === 'portrait' && parsed.version) return parsed.version
    } catch {}
  }
  return '0.0.0'
}

const DESCRIPTION = `Portrait is a user-accounts and profile service: sign up, sign in, read and edit a profile (with an
avatar image), change the password, delete the account; staff can list and search users.

**Getting a token.** Call \`POST /api/auth/sign-up\` or \`POST /api/auth/sign-in\` ("Try it out"); the answer holds
\`access\` (a short-lived bearer token) and \`refresh\`. Press **Authorize**, paste the \`access\` value into *bearerAuth*
and every call below is made as that user. When it expires, \`POST /api/auth/refresh\` with the refresh token gives a
new pair (the old refresh token stops working).

**Errors** are \`application/problem+json\` (RFC 9457): \`{type, title, status, detail, errors?, request_id}\`, where
\`type\` is \`/problems/<code>\` (the codes are listed with each status) and \`errors\` maps each failing field to its
messages. Every response carries \`X-Request-Id\`; quote it when reporting a problem.

**Versions.** A write to a profile or a deletion may send \`If-Match\` with the \`ETag\` of the profile it read; a
profile that changed since then answers 412 and nothing is changed.`

/** The OpenAPI document's fixed parts and the pass that makes every operation follow the house rules. */
export function swaggerOptions(publicUrl: string | undefined): SwaggerOptions {
  return {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Portrait',
        version: VERSION,
        description: DESCRIPTION,
        license: { name: 'Proprietary: all rights reserved (package.json is private, published nowhere)' },
      },
      servers: [{ url: publicUrl ?? '/', description: publicUrl ? 'this deployment' : 'the server that serves this document' }],
      tags: [
        { name: 'auth', description: 'Accounts and sessions' },
        { name: 'users', description: 'Profiles' },
        { name: 'mfa', description: 'Second factor: authenticator app (TOTP) and recovery codes' },
        { name: 'media', description: 'Avatar images' },
        { name: 'health', description: 'Liveness' },
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The `access` token of a sign-up, sign-in or refresh' },
        },
      },
    },
    transformObject: (document) =>
      ('openapiObject' in document ? finishDocument(document.openapiObject as OpenApiDocument) : document.swaggerObject) as never,
  }
}

interface Operation {
  operationId?: string
  security?: unknown[]
  requestBody?: { required?: boolean; content?: Record<string, { schema?: { required?: unknown[] } }> }
  responses?: Record<string, { headers?: Record<string, unknown> }>
}
interface OpenApiDocument {
  paths?: Record<string, Record<string, Operation>>
}

/**
 * Applied to the generated document once (it is cached):
 * - an operation without `security` is public: `security: []` says so;
 * - a body whose every field is optional need not be sent: `requestBody.required: false`;
 * - every response carries X-Request-Id.
 */
function finishDocument(document: OpenApiDocument): OpenApiDocument {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      operation.security ??= []
      const body = operation.requestBody
      if (body?.content) {
        body.required = Object.values(body.content).some((media) => (media.schema?.required?.length ?? 0) > 0)
      }
      for (const response of Object.values(operation.responses ?? {})) {
        response.headers = { 'X-Request-Id': { schema: { type: 'string' }, description: HEADERS['x-request-id'].description }, ...response.headers }
      }
    }
  }
  return document
}

// Portrait's own mark in the top bar instead of Swagger's (a data: image, allowed by the docs CSP's img-src).
const LOGO = readFileSync(new URL('../web/public/favicon.svg', import.meta.url))

/** /api/docs: Swagger UI showing Portrait, reading /api/openapi.json, under the strict CSP given. */
export function swaggerUiOptions(csp: string): FastifySwaggerUiOptions {
  return {
    routePrefix: '/api/docs',
    staticCSP: csp,
    logo: { type: 'image/svg+xml', content: LOGO, href: '/api/docs', target: '_self' },
    theme: { title: 'Portrait API' },
    uiConfig: {
      // Swagger UI loads `urls` over `url`: the box at the top shows the document's real address.
      urls: [{ url: '/api/openapi.json', name: 'Portrait API (/api/openapi.json)' }],
      persistAuthorization: false,
      displayOperationId: true,
      tryItOutEnabled: false,
    },
  }
}
