import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'

/** Argon2id cost. Production uses the OWASP minimum; tests pass something cheap. */
export interface PasswordHashCost {
  memoryCost: number // KiB
  timeCost: number
  parallelism: number
}

export interface SignInLimits {
  maxFailuresPerAccount: number
  maxFailuresPerAddress: number
  windowSeconds: number
}

/** Mails a client may ask for (password reset, a new verification link) per email address and per client address per window. */
export interface MailRequestLimits {
  maxPerEmail: number
  maxPerAddress: number
  windowSeconds: number
}

/** Outgoing mail: where it goes and how the sender retries. */
export interface MailSettings {
  /** SMTP_URL (smtp:// or smtps://); undefined: each message is written as an .eml file to DATA_DIR/outbox/. */
  smtpUrl?: string
  /** MAIL_FROM: the From header, `Name <address>` or a bare address. */
  from: string
  /** Attempts per message before the sender gives up (the row is kept, a warning logged). */
  maxAttempts: number
  /** The first retry waits this long; each next one twice as long, at most an hour. */
  retryBaseMs: number
  /** How often each instance looks for messages other instances (or a CLI command) recorded. */
  pollIntervalMs: number
}

/** Sign-ups (each an argon2 hash) allowed per client address per window. */
export interface SignUpLimits {
  maxPerAddress: number
  windowSeconds: number
}

export interface Config {
  port: number
  host: string
  /** Where generated state (the JWT secret) lives when nothing else is configured. */
  dataDir: string
  databaseUrl: string
  /** PostgreSQL only: run in this schema (tests give each file its own). */
  databaseSchema?: string
  databasePoolSize: number
  /** GET /api/users counts matches up to this many; above it `count` is this number and `count_exact` false. */
  usersExactCountLimit: number
  /** PostgreSQL: how long a request may wait for a pooled connection before it fails with 503. */
  databaseAcquireTimeoutMs: number
  /** PostgreSQL: how long one statement may run (or wait for an answer) before its request fails with 503. */
  databaseStatementTimeoutMs: number
  mediaStorage: 'fs' | 'db'
  mediaRoot: string
  publicUrl?: string
  /** HS256 key when set (and the HMAC derivations' secret); undefined: EdDSA keys and a secret in the database. */
  jwtSecret?: string
  /** JWT_ALGORITHM; undefined: HS256 when jwtSecret is set, else EdDSA. */
  jwtAlgorithm?: 'EdDSA' | 'ES256' | 'HS256'
  /** `iss` of access tokens; undefined: publicUrl, else http://HOST:PORT as configured (the same on every instance). */
  jwtIssuer?: string
  /** `aud` of access tokens (JWT_AUDIENCE, comma-separated); empty: none. */
  jwtAudience: string[]
  /** How often each instance re-reads the signing keys (besides on an unknown kid and before issuing). */
  keysetRefreshMs: number
  accessTokenTtlSeconds: number
  refreshTokenTtlSeconds: number
  /** A rotated refresh token presented again within this many seconds gets the same successor (0: never). */
  refreshReuseGraceSeconds: number
  /** SESSION_MAX_AGE: how long a session may live from its sign-in, however often it is refreshed. */
  sessionMaxAgeSeconds: number
  avatarMaxBytes: number
  avatarSize: number
  /** How many images are decoded and encoded at once: at most one per CPU, and two libuv threads fewer than the pool has. */
  imageConcurrency: number
  /** libuv's thread pool (UV_THREADPOOL_SIZE as the process started), shared by images, password hashing and file I/O. */
  threadPoolSize: number
  redisUrl?: string
  /** Prepended to every Redis key, so instances of one deployment share counts and others do not. */
  redisKeyPrefix: string
  corsOrigins: string[]
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** json: one JSON object per line (for machines); pretty: human-readable lines. Default: pretty on a terminal. */
  logFormat: 'json' | 'pretty'
  /**
   * Who may set X-Forwarded-For: false (nobody: the socket address is the client), a hop count (that many
   * proxies in front, whatever their address), or the proxies' addresses/CIDRs. The client address is the
   * rightmost one not belonging to a trusted proxy; `true` (trust everyone) is refused.
   */
  trustProxy: false | number | string[]
  passwordHashCost: PasswordHashCost
  signInLimits: SignInLimits
  signUpLimits: SignUpLimits
  mail: MailSettings
  mailRequestLimits: MailRequestLimits
  /** PASSWORD_RESET_TTL: how long a reset link works. */
  passwordResetTtlSeconds: number
  /** EMAIL_VERIFICATION_TTL: how long a verification link works. */
  emailVerificationTtlSeconds: number
  /** A request body must arrive within this time (slow-client protection). */
  requestTimeoutMs: number
  /** On SIGTERM, in-flight requests get this long to finish; then the process exits anyway. */
  shutdownTimeoutMs: number
  /** Remove unreferenced avatar files when the app starts. */
  sweepMediaOnStart: boolean
  /** How often expired sessions are deleted. */
  sessionPurgeIntervalMs: number
  /** Security activity older than this is deleted (ACTIVITY_RETENTION, default 90 days). */
  activityRetentionSeconds: number
  /**
   * How often activity past the retention is deleted (ACTIVITY_PURGE_INTERVAL, default 1 hour); also how often
   * used or expired account tokens, sent and given-up mail and expired challenges are.
   */
  activityPurgeIntervalMs: number
  /** While serving, look for leftover temporary avatar files this often, and remove those older than mediaTempMaxAgeMs. */
  mediaTempSweepIntervalMs: number
  mediaTempMaxAgeMs: number
}

export const OWASP_ARGON2ID: PasswordHashCost = { memoryCost: 19456, timeCost: 2, parallelism: 1 }

export class ConfigError extends Error {}

/**
 * Images processed at once. Each holds one libuv thread for its whole pipeline, and argon2 and file I/O
 * run on the same threads, so two are always left to them (a sign-in never waits for an upload), and
 * there is no point in running more images than there are CPUs.
 */
export function imageConcurrencyFor(cpus: number, threadPoolSize: number): number {
  return Math.max(1, Math.min(cpus, threadPoolSize - 2))
}

// libuv reads UV_THREADPOOL_SIZE once, when its pool first starts, which is before any module of ours runs
// (the ES module loader reads files on it). Taken here, at import, so that a .env file loaded later
// (server.ts) cannot make the configuration believe in a pool that libuv never made.
const THREAD_POOL_SIZE_AT_START = process.env.UV_THREADPOOL_SIZE

type Env = Record<string, string | undefined>

const DURATION = /^(\d+)(s|m|h|d)?$/
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

function fail(name: string, accepted: string, value: string): never {
  throw new ConfigError(`${name}=${JSON.stringify(value)} is invalid: expected ${accepted}`)
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min || value > max) fail(name, `an integer from ${min} to ${max}`, raw)
  return value
}

/** Seconds in a duration such as 900, 30s, 15m, 12h or 7d; undefined when malformed. */
export function parseDurationSeconds(raw: string): number | undefined {
  const match = DURATION.exec(raw)
  return match ? Number(match[1]) * UNIT_SECONDS[(match[2] ?? 's') as keyof typeof UNIT_SECONDS] : undefined
}

function duration(env: Env, name: string, fallback: string): number {
  const raw = env[name] || fallback
  const seconds = parseDurationSeconds(raw)
  if (!seconds) fail(name, 'a positive duration such as 900, 30s, 15m, 12h or 7d', raw)
  return seconds
}

/** Like duration, but 0 (off) is allowed and the value is capped. */
function shortDuration(env: Env, name: string, fallback: string, maxSeconds: number): number {
  const raw = env[name] || fallback
  const seconds = parseDurationSeconds(raw)
  if (seconds === undefined || seconds > maxSeconds) fail(name, `a duration from 0 to ${maxSeconds}s such as 0, 10s or 1m`, raw)
  return seconds
}

/** A duration in milliseconds, at most a day (timers overflow past 24.8 days). */
function timeoutMs(env: Env, name: string, fallback: string): number {
  const seconds = duration(env, name, fallback)
  if (seconds > 86400) fail(name, 'a duration from 1s to 1d', env[name] as string)
  return seconds * 1000
}

function oneOf<T extends string>(env: Env, name: string, choices: readonly T[], fallback: T): T {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (!choices.includes(raw as T)) fail(name, `one of ${choices.join(', ')}`, raw)
  return raw as T
}

function url(env: Env, name: string, protocols: string[], accepted: string): string | undefined {
  const raw = env[name]
  if (raw === undefined || raw === '') return undefined
  try {
    const parsed = new URL(raw)
    if (protocols.includes(parsed.protocol)) return raw
  } catch {}
  fail(name, accepted, raw)
}

const DEFAULT_DATA_DIR = './data'
const SQLITE_FILE = 'portrait.db'

/** DATABASE_URL, by default the SQLite file in DATA_DIR. */
function databaseUrl(env: Env, dataDir: string): string {
  const raw = env.DATABASE_URL || `sqlite:${dataDir.replace(/\/+$/, '')}/${SQLITE_FILE}`
  if (!(/^sqlite:.+/.test(raw) || /^postgres(ql)?:\/\/.+/.test(raw))) fail('DATABASE_URL', 'sqlite:<path> or postgres://user@host:port/database', raw)
  // Before 2026-12 the default file stayed in ./data whatever DATA_DIR said: a server started with a DATA_DIR of
  // its own would otherwise open a new, empty database here and look as if every account were gone.
  const legacy = join(DEFAULT_DATA_DIR, SQLITE_FILE)
  if (!env.DATABASE_URL && resolve(dataDir) !== resolve(DEFAULT_DATA_DIR) && existsSync(legacy) && !existsSync(join(dataDir, SQLITE_FILE))) {
    throw new ConfigError(
      `the SQLite database is at ${legacy}, and DATA_DIR=${dataDir} is where it is looked for now: move ${SQLITE_FILE} (with any -wal and -shm files) into DATA_DIR, or set DATABASE_URL=sqlite:${legacy}`,
    )
  }
  return raw
}

// Passed to PostgreSQL as a connection option, so only a plain identifier is accepted.
function databaseSchema(env: Env): string | undefined {
  const raw = env.DATABASE_SCHEMA
  if (raw === undefined || raw === '') return undefined
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(raw)) fail('DATABASE_SCHEMA', 'a plain identifier (letters, digits, _)', raw)
  return raw
}

// proxy-addr's names for address ranges (loopback: 127.0.0.1/8 and ::1).
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal']

function isProxyAddress(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true
  const [address = '', prefix, extra] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return false
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128))
}

function trustProxy(env: Env): false | number | string[] {
  const raw = env.TRUST_PROXY?.trim()
  if (raw === undefined || raw === '' || raw.toLowerCase() === 'false' || raw === '0') return false
  if (raw.toLowerCase() === 'true') {
    // Trusting every hop makes the leftmost, client-written X-Forwarded-For entry the client address.
    throw new ConfigError(
      'TRUST_PROXY=true is refused: it lets any client choose its address; set the number of proxies in front (e.g. TRUST_PROXY=1) or their addresses/CIDRs (e.g. TRUST_PROXY=10.0.0.5,10.1.0.0/16)',
    )
  }
  if (/^\d+$/.test(raw)) {
    if (Number(raw) > 100) fail('TRUST_PROXY', 'a hop count from 1 to 100, or proxy addresses/CIDRs', raw)
    return Number(raw)
  }
  const entries = raw.split(',').map((entry) => entry.trim())
  if (entries.every(isProxyAddress)) return entries
  fail('TRUST_PROXY', 'false, a hop count (1, 2, …) or a comma-separated list of proxy addresses/CIDRs (10.0.0.5, 10.1.0.0/16, loopback)', raw)
}

function jwtIssuer(env: Env): string | undefined {
  const raw = env.JWT_ISSUER
  if (raw === undefined || raw === '') return undefined
  if (!/^\S{1,2048}$/.test(raw)) fail('JWT_ISSUER', 'a URL or name without spaces, such as https://accounts.example.com', raw)
  return raw
}

function jwtAudience(env: Env): string[] {
  const raw = env.JWT_AUDIENCE
  if (raw === undefined || raw.trim() === '') return []
  const audiences = raw.split(',').map((entry) => entry.trim())
  if (!audiences.every((entry) => /^\S{1,2048}$/.test(entry))) fail('JWT_AUDIENCE', 'a comma-separated list of audiences such as https://api.example.com', raw)
  return audiences
}

// The address inside MAIL_FROM: the sign-up email rule, ASCII only (a From every SMTP server accepts).
const MAIL_ADDRESS = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/
const MAIL_NAME = /^[^<>"\r\n\\]{1,100}$/

function mailFrom(env: Env, publicUrl: string | undefined): string {
  const raw = env.MAIL_FROM?.trim()
  if (raw === undefined || raw === '') {
    // no-reply at PUBLIC_URL's host when it is a name with a dot; a reserved name otherwise.
    const host = publicUrl ? new URL(publicUrl).hostname : ''
    return `Portrait <no-reply@${MAIL_ADDRESS.test(`no-reply@${host}`) ? host : 'portrait.localhost'}>`
  }
  const named = /^(.*?)\s*<([^<>]+)>$/.exec(raw)
  const name = named?.[1]?.trim().replace(/^"(.*)"$/, '$1')
  const address = named ? (named[2] as string) : raw
  if (MAIL_ADDRESS.test(address) && (name === undefined || name === '' || MAIL_NAME.test(name))) return raw
  fail('MAIL_FROM', 'an address such as no-reply@example.com or "Portrait <no-reply@example.com>"', raw)
}

function smtpUrl(env: Env): string | undefined {
  const raw = env.SMTP_URL
  if (raw === undefined || raw === '') return undefined
  try {
    const parsed = new URL(raw)
    if ((parsed.protocol === 'smtp:' || parsed.protocol === 'smtps:') && parsed.hostname !== '') return raw
  } catch {}
  // Never echo the value: it may hold the SMTP password.
  fail('SMTP_URL', 'smtp://user:pass@host:port or smtps://user:pass@host:port', '<hidden>')
}

function corsOrigins(env: Env): string[] {
  const raw = env.CORS_ORIGINS
  if (raw === undefined || raw.trim() === '') return []
  const origins = raw.split(',').map((origin) => origin.trim())
  for (const origin of origins) {
    if (!/^https?:\/\/[^/]+$/.test(origin)) fail('CORS_ORIGINS', 'a comma-separated list of origins like https://app.example.com', raw)
  }
  return origins
}

/**
 * Reads and validates the environment; throws one ConfigError naming every bad variable ("A=… is invalid: …;
 * B=… is invalid: …"). Each check still stops at its first failure (`fail` throws); the variable a failure
 * names is then read as unset and the rest checked again, so every check reports as it always has.
 */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const failures: string[] = []
  // A copy cannot be process.env: carry the thread-pool size as it was at start (see THREAD_POOL_SIZE_AT_START).
  let current: Env = env === process.env ? { ...env, UV_THREADPOOL_SIZE: THREAD_POOL_SIZE_AT_START } : env
  for (;;) {
    try {
      const config = readConfig(failures.length === 0 ? env : current)
      if (failures.length === 0) return config
      break
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      failures.push(error.message)
      const name = /^([A-Z][A-Z0-9_]*)=/.exec(error.message)?.[1]
      if (name === undefined || current[name] === undefined) break
      current = { ...current, [name]: undefined }
    }
  }
  throw new ConfigError(failures.join('; '))
}

function readConfig(env: Env): Readonly<Config> {
  const jwtSecret = env.JWT_SECRET || undefined
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    fail('JWT_SECRET', 'at least 32 bytes (e.g. `openssl rand -base64 48`)', '<hidden>')
  }
  const publicUrl = url(env, 'PUBLIC_URL', ['http:', 'https:'], 'an absolute http(s) URL')
  const jwtAlgorithm = env.JWT_ALGORITHM ? oneOf(env, 'JWT_ALGORITHM', ['EdDSA', 'ES256', 'HS256'] as const, 'EdDSA') : undefined
  if (jwtAlgorithm === 'HS256' && jwtSecret === undefined) fail('JWT_ALGORITHM', 'EdDSA or ES256, or HS256 together with JWT_SECRET', 'HS256')
  const pool = env === process.env ? THREAD_POOL_SIZE_AT_START : env.UV_THREADPOOL_SIZE
  // Unset is libuv's 4; set but empty is 1 to libuv, so it is refused rather than read as the default.
  if (pool === '') fail('UV_THREADPOOL_SIZE', 'an integer from 2 to 1024', pool)
  const threadPoolSize = integer({ UV_THREADPOOL_SIZE: pool }, 'UV_THREADPOOL_SIZE', 4, 2, 1024)
  return Object.freeze({
    port: integer(env, 'PORT', 8000, 0, 65535),
    host: env.HOST || '127.0.0.1',
    dataDir: env.DATA_DIR || DEFAULT_DATA_DIR,
    databaseUrl: databaseUrl(env, env.DATA_DIR || DEFAULT_DATA_DIR),
    databaseSchema: databaseSchema(env),
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    usersExactCountLimit: integer(env, 'USERS_EXACT_COUNT_LIMIT', 1000, 1, 10_000_000),
    databaseAcquireTimeoutMs: timeoutMs(env, 'DATABASE_ACQUIRE_TIMEOUT', '2s'),
    databaseStatementTimeoutMs: timeoutMs(env, 'DATABASE_STATEMENT_TIMEOUT', '5s'),
    mediaStorage: oneOf(env, 'MEDIA_STORAGE', ['fs', 'db'] as const, 'fs'),
    mediaRoot: env.MEDIA_ROOT || './data/media',
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    jwtSecret,
    jwtAlgorithm,
    jwtIssuer: jwtIssuer(env),
    jwtAudience: jwtAudience(env),
    keysetRefreshMs: timeoutMs(env, 'KEYSET_REFRESH_INTERVAL', '60s'),
    accessTokenTtlSeconds: duration(env, 'ACCESS_TOKEN_TTL', '15m'),
    refreshTokenTtlSeconds: duration(env, 'REFRESH_TOKEN_TTL', '7d'),
    refreshReuseGraceSeconds: shortDuration(env, 'REFRESH_REUSE_GRACE', '10s', 300),
    sessionMaxAgeSeconds: duration(env, 'SESSION_MAX_AGE', '90d'),
    avatarMaxBytes: integer(env, 'AVATAR_MAX_BYTES', 5 * 1024 * 1024, 1024, 100 * 1024 * 1024),
    avatarSize: integer(env, 'AVATAR_SIZE', 512, 16, 4096),
    imageConcurrency: imageConcurrencyFor(availableParallelism(), threadPoolSize),
    threadPoolSize,
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:'], 'redis://host:port or rediss://host:port'),
    redisKeyPrefix: env.REDIS_KEY_PREFIX || 'portrait:',
    corsOrigins: corsOrigins(env),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    logFormat: oneOf(env, 'LOG_FORMAT', ['json', 'pretty'] as const, process.stdout.isTTY ? 'pretty' : 'json'),
    trustProxy: trustProxy(env),
    passwordHashCost: OWASP_ARGON2ID,
    signInLimits: {
      maxFailuresPerAccount: integer(env, 'SIGN_IN_MAX_FAILURES_PER_ACCOUNT', 10, 1, 1_000_000),
      maxFailuresPerAddress: integer(env, 'SIGN_IN_MAX_FAILURES_PER_ADDRESS', 100, 1, 1_000_000),
      windowSeconds: duration(env, 'SIGN_IN_FAILURE_WINDOW', '15m'),
    },
    signUpLimits: {
      maxPerAddress: integer(env, 'SIGN_UP_MAX_PER_ADDRESS', 30, 1, 1_000_000),
      windowSeconds: duration(env, 'SIGN_UP_WINDOW', '5m'),
    },
    mail: {
      smtpUrl: smtpUrl(env),
      from: mailFrom(env, publicUrl),
      maxAttempts: integer(env, 'MAIL_MAX_ATTEMPTS', 10, 1, 100),
      retryBaseMs: 10_000,
      pollIntervalMs: timeoutMs(env, 'MAIL_POLL_INTERVAL', '30s'),
    },
    mailRequestLimits: {
      maxPerEmail: integer(env, 'MAIL_REQUESTS_PER_EMAIL', 5, 1, 1_000_000),
      maxPerAddress: integer(env, 'MAIL_REQUESTS_PER_ADDRESS', 30, 1, 1_000_000),
      windowSeconds: duration(env, 'MAIL_REQUEST_WINDOW', '1h'),
    },
    passwordResetTtlSeconds: duration(env, 'PASSWORD_RESET_TTL', '1h'),
    emailVerificationTtlSeconds: duration(env, 'EMAIL_VERIFICATION_TTL', '3d'),
    requestTimeoutMs: duration(env, 'REQUEST_TIMEOUT', '30s') * 1000,
    shutdownTimeoutMs: timeoutMs(env, 'SHUTDOWN_TIMEOUT', '8s'),
    sweepMediaOnStart: true,
    sessionPurgeIntervalMs: timeoutMs(env, 'SESSION_PURGE_INTERVAL', '10m'),
    activityRetentionSeconds: duration(env, 'ACTIVITY_RETENTION', '90d'),
    activityPurgeIntervalMs: timeoutMs(env, 'ACTIVITY_PURGE_INTERVAL', '1h'),
    mediaTempSweepIntervalMs: 60_000,
    mediaTempMaxAgeMs: 5 * 60_000,
  })
}
