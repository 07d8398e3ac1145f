import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import type SQLite from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'
import pg from 'pg'
import type { AccountTokensTable } from '../account-tokens/account-tokens.table.js'
import type { SecurityActivityTable } from '../activity/activity.table.js'
import type { SessionsTable } from '../auth/sessions.table.js'
import type { KeysetTable, ServiceKeysTable, SigningKeysTable } from '../auth/signing-keys.table.js'
import type { AvatarsTable } from '../avatars/avatars.table.js'
import type { MailOutboxTable } from '../mail/mail.table.js'
import type { MfaChallengesTable, MfaRecoveryCodesTable, MfaTotpTable } from '../mfa/mfa.tables.js'
import type { PasskeyChallengesTable, PasskeysTable } from '../passkeys/passkeys.table.js'
import { searchGrams } from '../users/search-index.js'
import type { UsersTable } from '../users/users.table.js'
import { CurrentSchemaPostgresDialect } from './current-schema-introspector.js'
import { GuardedPool } from './guarded-pool.js'
import { SQLITE_BUSY_TIMEOUT_MS, SqliteConnection } from './sqlite-connection.js'
import { withStatementCache } from './statement-cache.js'

export interface Database {
  users: UsersTable
  sessions: SessionsTable
  avatars: AvatarsTable
  signing_keys: SigningKeysTable
  keyset: KeysetTable
  service_keys: ServiceKeysTable
  security_activity: SecurityActivityTable
  mail_outbox: MailOutboxTable
  account_tokens: AccountTokensTable
  mfa_totp: MfaTotpTable
  mfa_recovery_codes: MfaRecoveryCodesTable
  mfa_challenges: MfaChallengesTable
  passkeys: PasskeysTable
  passkey_challenges: PasskeyChallengesTable
}

export type Dialect = 'sqlite' | 'postgres'

/** The Kysely instance plus the raw driver, for the few statements prepared once for the hot path. */
export interface Db {
  kysely: Kysely<Database>
  dialect: Dialect
  sqlite?: SQLite.Database
  pool?: pg.Pool
  /** SQLite: throws unless the database can take a write (a read-only file passes `select 1`). */
  probe?(): Promise<void>
  destroy(): Promise<void>
}

export interface DbOptions {
  databaseUrl: string
  databaseSchema?: string
  databasePoolSize: number
  /** PostgreSQL: waiting longer than this for a pooled connection fails the request (503); default 2 s. */
  databaseAcquireTimeoutMs?: number
  /**
   * PostgreSQL: a statement unanswered by then fails (503) instead of holding its request, and the server ends a
   * statement or an idle open transaction that outlives it; default 5 s. Long migrations pass more.
   */
  databaseStatementTimeoutMs?: number
}

// int8 (COUNT) fits a JS number for any table this service will hold.
pg.types.setTypeParser(pg.types.builtins.INT8, Number)

/** Opens the database named by the URL: `sqlite:<path>` or `postgres://…`. */
export function createDb(options: DbOptions): Db {
  if (options.databaseUrl.startsWith('sqlite:')) return openSqlite(options.databaseUrl.slice('sqlite:'.length))
  return openPostgres(options)
}

function openSqlite(path: string): Db {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true })
    // The file holds password hashes and the private signing keys: a new one is the owner's alone, and SQLite
    // gives its -wal and -shm files the same mode. An existing file is left be; a directory that refuses the new
    // file is SQLite's to report (SQLITE_CANTOPEN, one line at start).
    try {
      closeSync(openSync(path, 'wx', 0o600))
    } catch {}
  }
  const connection = new SqliteConnection(path, configureSqlite)
  const kysely = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(connection) }) })
  return {
    kysely,
    dialect: 'sqlite',
    // The connection in use now: a new one after the file was read-only or unopenable (see SqliteConnection).
    get sqlite() {
      return connection.current
    },
    // Holding Kysely's one connection, so the probe never lands inside someone's transaction.
    probe: () => kysely.connection().execute(async () => connection.probe()),
    destroy: () => kysely.destroy(),
  }
}

function configureSqlite(sqlite: SQLite.Database): void {
  sqlite.pragma('journal_mode = WAL')
  // NORMAL in WAL mode: a committed write survives a process crash; only power loss may drop the last commits.
  sqlite.pragma('synchronous = NORMAL')
  sqlite.pragma('foreign_keys = ON')
  sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`)
  registerSqliteFunctions(sqlite)
}

/**
 * The functions the search-index triggers call on every write of users (search-index.ts): any connection that
 * writes users, the app's or another program's, must register them first.
 */
export function registerSqliteFunctions(sqlite: SQLite.Database): void {
  // SQLite's lower() folds ASCII only; searches must match "Ünal" when asked for "ünal", as PostgreSQL does.
  sqlite.function('unicode_lower', { deterministic: true }, (value) => (typeof value === 'string' ? value.toLowerCase() : value))
  sqlite.function('search_grams', { deterministic: true, varargs: true }, searchGrams)
}

function openPostgres(options: DbOptions): Db {
  const { databaseUrl, databaseSchema, databasePoolSize, databaseAcquireTimeoutMs = 2000, databaseStatementTimeoutMs = 5000 } = options
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: databasePoolSize,
    // A server that is down or hung fails the request (503) instead of holding it open: waiting for a pooled
    // connection (or a new one) and each statement are bounded, so a request fails within about their sum.
    connectionTimeoutMillis: databaseAcquireTimeoutMs,
    query_timeout: databaseStatementTimeoutMs,
    // Defence in depth on the server's side: it ends a statement, or a session left idle inside a transaction, that
    // outlives the same bound, so no path can hold locks or an uncommitted transaction for long.
    statement_timeout: databaseStatementTimeoutMs,
    idle_in_transaction_session_timeout: databaseStatementTimeoutMs,
    keepAlive: true,
    ...(databaseSchema ? { options: `-c search_path=${databaseSchema}` } : {}),
  })
  // A client losing its server must not crash the process, idle (the pool's 'error') or checked out between two
  // statements of a transaction (the client's own 'error', which nothing else listens to then). The failed query
  // reports it, and the pool drops the dead client when it is released.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  // Kysely borrows through GuardedPool: a connection that failed or kept a transaction open is destroyed, never reused.
  const kysely = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool: new GuardedPool(pool) }) })
  return { kysely, dialect: 'postgres', pool, destroy: () => kysely.destroy() }
}
