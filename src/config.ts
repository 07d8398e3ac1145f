import { availableParallelism } from 'node:os'

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

export interface Config {
  port: number
  host: string
  /** Where generated state (the JWT secret) lives when nothing else is configured. */
  dataDir: string
  databaseUrl: string
  /** PostgreSQL only: run in this schema (tests give each file its own). */
  databaseSchema?: string
  databasePoolSize: number
  mediaStorage: 'fs' | 'db'
  mediaRoot: string
  publicUrl?: string
  /** Undefined: generated once and kept in `dataDir/jwt-secret`. */
  jwtSecret?: string
  accessTokenTtlSeconds: number
  refreshTokenTtlSeconds: number
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
  trustProxy: boolean | string
  passwordHashCost: PasswordHashCost
  signInLimits: SignInLimits
  /** A request body must arrive within this time (slow-client protection). */
  requestTimeoutMs: number
  /** Remove unreferenced avatar files when the app starts. */
  sweepMediaOnStart: boolean
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

function databaseUrl(env: Env): string {
  const raw = env.DATABASE_URL || 'sqlite:./data/portrait.db'
  if (/^sqlite:.+/.test(raw) || /^postgres(ql)?:\/\/.+/.test(raw)) return raw
  fail('DATABASE_URL', 'sqlite:<path> or postgres://user@host:port/database', raw)
}

// Passed to PostgreSQL as a connection option, so only a plain identifier is accepted.
function databaseSchema(env: Env): string | undefined {
  const raw = env.DATABASE_SCHEMA
  if (raw === undefined || raw === '') return undefined
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(raw)) fail('DATABASE_SCHEMA', 'a plain identifier (letters, digits, _)', raw)
  return raw
}

function trustProxy(env: Env): boolean | string {
  const raw = env.TRUST_PROXY
  if (raw === undefined || raw === '' || raw === 'false') return false
  if (raw === 'true') return true
  if (/^[\d.:/a-fA-F, ]+$/.test(raw)) return raw
  fail('TRUST_PROXY', 'true, false, or a comma-separated list of proxy addresses/CIDRs', raw)
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

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const jwtSecret = env.JWT_SECRET || undefined
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    fail('JWT_SECRET', 'at least 32 bytes (e.g. `openssl rand -base64 48`)', '<hidden>')
  }
  const publicUrl = url(env, 'PUBLIC_URL', ['http:', 'https:'], 'an absolute http(s) URL')
  const pool = env === process.env ? THREAD_POOL_SIZE_AT_START : env.UV_THREADPOOL_SIZE
  // Unset is libuv's 4; set but empty is 1 to libuv, so it is refused rather than read as the default.
  if (pool === '') fail('UV_THREADPOOL_SIZE', 'an integer from 2 to 1024', pool)
  const threadPoolSize = integer({ UV_THREADPOOL_SIZE: pool }, 'UV_THREADPOOL_SIZE', 4, 2, 1024)
  return Object.freeze({
    port: integer(env, 'PORT', 8000, 0, 65535),
    host: env.HOST || '127.0.0.1',
    dataDir: env.DATA_DIR || './data',
    databaseUrl: databaseUrl(env),
    databaseSchema: databaseSchema(env),
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    mediaStorage: oneOf(env, 'MEDIA_STORAGE', ['fs', 'db'] as const, 'fs'),
    mediaRoot: env.MEDIA_ROOT || './data/media',
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    jwtSecret,
    accessTokenTtlSeconds: duration(env, 'ACCESS_TOKEN_TTL', '15m'),
    refreshTokenTtlSeconds: duration(env, 'REFRESH_TOKEN_TTL', '7d'),
    avatarMaxBytes: integer(env, 'AVATAR_MAX_BYTES', 5 * 1024 * 1024, 1024, 100 * 1024 * 1024),
    avatarSize: integer(env, 'AVATAR_SIZE', 512, 16, 4096),
    imageConcurrency: imageConcurrencyFor(availableParallelism(), threadPoolSize),
    threadPoolSize,
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:'], 'redis://host:port or rediss://host:port'),
    redisKeyPrefix: env.REDIS_KEY_PREFIX || 'portrait:',
    corsOrigins: corsOrigins(env),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    trustProxy: trustProxy(env),
    passwordHashCost: OWASP_ARGON2ID,
    signInLimits: {
      maxFailuresPerAccount: integer(env, 'SIGN_IN_MAX_FAILURES_PER_ACCOUNT', 10, 1, 1_000_000),
      maxFailuresPerAddress: integer(env, 'SIGN_IN_MAX_FAILURES_PER_ADDRESS', 100, 1, 1_000_000),
      windowSeconds: duration(env, 'SIGN_IN_FAILURE_WINDOW', '15m'),
    },
    requestTimeoutMs: duration(env, 'REQUEST_TIMEOUT', '30s') * 1000,
    sweepMediaOnStart: true,
  })
}
