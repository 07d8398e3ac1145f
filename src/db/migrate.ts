import { type Kysely, type Migration, type MigrationResultSet, Migrator, PostgresAdapter, sql } from 'kysely'
import * as initial from './migrations/0001_initial.js'
import * as sessionsExpiresAtIndex from './migrations/0002_sessions_expires_at_index.js'
import * as refreshReuseGrace from './migrations/0003_refresh_reuse_grace.js'
import * as usernameSkeleton from './migrations/0004_username_skeleton.js'
import * as userSearchIndex from './migrations/0005_user_search_index.js'
import * as signingKeys from './migrations/0006_signing_keys.js'
import * as mailAndAccountTokens from './migrations/0007_mail_and_account_tokens.js'
import * as mfa from './migrations/0008_mfa.js'
import * as passkeys from './migrations/0009_passkeys.js'
import * as sessionActivity from './migrations/0010_session_activity.js'
import * as userSearchGrams from './migrations/0011_user_search_grams.js'
import * as purgeIndexes from './migrations/0012_purge_indexes.js'
import * as sessionReauthentication from './migrations/0013_session_reauthentication.js'

// Listed statically so migrations work the same from source, from a bundle and in tests.
const migrations: Record<string, Migration> = {
  '0001_initial': initial,
  '0002_sessions_expires_at_index': sessionsExpiresAtIndex,
  '0003_refresh_reuse_grace': refreshReuseGrace,
  '0004_username_skeleton': usernameSkeleton,
  '0005_user_search_index': userSearchIndex,
  '0006_signing_keys': signingKeys,
  '0007_mail_and_account_tokens': mailAndAccountTokens,
  '0008_mfa': mfa,
  '0009_passkeys': passkeys,
  '0010_session_activity': sessionActivity,
  '0011_user_search_grams': userSearchGrams,
  '0012_purge_indexes': purgeIndexes,
  '0013_session_reauthentication': sessionReauthentication,
}

/** Every migration's name, in the order they apply. */
export const MIGRATION_NAMES: readonly string[] = Object.keys(migrations).sort()

/** Brings the schema up to date; returns the names of the migrations it applied. */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return applied(await (await migrator(db)).migrateToLatest())
}

/** Runs migrations up or down until `name` is the last applied (an upgrade test starts from an older schema this way). */
export async function migrateTo(db: Kysely<any>, name: string): Promise<string[]> {
  return applied(await (await migrator(db)).migrateTo(name))
}

async function migrator(db: Kysely<any>): Promise<Migrator> {
  return new Migrator({ db, provider: { getMigrations: async () => migrations }, migrationTableSchema: await migrationTableSchema(db) })
}

function applied({ error, results }: MigrationResultSet): string[] {
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
