import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type SQLite from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'
import pg from 'pg'
import type { SessionsTable } from '../auth/sessions.table.js'
import type { AvatarsTable } from '../avatars/avatars.table.js'
import type { UsersTable } from '../users/users.table.js'
import { CurrentSchemaPostgresDialect } from './current-schema-introspector.js'
import { SQLITE_BUSY_TIMEOUT_MS, SqliteConnection } from './sqlite-connection.js'
import { withStatementCache } from './statement-cache.js'

export interface Database {
  users: UsersTable
  sessions: SessionsTable
  avatars: AvatarsTable
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
  /** PostgreSQL: a query unanswered by then fails (503) instead of holding its request; default 15 s. Long migrations pass more. */
  queryTimeoutMs?: number
}

// int8 (COUNT) fits a JS number for any table this service will hold.
pg.types.setTypeParser(pg.types.builtins.INT8, Number)

/** Opens the database named by the URL: `sqlite:<path>` or `postgres://…`. */
export function createDb(options: DbOptions): Db {
  if (options.databaseUrl.startsWith('sqlite:')) return openSqlite(options.databaseUrl.slice('sqlite:'.length))
  return openPostgres(options)
}

function openSqlite(path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
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
  // SQLite's lower() folds ASCII only; searches must match "Ünal" when asked for "ünal", as PostgreSQL does.
  sqlite.function('unicode_lower', { deterministic: true }, (value) => (typeof value === 'string' ? value.toLowerCase() : value))
}

function openPostgres({ databaseUrl, databaseSchema, databasePoolSize, queryTimeoutMs = 15_000 }: DbOptions): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: databasePoolSize,
    // A server that is down or hung fails the request (503) instead of holding it open.
    connectionTimeoutMillis: 5000,
    query_timeout: queryTimeoutMs,
    keepAlive: true,
    ...(databaseSchema ? { options: `-c search_path=${databaseSchema}` } : {}),
  })
  // A client losing its server must not crash the process, idle (the pool's 'error') or checked out between two
  // statements of a transaction (the client's own 'error', which nothing else listens to then). The failed query
  // reports it, and the pool drops the dead client when it is released.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  const kysely = new Kysely<Database>({ dialect: new CurrentSchemaPostgresDialect({ pool }) })
  return { kysely, dialect: 'postgres', pool, destroy: () => kysely.destroy() }
}
