import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../../src/app.js'
import { type Config, loadConfig } from '../../src/config.js'
import { deferCleanup, removeWhenDone } from './cleanup.js'
import { freshSchema, POSTGRES_SKIP } from './postgres.js'

export type DialectName = 'sqlite' | 'postgres'

/** The dialects every database-touching suite runs on; PostgreSQL only when TEST_DATABASE_URL is set. */
export const DIALECTS: { name: DialectName; skip: string | false }[] = [
  { name: 'sqlite', skip: false },
  { name: 'postgres', skip: POSTGRES_SKIP },
]

export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789'

/** Cheap argon2 for tests; production uses the OWASP parameters. */
export const CHEAP_HASH = { memoryCost: 1024, timeCost: 1, parallelism: 1 }

/** A fresh data directory and, for PostgreSQL, a fresh schema; both removed when the test ends. */
export async function testConfig(t: TestContext, dialect: DialectName = 'sqlite', overrides: Partial<Config> = {}): Promise<Config> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-test-'))
  removeWhenDone(t, dir)
  const base = {
    ...loadConfig({}),
    dataDir: dir,
    databaseUrl: `sqlite:${join(dir, 'portrait.db')}`,
    mediaRoot: join(dir, 'media'),
    jwtSecret: TEST_JWT_SECRET,
    passwordHashCost: CHEAP_HASH,
    logLevel: 'silent' as const,
  }
  if (dialect === 'postgres') {
    Object.assign(base, { databaseUrl: process.env.TEST_DATABASE_URL as string, databaseSchema: await freshSchema(t) })
  }
  return { ...base, ...overrides }
}

/** The real app, built exactly as the server builds it, closed when the test ends. */
export async function testApp(t: TestContext, dialect: DialectName = 'sqlite', overrides: Partial<Config> = {}) {
  const config = await testConfig(t, dialect, overrides)
  const app = await buildApp(config)
  deferCleanup(t, () => app.close())
  return { app, config, client: new TestClient(app) }
}

export interface Session {
  access: string
  refresh: string
  user: { id: number; username: string; email: string; [field: string]: unknown }
}

let counter = 0
/** A unique username for this process; tests build their own data. */
export function uniqueName(prefix = 'user'): string {
  counter += 1
  return `${prefix}${process.pid}x${counter}`
}

export const GOOD_PASSWORD = 'correct-Horse-battery-9'

/** The 13 fields a user may ever be shown with (SPEC §2, and issue 14's email_verified), stated here independently of the schema. */
export const USER_FIELDS = [
  'avatar',
  'date_joined',
  'email',
  'email_verified',
  'first_name',
  'id',
  'is_active',
  'is_staff',
  'is_superuser',
  'last_login',
  'last_name',
  'number_phone',
  'username',
]

/** Thin helpers over inject: real routing, hooks, parsing and serialisation, no socket. */
export class TestClient {
  constructor(readonly app: FastifyInstance) {}

  request(options: InjectOptions): Promise<LightMyRequestResponse> {
    return this.app.inject(options)
  }

  async signUp(fields: Record<string, unknown> = {}): Promise<Session> {
    const username = (fields.username as string) ?? uniqueName()
    const response = await this.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up',
      payload: { username, email: `${username}@example.com`, password: GOOD_PASSWORD, ...fields },
    })
    if (response.statusCode !== 201) throw new Error(`sign-up failed: ${response.statusCode} ${response.body}`)
    return response.json()
  }

  get(url: string, access?: string): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'GET', url, headers: bearer(access) })
  }

  send(method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload: unknown, access?: string, headers: Record<string, string> = {}) {
    return this.app.inject({ method, url, payload: payload as InjectOptions['payload'], headers: { ...bearer(access), ...headers } })
  }
}

export function bearer(access?: string): Record<string, string> {
  return access ? { authorization: `Bearer ${access}` } : {}
}

/** Asserts the RFC 9457 shape every error must have and returns the parsed problem. */
export function problemOf(response: LightMyRequestResponse, status: number) {
  if (response.statusCode !== status) throw new Error(`expected ${status}, got ${response.statusCode}: ${response.body}`)
  if (!String(response.headers['content-type']).startsWith('application/problem+json')) {
    throw new Error(`expected problem+json, got ${response.headers['content-type']}`)
  }
  const problem = response.json()
  for (const key of ['type', 'title', 'status', 'detail', 'request_id']) {
    if (!(key in problem)) throw new Error(`problem lacks ${key}: ${response.body}`)
  }
  if (problem.status !== status || problem.request_id !== response.headers['x-request-id']) throw new Error(`bad problem: ${response.body}`)
  return problem as { type: string; title: string; status: number; detail: string; errors?: Record<string, string[]>; request_id: string }
}
