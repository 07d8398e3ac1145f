import { type Kysely, PostgresAdapter } from 'kysely'

/**
 * Asymmetric signing keys shared by every instance (issue 16):
 * - signing_keys: one row per key ever made, private part included (never served or logged); a key verifies
 *   until retires_at (set when a rotation supersedes it) and stops at once when revoked_at is set.
 * - keyset: a single row (id 1) naming the current signing key, and the server secret the HMAC derivations
 *   (device proofs, refresh successors) use when JWT_SECRET is unset. Inserted only if absent, so instances
 *   starting together end with one signing key.
 * - service_keys: credentials of the services allowed to introspect tokens, stored as SHA-256 hashes.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const timestamp = pg ? 'timestamptz' : 'text'
  await db.schema
    .createTable('signing_keys')
    .addColumn('kid', 'text', (col) => col.primaryKey())
    .addColumn('alg', 'text', (col) => col.notNull())
    .addColumn('public_jwk', 'text', (col) => col.notNull())
    .addColumn('private_jwk', 'text', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('retires_at', timestamp)
    .addColumn('revoked_at', timestamp)
    .execute()
  await db.schema
    .createTable('keyset')
    .addColumn('id', 'integer', (col) => col.primaryKey())
    .addColumn('current_kid', 'text', (col) => col.notNull())
    .addColumn('server_secret', 'text', (col) => col.notNull())
    .addColumn('updated_at', timestamp, (col) => col.notNull())
    .execute()
  await db.schema
    .createTable('service_keys')
    .addColumn('name', 'text', (col) => col.primaryKey())
    .addColumn('secret_hash', 'text', (col) => col.notNull().unique())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('revoked_at', timestamp)
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('service_keys').execute()
  await db.schema.dropTable('keyset').execute()
  await db.schema.dropTable('signing_keys').execute()
}
