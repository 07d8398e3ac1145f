import { type Kysely, type Migration, Migrator } from 'kysely'
import * as initial from './migrations/0001_initial.js'

// Listed statically so migrations work the same from source, from a bundle and in tests.
const migrations: Record<string, Migration> = {
  '0001_initial': initial,
}

/** Brings the schema up to date; returns the names of the migrations it applied. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } })
  const { error, results } = await migrator.migrateToLatest()
  if (error) throw error
  return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName)
}
