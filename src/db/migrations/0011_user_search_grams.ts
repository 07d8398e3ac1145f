import { type Kysely, PostgresAdapter, sql } from 'kysely'
// Like 0005, this migration imports the app's own definition, so the index holds exactly what searches look for.
import { createPostgresGramIndex, createSqliteGramIndex, GRAM_INDEX } from '../../users/search-index.js'

/**
 * One- and two-character substring search by index (the trigram index of 0005 serves three characters and
 * more): every one- and two-character substring of the searched columns, in an FTS5 table on SQLite and a GIN
 * index over a function on PostgreSQL. Existing users are indexed here (about a minute per million on SQLite).
 */
export async function up(db: Kysely<any>): Promise<void> {
  if (db.getExecutor().adapter instanceof PostgresAdapter) await createPostgresGramIndex(db)
  else await createSqliteGramIndex(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    await sql.raw(`drop index if exists ${GRAM_INDEX}`).execute(db)
    await sql.raw(`drop function if exists ${GRAM_INDEX}(text, text, text, text)`).execute(db)
    return
  }
  for (const trigger of ['insert', 'update', 'delete']) await sql.raw(`drop trigger if exists ${GRAM_INDEX}_${trigger}`).execute(db)
  await sql.raw(`drop table if exists ${GRAM_INDEX}`).execute(db)
}
