import cookie from '@fastify/cookie'
import cors from '@fastify/cors'
import formbody from '@fastify/formbody'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, LogController } from 'fastify'
import sharp from 'sharp'
import { authRoutes } from './auth/auth.routes.js'
import { AuthService } from './auth/auth.service.js'
import { createAuthenticate } from './auth/authenticate.js'
import { createFailureStore } from './auth/failure-store.js'
import { resolveJwtSecret } from './auth/jwt-secret.js'
import { SessionsRepository } from './auth/sessions.repository.js'
import { SignInLimiter } from './auth/sign-in-limiter.js'
import { AccessTokens } from './auth/tokens.js'
import { sweepUnreferencedAvatars } from './avatars/media-sweep.js'
import { mediaRoutes } from './avatars/media.routes.js'
import { createAvatarStorage } from './avatars/storage-factory.js'
import { ConcurrencyLimit } from './concurrency.js'
import type { Config } from './config.js'
import { createDb } from './db/database.js'
import { migrateToLatest } from './db/migrate.js'
import { databaseCheck, healthRoutes } from './health/health.routes.js'
import { batchedStdout } from './http/log-stream.js'
import { clientErrorHandler, errorHandler, notFoundHandler } from './http/problem.js'
import { UsersRepository } from './users/users.repository.js'
import { usersRoutes } from './users/users.routes.js'
import { UsersService } from './users/users.service.js'
import { webRoutes } from './web/web.routes.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/
const JSON_BODY_LIMIT = 64 * 1024

/** Builds the whole service from a config; the server and the tests both start here. */
export async function buildApp(config: Readonly<Config>): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      // Tokens and passwords never reach the log, whatever a future log line includes.
      redact: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]', '*.password', '*.refresh', '*.access'],
      // One write(2) per event-loop turn instead of one per line (see batchedStdout).
      ...(config.logLevel === 'silent' ? {} : { stream: batchedStdout() }),
    },
    // One line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy,
    bodyLimit: JSON_BODY_LIMIT,
    requestTimeout: config.requestTimeoutMs,
    // Node checks request deadlines on an interval (30 s by default) and keeps its own 60 s header
    // deadline unless told at creation: without these a slow client could outstay REQUEST_TIMEOUT many times.
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: Math.min(60_000, config.requestTimeoutMs),
      connectionsCheckingInterval: Math.max(100, Math.min(1000, config.requestTimeoutMs / 4)),
    },
    clientErrorHandler,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    genReqId: (request) => {
      const given = request.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID()
    },
    ajv: { customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>()

  const db = createDb(config)
  app.addHook('onClose', () => db.destroy())
  await migrateToLatest(db.kysely)

  const sessions = new SessionsRepository(db)
  const usersRepository = new UsersRepository(db.dialect)
  const tokens = await AccessTokens.create(resolveJwtSecret(config.jwtSecret, config.dataDir), config.accessTokenTtlSeconds)
  const storage = await createAvatarStorage(config, db)
  const failures = await createFailureStore(config)
  app.addHook('onClose', async () => failures.close?.())
  // One libvips thread per image; parallelism comes from running up to one image per CPU.
  sharp.concurrency(1)
  app.log.info({ threadPoolSize: config.threadPoolSize, imageConcurrency: config.imageConcurrency }, 'libuv thread pool sized')
  sharp.cache(false)
  const users = new UsersService({
    db,
    users: usersRepository,
    sessions,
    storage,
    imageLimit: new ConcurrencyLimit(config.imageConcurrency),
    config,
  })
  const auth = new AuthService({
    db,
    users: usersRepository,
    sessions,
    tokens,
    limiter: new SignInLimiter(failures, config.signInLimits),
    config,
  })
  await auth.warmUp()
  if (config.sweepMediaOnStart) {
    const removed = await sweepUnreferencedAvatars(db.kysely, usersRepository, storage)
    if (removed > 0) app.log.info({ removed }, 'removed unreferenced avatar images')
  }

  // Callback hooks, not async ones: no promise and microtask per request for a header or a log line.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })
  // The access line holds only these allowlisted fields (the path without its query), so it skips the
  // redaction pass, which cost five times the rest of the line (2.5 µs against 0.5 µs; BENCHMARKS.md).
  // Every other log line keeps the redaction above.
  const accessLog = app.log.child({}, { redact: [] })
  app.addHook('onResponse', (request, reply, done) => {
    const query = request.url.indexOf('?')
    const url = query === -1 ? request.url : request.url.slice(0, query)
    accessLog.info({ reqId: request.id, method: request.method, url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request')
    done()
  })
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)

  // Only JSON and forms are read here (multipart only by the profile update routes); anything else is 415.
  // An empty JSON body means "no fields" (SPEC §4); anything else goes through Fastify's safe parser.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser(['application/json', 'text/plain'])
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined)
    else parseJson(request, body as string, done)
  })
  await app.register(formbody, { bodyLimit: JSON_BODY_LIMIT })
  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: config.corsOrigins, exposedHeaders: ['etag', 'x-request-id', 'retry-after'] })
  }
  await app.register(swagger, {
    openapi: {
      info: { title: 'Portrait', version: '0.1.0', description: 'User accounts and profiles' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  })
  await app.register(swaggerUi, { routePrefix: '/api/docs' })
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  const authenticate = createAuthenticate(tokens, sessions)
  // Only the auth routes read or set the refresh cookie, so the cookie plugin's two hooks run there, not on every request.
  await app.register(
    async (scope) => {
      await scope.register(cookie)
      await scope.register(authRoutes, { auth, users, authenticate, refreshTokenTtlSeconds: config.refreshTokenTtlSeconds })
    },
    { prefix: '/api/auth' },
  )
  await app.register(usersRoutes, { prefix: '/api/users', users, authenticate, avatarMaxBytes: config.avatarMaxBytes })
  await app.register(mediaRoutes, { prefix: '/media', storage })
  await app.register(healthRoutes, { prefix: '/api', checks: [databaseCheck(db), ...(failures.healthCheck ? [failures.healthCheck] : [])] })
  await app.register(webRoutes)
  return app
}
