import cookie from '@fastify/cookie'
import cors from '@fastify/cors'
import formbody from '@fastify/formbody'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, LogController } from 'fastify'
import pino from 'pino'
import sharp from 'sharp'
import { AccountMail } from './account-tokens/account-mail.service.js'
import { AccountTokensRepository } from './account-tokens/account-tokens.repository.js'
import { accountTokensAuthRoutes, accountTokensUserRoutes } from './account-tokens/account-tokens.routes.js'
import { MailRequestLimiter } from './account-tokens/mail-request-limiter.js'
import { ActivityRepository } from './activity/activity.repository.js'
import { activityRoutes } from './activity/activity.routes.js'
import { ActivityLog } from './activity/activity.service.js'
import { FactorNotices } from './activity/factor-notices.js'
import { NewDeviceNotices } from './activity/new-device-notice.js'
import { AccountSessions } from './activity/sessions.service.js'
import { authRoutes } from './auth/auth.routes.js'
import { AuthService } from './auth/auth.service.js'
import { createAuthenticate } from './auth/authenticate.js'
import { DeviceProofs } from './auth/device-proof.js'
import { createFailureStore } from './auth/failure-store.js'
import { introspectRoute, jwksRoute } from './auth/keys.routes.js'
import { openKeyset, serverSecret } from './auth/keyset-setup.js'
import { refreshCookieSettings } from './auth/refresh-cookie.js'
import { ServiceKeys } from './auth/service-keys.js'
import { startSessionPurge } from './auth/session-purge.js'
import { SessionsRepository } from './auth/sessions.repository.js'
import { SignInLimiter } from './auth/sign-in-limiter.js'
import { AccessTokens, RefreshSuccessors } from './auth/tokens.js'
import { mediaRoutes } from './avatars/media.routes.js'
import { startTemporaryFileSweep, sweepUnreferencedAvatars } from './avatars/media-sweep.js'
import { createAvatarStorage } from './avatars/storage-factory.js'
import { ConcurrencyLimit } from './concurrency.js'
import type { Config } from './config.js'
import { createDb } from './db/database.js'
import { migrateToLatest } from './db/migrate.js'
import { databaseCheck, healthRoutes } from './health/health.routes.js'
import { Outages } from './health/outages.js'
import { batchedStdout, prettyStdout } from './http/log-stream.js'
import { swaggerOptions, swaggerUiOptions } from './http/openapi.js'
import { clientErrorHandler, errorHandler, expectationFailedHandler, frameworkErrorHandler, notFoundHandler } from './http/problem.js'
import { refuseWhileClosing } from './http/shutdown.js'
import { startPeriodicPurge } from './jobs/batched-purge.js'
import { createMail } from './mail/mail-setup.js'
import { MfaRepository } from './mfa/mfa.repository.js'
import { mfaRoutes } from './mfa/mfa.routes.js'
import { MfaService } from './mfa/mfa.service.js'
import { StepUp } from './mfa/step-up.js'
import { TotpSecretBox } from './mfa/totp.js'
import { PasskeysRepository } from './passkeys/passkeys.repository.js'
import { passkeyAuthRoutes, passkeysRoutes } from './passkeys/passkeys.routes.js'
import { PasskeysService } from './passkeys/passkeys.service.js'
import { relyingPartyResolver } from './passkeys/relying-party.js'
import { checkTrigramIndexes } from './users/search-index.js'
import { createSearchReader } from './users/search-reader.js'
import { UsersRepository } from './users/users.repository.js'
import { usersRoutes } from './users/users.routes.js'
import { UsersService } from './users/users.service.js'
import { webRoutes } from './web/web.routes.js'

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/
const JSON_BODY_LIMIT = 64 * 1024
// The strictest policy Swagger UI renders under (checked in headless Chromium, test/browser/docs-page.test.ts):
// its scripts, styles and the spec all come from here, and it is never framed. The one inline style is the
// <style> inside the top bar's SVG logo, allowed by its hash alone (a new swagger-ui may need a new hash).
const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; " +
  "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/**
 * Fastify's own number form trusts nothing (5.x fails closed), so a hop count becomes "the first `hops`
 * addresses from the socket inwards are proxies": request.ip is then the rightmost X-Forwarded-For entry
 * no trusted proxy wrote. An address list goes to proxy-addr as it is.
 */
function fastifyTrustProxy(trust: Config['trustProxy']): false | string[] | ((address: string, hop: number) => boolean) {
  if (typeof trust !== 'number') return trust
  return (_address, hop) => hop < trust
}

/**
 * The media probe writes and removes a 64 KiB file, and /api/health is public: callers that arrive while a
 * probe is under way share its answer, so a flood of parallel health checks writes one file at a time
 * instead of one each (200 at once from one client: 600 files, 38 MB, a second). A check that arrives once
 * a probe has ended probes afresh: nothing is cached.
 */
function sharedProbe(probe: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  return () => {
    running ??= probe().finally(() => {
      running = undefined
    })
    return running
  }
}

/**
 * `iss` of access tokens: JWT_ISSUER, else PUBLIC_URL, else the origin HOST:PORT configure. The configured
 * port, not the bound one: instances of one deployment must agree on the issuer, or each would refuse the
 * others' tokens.
 */
function tokenIssuer(config: Readonly<Config>): () => string {
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  const issuer = config.jwtIssuer ?? config.publicUrl ?? `http://${host}:${config.port}`
  return () => issuer
}

/**
 * The origin mail links point at: PUBLIC_URL, else http://HOST:PORT, with the bound port when PORT=0 (asked
 * at each use: the socket is bound after the app is built).
 */
function linkBase(config: Readonly<Config>, app: FastifyInstance): () => string {
  if (config.publicUrl) {
    const base = config.publicUrl
    return () => base
  }
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  return () => {
    const bound = app.server.address()
    return `http://${host}:${typeof bound === 'object' && bound ? bound.port : config.port}`
  }
}

/** Builds the whole service from a config; the server and the tests both start here. */
export async function buildApp(config: Readonly<Config>): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      // Tokens and passwords never reach the log, whatever a future log line includes.
      redact: [
        'req.headers.authorization',
        'req.headers.cookie',
        'res.headers["set-cookie"]',
        '*.password',
        '*.current_password',
        '*.refresh',
        '*.access',
        '*.otp_code',
        '*.recovery_code',
        '*.challenge',
      ],
      // ISO 8601 times (UTC), in JSON and pretty lines alike.
      timestamp: pino.stdTimeFunctions.isoTime,
      // One write(2) per event-loop turn instead of one per line (see batchedStdout); pretty lines for people.
      ...(config.logLevel === 'silent' ? {} : { stream: config.logFormat === 'pretty' ? prettyStdout() : batchedStdout() }),
    },
    // One line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: fastifyTrustProxy(config.trustProxy),
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
    frameworkErrors: frameworkErrorHandler,
    // Requests arriving while the server closes get our problem+json 503 (refuseWhileClosing), not Fastify's own body.
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    genReqId: (request) => {
      const given = request.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID()
    },
    // `example` is OpenAPI's, for the document only.
    ajv: { customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: true, keywords: ['example'] } },
  }).withTypeProvider<TypeBoxTypeProvider>()

  // The first preClose hook: later ones wait (for the mail sender's run, detached activity writes), and a
  // request arriving meanwhile must already get the closing 503 rather than queue on a database that may hang.
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  const db = createDb(config)
  app.addHook('onClose', () => db.destroy())
  await migrateToLatest(db.kysely)

  const sessions = new SessionsRepository(db)
  // preClose: stopped, and a run in progress finished, before the database closes.
  const stopSessionPurge = startSessionPurge(sessions, config.sessionPurgeIntervalMs, app.log)
  app.addHook('preClose', stopSessionPurge)
  const usersRepository = new UsersRepository(db.dialect)
  // Signing keys: JWT_SECRET (HS256), or EdDSA/ES256 keys in the database shared by every instance.
  const keyset = await openKeyset(db, config)
  const stopKeysetRefresh = keyset.startRefresh(config.keysetRefreshMs, (error) => app.log.warn({ err: error }, 'could not re-read the signing keys'))
  app.addHook('preClose', stopKeysetRefresh)
  const jwtSecret = serverSecret(config, keyset)
  const issuer = tokenIssuer(config)
  const tokens = new AccessTokens(keyset, { ttlSeconds: config.accessTokenTtlSeconds, issuer, audience: config.jwtAudience })
  const storage = await createAvatarStorage(config, db)
  const failures = await createFailureStore(config)
  app.addHook('onClose', async () => failures.close?.())
  const limiter = new SignInLimiter(failures, config.signInLimits, config.signUpLimits)
  const activity = new ActivityLog({ db, repository: new ActivityRepository(db), retentionSeconds: config.activityRetentionSeconds, log: app.log })
  limiter.whenAccountLocked((lock) => activity.accountLocked(lock))
  const stopActivityPurge = startPeriodicPurge('security activity past its retention', () => activity.purge(), config.activityPurgeIntervalMs, app.log)
  app.addHook('preClose', stopActivityPurge)
  // Entries recorded just after a response (failed sign-ins, lockouts) are written before the database closes.
  app.addHook('preClose', () => activity.drain())
  // Mail: recorded in the outbox by the stories below, delivered by the sender after their commits.
  const mail = createMail(config, db, app.log)
  const accountMail = new AccountMail({
    db,
    users: usersRepository,
    sessions,
    tokens: new AccountTokensRepository(),
    outbox: mail.outbox,
    wake: () => mail.sender.wake(),
    limiter,
    mailLimiter: new MailRequestLimiter(failures, config.mailRequestLimits),
    linkBase: linkBase(config, app),
    log: app.log,
    activity,
    config,
  })
  const stopMailSender = mail.sender.start(config.mail.pollIntervalMs)
  // preClose: reset requests still being recorded finish, then the sender's run, before the database closes.
  app.addHook('preClose', async () => {
    await accountMail.settled()
    await stopMailSender()
  })
  // Rows of no further use, deleted on the activity purge's interval (ACTIVITY_PURGE_INTERVAL): tokens a day after
  // they were used or expired, sent mail after 7 days, given-up mail after 30; each stopped before the database closes.
  const stopTokenPurge = startPeriodicPurge('used or expired account tokens', () => accountMail.purgeTokens(), config.activityPurgeIntervalMs, app.log)
  app.addHook('preClose', stopTokenPurge)
  const stopOutboxPurge = startPeriodicPurge('sent and given-up mail', () => mail.sender.purge(), config.activityPurgeIntervalMs, app.log)
  app.addHook('preClose', stopOutboxPurge)
  // One libvips thread per image; parallelism comes from running up to one image per CPU.
  sharp.concurrency(1)
  app.log.info({ threadPoolSize: config.threadPoolSize, imageConcurrency: config.imageConcurrency }, 'libuv thread pool sized')
  sharp.cache(false)
  const searchReader = createSearchReader(db, config.databaseUrl)
  app.addHook('onClose', () => searchReader.close())
  if (!(await checkTrigramIndexes(db.kysely))) {
    app.log.warn('pg_trgm is not available (this role may not CREATE EXTENSION pg_trgm): staff searches scan the users table; an operator can install it and restart')
  }
  const factorNotices = new FactorNotices({ activity, outbox: mail.outbox, wake: () => mail.sender.wake() })
  const passkeys = new PasskeysService({ db, passkeys: new PasskeysRepository(db.dialect), users: usersRepository, limiter, notices: factorNotices })
  const relyingParty = relyingPartyResolver(config)
  const mfaRepository = new MfaRepository(db.dialect)
  const mfa = new MfaService({
    db,
    passkeys,
    mfa: mfaRepository,
    sessions,
    limiter,
    box: new TotpSecretBox(jwtSecret),
    notices: factorNotices,
    onUnreadableSecret: (userId) =>
      app.log.warn({ userId }, 'a TOTP secret does not decrypt (was JWT_SECRET changed?): its codes are refused; recovery codes still work'),
  })
  // Challenges once expired (a used one is deleted when used), on the same interval.
  const stopPasskeyChallengePurge = startPeriodicPurge('expired passkey challenges', () => passkeys.purgeExpiredChallenges(), config.activityPurgeIntervalMs, app.log)
  app.addHook('preClose', stopPasskeyChallengePurge)
  const stopMfaChallengePurge = startPeriodicPurge('expired second-factor challenges', () => mfa.purgeExpiredChallenges(), config.activityPurgeIntervalMs, app.log)
  app.addHook('preClose', stopMfaChallengePurge)
  const stepUp = new StepUp(db, sessions, mfa, limiter)
  const users = new UsersService({
    db,
    stepUp,
    users: usersRepository,
    searchReader,
    sessions,
    storage,
    imageLimit: new ConcurrencyLimit(config.imageConcurrency),
    limiter,
    activity,
    notices: accountMail,
    config,
  })
  const auth = new AuthService({
    db,
    users: usersRepository,
    sessions,
    tokens,
    limiter,
    devices: new DeviceProofs(jwtSecret),
    secondFactors: mfa,
    activity,
    successors: new RefreshSuccessors(jwtSecret),
    notices: accountMail,
    newDevices: new NewDeviceNotices({ outbox: mail.outbox, wake: () => mail.sender.wake() }),
    config,
  })
  await auth.warmUp()
  if (config.sweepMediaOnStart) {
    // A full or read-only media disk must not keep the service from starting: only uploads need it.
    const removed = await sweepUnreferencedAvatars(db.kysely, usersRepository, storage).catch((error: unknown) => {
      app.log.warn({ err: error }, 'could not sweep avatar images at start')
      return 0
    })
    if (removed > 0) app.log.info({ removed }, 'removed unreferenced avatar images')
  }
  const stopTemporaryFileSweep = startTemporaryFileSweep(storage, {
    intervalMs: config.mediaTempSweepIntervalMs,
    maxAgeMs: config.mediaTempMaxAgeMs,
    log: app.log,
  })
  app.addHook('onClose', async () => stopTemporaryFileSweep())

  // Callback hooks, not async ones: no promise and microtask per request for a header or a log line.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    if (closing) return refuseWhileClosing(request, reply)
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
  // A dependency that stops answering is logged once when the outage starts and once when it ends (see Outages).
  // The fs driver's own disk; with MEDIA_STORAGE=db the database check covers the images.
  const mediaCheck = storage.probe ? [{ name: 'media', check: sharedProbe(() => storage.probe!()) }] : []
  const healthChecks = [databaseCheck(db), ...mediaCheck, ...(failures.healthCheck ? [failures.healthCheck] : [])]
  app.decorate('outages', new Outages(app.log, healthChecks))
  app.addHook('onClose', async () => app.outages.close())
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  app.server.on('checkExpectation', expectationFailedHandler)

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
  await app.register(swagger, swaggerOptions(config.publicUrl))
  await app.register(swaggerUi, swaggerUiOptions(DOCS_CSP))
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  const authenticate = createAuthenticate(tokens, sessions)
  // Only the auth routes read or set the refresh cookie, so the cookie plugin's two hooks run there, not on every request.
  await app.register(
    async (scope) => {
      await scope.register(cookie)
      await scope.register(authRoutes, {
        auth,
        users,
        authenticate,
        refreshTokenTtlSeconds: config.refreshTokenTtlSeconds,
        refreshCookie: refreshCookieSettings(config.publicUrl),
        passkeySecondFactor: (request, response) => passkeys.secondFactorCheck(relyingParty(request.headers.host), response as never, request.log),
      })
      await scope.register(passkeyAuthRoutes, {
        mfa,
        passkeys,
        relyingParty,
        auth,
        users,
        refreshTokenTtlSeconds: config.refreshTokenTtlSeconds,
        refreshCookie: refreshCookieSettings(config.publicUrl),
      })
    },
    { prefix: '/api/auth' },
  )
  await app.register(accountTokensAuthRoutes, { prefix: '/api/auth', accountMail, users, authenticate })
  const keyRoutes = { tokens, sessions, serviceKeys: new ServiceKeys(db), issuer, audience: config.jwtAudience }
  await app.register(introspectRoute, { prefix: '/api/auth', ...keyRoutes })
  await app.register(jwksRoute, { tokens })
  await app.register(usersRoutes, { prefix: '/api/users', users, authenticate, avatarMaxBytes: config.avatarMaxBytes })
  await app.register(activityRoutes, { prefix: '/api/users', activity, sessions: new AccountSessions({ db, sessions, activity }), users, authenticate })
  await app.register(accountTokensUserRoutes, { prefix: '/api/users', accountMail, users, authenticate })
  await app.register(mfaRoutes, { prefix: '/api/users/me/mfa', mfa, stepUp, authenticate })
  await app.register(passkeysRoutes, { prefix: '/api/users/me/passkeys', passkeys, mfa, authenticate, stepUp, relyingParty })
  await app.register(mediaRoutes, { prefix: '/media', storage })
  await app.register(healthRoutes, { prefix: '/api', checks: healthChecks })
  await app.register(webRoutes, { avatarMaxBytes: config.avatarMaxBytes })
  return app
}
