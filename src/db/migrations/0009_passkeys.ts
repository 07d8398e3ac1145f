import { type Kysely, PostgresAdapter } from 'kysely'

/**
 * Passkeys (WebAuthn, issue 18):
 * - passkeys: one row per registered credential: its id and COSE public key (base64url), the last signature
 *   counter seen, and the user handle the authenticator stores with it (random, the same for a user's passkeys).
 * - passkey_challenges: the challenges handed out in options, as SHA-256 hashes, each for one purpose (and
 *   one user, except for a passwordless sign-in), deleted when used (once) and useless after expires_at.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const timestamp = pg ? 'timestamptz' : 'text'
  const bool = pg ? 'boolean' : 'integer'
  await db.schema
    .createTable('passkeys')
    .addColumn('id', 'integer', (col) => (pg ? col.primaryKey().generatedByDefaultAsIdentity() : col.primaryKey().autoIncrement()))
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('credential_id', 'text', (col) => col.notNull())
    .addColumn('public_key', 'text', (col) => col.notNull())
    // An unsigned 32-bit counter: past PostgreSQL's integer.
    .addColumn('counter', pg ? 'bigint' : 'integer', (col) => col.notNull())
    .addColumn('transports', 'text', (col) => col.notNull())
    .addColumn('user_handle', 'text', (col) => col.notNull())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('backed_up', bool, (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('last_used_at', timestamp)
    .execute()
  await db.schema.createIndex('passkeys_credential_id_key').unique().on('passkeys').column('credential_id').execute()
  await db.schema.createIndex('passkeys_user_id_idx').on('passkeys').column('user_id').execute()

  await db.schema
    .createTable('passkey_challenges')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('challenge_hash', 'text', (col) => col.notNull())
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('user_id', 'integer', (col) => col.references('users.id').onDelete('cascade'))
    .addColumn('user_handle', 'text')
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('expires_at', timestamp, (col) => col.notNull())
    .execute()
  await db.schema.createIndex('passkey_challenges_hash_key').unique().on('passkey_challenges').column('challenge_hash').execute()
  await db.schema.createIndex('passkey_challenges_user_id_idx').on('passkey_challenges').column('user_id').execute()
  await db.schema.createIndex('passkey_challenges_expires_at_idx').on('passkey_challenges').column('expires_at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('passkey_challenges').execute()
  await db.schema.dropTable('passkeys').execute()
}
