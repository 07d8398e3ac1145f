import { type Kysely, PostgresAdapter, sql } from 'kysely'

/**
 * The four columns a staff search looks in, lower-cased exactly as the plain scan does (users.repository.ts):
 * `unicode_lower()` (JavaScript's toLowerCase, registered on every connection the app opens) on SQLite,
 * `lower()` on PostgreSQL.
 */
export const SEARCH_COLUMNS = ['username_lower', 'email_lower', 'first_name', 'last_name'] as const

/** PostgreSQL: one pg_trgm GIN index per searched expression; the planner picks them for `lower(col) like '%…%'`. */
export const TRIGRAM_INDEXES = SEARCH_COLUMNS.map((column) => ({ column, name: `users_${column}_trgm` }))

const isPostgres = (db: Kysely<any>) => db.getExecutor().adapter instanceof PostgresAdapter

/**
 * SQLite: an FTS5 table with the trigram tokenizer holding the lower-cased columns (contentless, so the
 * words are not stored twice), kept in step by triggers: every write of users, whoever makes it, updates it
 * in the same transaction. The tokenizer folds no case itself (case_sensitive 1): the triggers store what
 * unicode_lower() returns and searches look for what toLowerCase() returns, so "matches" means exactly what
 * the scan's `unicode_lower(col) like '%…%'` means.
 */
export async function createSqliteSearchIndex(db: Kysely<any>): Promise<void> {
  const lowered = (row: 'new' | 'old') => SEARCH_COLUMNS.map((column) => `unicode_lower(${row}.${column})`).join(', ')
  const columns = SEARCH_COLUMNS.join(', ')
  const insert = (row: 'new') => `insert into users_search (rowid, ${columns}) values (${row}.id, ${lowered(row)});`
  await sql
    .raw(`create virtual table users_search using fts5(${columns}, content='', contentless_delete=1, tokenize='trigram case_sensitive 1')`)
    .execute(db)
  await sql.raw(`insert into users_search (rowid, ${columns}) select id, ${SEARCH_COLUMNS.map((c) => `unicode_lower(${c})`).join(', ')} from users`).execute(db)
  await sql.raw(`create trigger users_search_insert after insert on users begin ${insert('new')} end`).execute(db)
  await sql
    .raw(
      // Only when a searched value really changes: a PUT that sends back what it read re-indexes nothing
      // (re-indexing costs about 37 µs a write here, twice the UPDATE itself).
      `create trigger users_search_update after update of id, ${columns} on users
         when ${['id', ...SEARCH_COLUMNS].map((column) => `old.${column} is not new.${column}`).join(' or ')}
         begin delete from users_search where rowid = old.id; ${insert('new')} end`,
    )
    .execute(db)
  await sql.raw('create trigger users_search_delete after delete on users begin delete from users_search where rowid = old.id; end').execute(db)
}

/**
 * PostgreSQL: pg_trgm and its GIN indexes, inside the caller's transaction. Where the extension cannot be
 * created (a managed database, a role without CREATE on the database) nothing is created and false comes
 * back: searches then scan the table, as before, and the app warns at start (see checkTrigramIndexes).
 */
export async function createTrigramIndexes(db: Kysely<any>): Promise<boolean> {
  const schema = await trigramSchema(db)
  if (schema === undefined) return false
  for (const { column, name } of TRIGRAM_INDEXES) {
    await sql
      .raw(`create index if not exists ${name} on users using gin (lower(${column}) ${quoteIdent(schema)}.gin_trgm_ops)`)
      .execute(db)
  }
  return true
}

/**
 * Where pg_trgm lives, creating it (in public, shared by every schema of the database) when this role may;
 * undefined when it cannot be had. The privileges are read first instead of trying: an error inside a
 * transaction makes the pool discard the connection (guarded-pool.ts), and with it the migration.
 */
async function trigramSchema(db: Kysely<any>): Promise<string | undefined> {
  const installed = async () => {
    const { rows } = await sql<{ schema: string }>`select n.nspname as schema from pg_extension e
      join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pg_trgm'`.execute(db)
    return rows[0]?.schema
  }
  const existing = await installed()
  if (existing !== undefined) return existing
  // A superuser may; anyone else only for a trusted extension (pg_trgm is, from PostgreSQL 13), with CREATE on
  // the database and on the schema it goes into.
  const { rows } = await sql<{ allowed: boolean }>`select
      exists (select 1 from pg_available_extensions where name = 'pg_trgm')
      and exists (select 1 from pg_namespace where nspname = 'public')
      and (
        (select rolsuper from pg_roles where rolname = current_user)
        or (
          coalesce((select v.trusted from pg_available_extension_versions v join pg_available_extensions a
            on a.name = v.name and a.default_version = v.version where v.name = 'pg_trgm'), false)
          and has_database_privilege(current_database(), 'CREATE')
          and has_schema_privilege('public', 'CREATE')
        )
      ) as allowed`.execute(db)
  if (!rows[0]?.allowed) return undefined
  await sql`create extension if not exists pg_trgm with schema public`.execute(db)
  return installed()
}

/**
 * At start, on PostgreSQL: when the indexes are missing (the extension was refused at migration time) try
 * once more, since an operator may have installed pg_trgm since; false when searches still scan.
 */
export async function checkTrigramIndexes(db: Kysely<any>): Promise<boolean> {
  if (!isPostgres(db)) return true
  const present = async (executor: Kysely<any>) => {
    const { rows } = await sql<{ count: number }>`select count(*)::int as count from pg_indexes
      where schemaname = current_schema() and indexname in (${sql.join(TRIGRAM_INDEXES.map(({ name }) => name))})`.execute(executor)
    return rows[0]?.count === TRIGRAM_INDEXES.length
  }
  if (await present(db)) return true
  try {
    return await db.transaction().execute(async (trx) => (await createTrigramIndexes(trx)) && present(trx))
  } catch {
    return false
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}
