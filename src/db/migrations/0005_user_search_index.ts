import { type Kysely, PostgresAdapter, sql } from 'kysely'
// Like 0004, this migration imports the app's own definition, so the index holds exactly what searches look for.
import { createSqliteSearchIndex, createTrigramIndexes, TRIGRAM_INDEXES } from '../../users/search-index.js'

/**
 * Substring search by index: an FTS5 trigram table kept in step by triggers on SQLite, pg_trgm GIN indexes on
 * PostgreSQL (skipped, with the app warning at start, where the extension cannot be created).
 */
export async function up(db: Kysely<any>): Promise<void> {
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    await createTrigramIndexes(db)
    return
  }
  await createSqliteSearchIndex(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    for (const { name } of TRIGRAM_INDEXES) await sql.raw(`drop index if exists ${name}`).execute(db)
    return
  }
  for (const trigger of ['insert', 'update', 'delete']) await sql.raw(`drop trigger if exists users_search_${trigger}`).execute(db)
  await sql`drop table if exists users_search`.execute(db)
}
