import { type Kysely, PostgresAdapter, sql } from 'kysely'

/**
 * Second factors (issue 18):
 * - mfa_totp: one TOTP factor per user, its secret encrypted (AES-256-GCM), pending until confirmed_at is set;
 *   last_step is the RFC 6238 time step of the last accepted code, so a code is accepted once only.
 * - mfa_recovery_codes: SHA-256 of each unused recovery code; a used one is deleted.
 * - mfa_challenges: SHA-256 of each pending sign-in challenge (password right, second factor still to come).
 * - sessions.amr: how the session signed in (RFC 8176 values, space-separated), re-issued on every refresh;
 *   sessions.second_factor_at: when a second factor was last proven in it (step-up).
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const timestamp = pg ? 'timestamptz' : 'text'
  await db.schema
    .createTable('mfa_totp')
    .addColumn('user_id', 'integer', (col) => col.primaryKey().references('users.id').onDelete('cascade'))
    .addColumn('secret', 'text', (col) => col.notNull())
    .addColumn('last_step', 'bigint', (col) => col.notNull().defaultTo(0))
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('confirmed_at', timestamp)
    .execute()
  await db.schema
    .createTable('mfa_recovery_codes')
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('code_hash', 'text', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addPrimaryKeyConstraint('mfa_recovery_codes_pkey', ['user_id', 'code_hash'])
    .execute()
  await db.schema
    .createTable('mfa_challenges')
    .addColumn('id_hash', 'text', (col) => col.primaryKey())
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('expires_at', timestamp, (col) => col.notNull())
    .execute()
  await db.schema.createIndex('mfa_challenges_expires_at_idx').on('mfa_challenges').column('expires_at').execute()
  await db.schema.createIndex('mfa_challenges_user_id_idx').on('mfa_challenges').column('user_id').execute()
  // One column per statement: SQLite's ALTER TABLE adds one at a time.
  await db.schema.alterTable('sessions').addColumn('amr', 'text', (col) => col.notNull().defaultTo(sql`'pwd'`)).execute()
  await db.schema.alterTable('sessions').addColumn('second_factor_at', timestamp).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('second_factor_at').execute()
  await db.schema.alterTable('sessions').dropColumn('amr').execute()
  await db.schema.dropTable('mfa_challenges').execute()
  await db.schema.dropTable('mfa_recovery_codes').execute()
  await db.schema.dropTable('mfa_totp').execute()
}
