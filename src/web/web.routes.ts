import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url))

// Same-origin only, no inline code, never framed.
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // No other window can keep a handle on the page (e.g. one that opened it).
  'cross-origin-opener-policy': 'same-origin',
}

export interface WebRoutesOptions {
  /** AVATAR_MAX_BYTES, so that the page refuses a larger file before uploading it. */
  avatarMaxBytes: number
}

/** The web page (SPEC §6): static files from src/web/public, and /settings.js with what the page must know of the config. */
export const webRoutes: FastifyPluginAsync<WebRoutesOptions> = async (app, options) => {
  const settings = `export const AVATAR_MAX_BYTES = ${JSON.stringify(options.avatarMaxBytes)}\n`
  app.get('/settings.js', { schema: { hide: true } }, (_request, reply) => {
    reply.headers(PAGE_HEADERS).header('cache-control', 'no-cache').type('text/javascript; charset=utf-8').send(settings)
  })
  await app.register(fastifyStatic, {
    root: PUBLIC_DIR,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    setHeaders: (response) => {
      for (const [name, value] of Object.entries(PAGE_HEADERS)) response.header(name, value)
    },
  })
  // The pages mail links open (issue 14): the same page, which reads the token from the URL's fragment.
  for (const path of ['/reset-password', '/verify-email']) {
    app.get(path, { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'))
  }
}
