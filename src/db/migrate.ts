import { type Kysely, type Migration, Migrator, PostgresAdapter, sql } from 'kysely'
import * as initial from './migrations/0001_initial.js'
import * as refreshReuseGrace from './migrations/0003_refresh_reuse_grace.js'

// Listed statically so migrations work the same from source, from a bundle and in tests.
const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0003_refresh_reuse_grace': refreshReuseGrace,
}

/** Brings the schema up to date; returns the names of the migrations it applied. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: await migrationTableSchema(db),
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error) throw error
  return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName)
}

/**
 * On PostgreSQL, the schema the search path points at. Kysely otherwise looks for its migration tables in
 * every schema of the database, finds another schema's (another deployment's, another test's), and then
 * fails to lock a table its own search path cannot see.
 */
async function migrationTableSchema(db: Kysely<any>): Promise<string | undefined> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return undefined
  const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db)
  return rows[0]?.schema ?? undefined
}
