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
 * Searches shorter than this many characters (code points) have no trigram to look up: they use the gram
 * index below instead of the trigram one.
 */
export const TRIGRAM_LENGTH = 3

/**
 * A text of one or two characters as one token of the gram index: the code points in hex, joined by `x`
 * ("zq" is `7ax71`, "ß" is `df`). Plain ASCII letters and digits, so FTS5's ascii tokenizer keeps each
 * token whole and folds nothing: a token matches only the very same characters.
 */
export function gramToken(text: string): string {
  return Array.from(text, (char) => (char.codePointAt(0) as number).toString(16)).join('x')
}

/**
 * Every distinct one- and two-character substring ("gram") of the given lower-cased texts, as gramTokens
 * separated by spaces: a one- or two-character search matches a text exactly when its token is among them
 * (what `like '%…%'` means for such a search). Each text on its own, so no gram spans two columns.
 */
export function searchGrams(...texts: unknown[]): string {
  const grams = new Set<string>()
  for (const text of texts) {
    if (typeof text !== 'string') continue
    let previous: string | undefined
    for (const char of text) {
      const hex = (char.codePointAt(0) as number).toString(16)
      grams.add(hex)
      if (previous !== undefined) grams.add(`${previous}x${hex}`)
      previous = hex
    }
  }
  return [...grams].join(' ')
}

/** The gram index: an FTS5 table on SQLite (triggers fill it), a GIN index over this function on PostgreSQL. */
export const GRAM_INDEX = 'users_search_grams'

/** PostgreSQL: the indexed expression; a search must spell it exactly so for the planner to use the index. */
export const PG_GRAMS_EXPRESSION = `${GRAM_INDEX}(${SEARCH_COLUMNS.map((column) => `lower(${column})`).join(', ')})`

/**
 * SQLite: a second contentless FTS5 table holding searchGrams() of the same lower-cased columns, kept in
 * step by triggers as users_search is. detail=none: it only needs to know which rows hold a gram (no
 * positions), so it stays small (about 70 bytes a user). searchGrams is registered on every connection the
 * app opens (database.ts), as unicode_lower is.
 */
export async function createSqliteGramIndex(db: Kysely<any>): Promise<void> {
  const grams = (row: 'new') => `search_grams(${SEARCH_COLUMNS.map((column) => `unicode_lower(${row}.${column})`).join(', ')})`
  const insert = `insert into ${GRAM_INDEX} (rowid, grams) values (new.id, ${grams('new')});`
  await sql.raw(`create virtual table ${GRAM_INDEX} using fts5(grams, content='', contentless_delete=1, detail=none, tokenize='ascii')`).execute(db)
  await sql
    .raw(`insert into ${GRAM_INDEX} (rowid, grams) select id, search_grams(${SEARCH_COLUMNS.map((c) => `unicode_lower(${c})`).join(', ')}) from users`)
    .execute(db)
  await sql.raw(`create trigger ${GRAM_INDEX}_insert after insert on users begin ${insert} end`).execute(db)
  await sql
    .raw(
      `create trigger ${GRAM_INDEX}_update after update of id, ${SEARCH_COLUMNS.join(', ')} on users
         when ${['id', ...SEARCH_COLUMNS].map((column) => `old.${column} is not new.${column}`).join(' or ')}
         begin delete from ${GRAM_INDEX} where rowid = old.id; ${insert} end`,
    )
    .execute(db)
  await sql.raw(`create trigger ${GRAM_INDEX}_delete after delete on users begin delete from ${GRAM_INDEX} where rowid = old.id; end`).execute(db)
}

/**
 * PostgreSQL: the same grams as a text array (the grams themselves, no tokens needed), from a function of
 * the four lower-cased columns, under a GIN index. Nothing but the function and the index: no column, no
 * extension, so every role that may create the tables may create it.
 */
export async function createPostgresGramIndex(db: Kysely<any>): Promise<void> {
  await sql
    .raw(
      // Duplicates left in: GIN keeps each key once per row anyway, and array_agg(distinct) made the function
      // three times dearer (about 400 against 130 µs a row here), on every write and in the migration.
      `create or replace function ${GRAM_INDEX}(a text, b text, c text, d text) returns text[]
         language sql immutable parallel safe as $$
           select array(
             select substr(t, i, n)
             from unnest(array[a, b, c, d]) as texts(t)
               cross join lateral generate_series(1, char_length(t)) as i
               cross join (values (1), (2)) as lengths(n)
             where i + n - 1 <= char_length(t))
         $$`,
    )
    .execute(db)
  await sql.raw(`create index if not exists ${GRAM_INDEX} on users using gin (${PG_GRAMS_EXPRESSION})`).execute(db)
}

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
