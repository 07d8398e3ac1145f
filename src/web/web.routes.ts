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

/** The web page (SPEC §6): static files from src/web/public. */
export const webRoutes: FastifyPluginAsync = async (app) => {
  await app.register(fastifyStatic, {
    root: PUBLIC_DIR,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    setHeaders: (response) => {
      for (const [name, value] of Object.entries(PAGE_HEADERS)) response.header(name, value)
    },
  })
}
