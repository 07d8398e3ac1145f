import { type Kysely, PostgresAdapter } from 'kysely'

/**
 * Issue 18, what a person can see of their account:
 * - sessions gain the client that started them (User-Agent, truncated; address) and when they were last used
 *   (set at sign-in and at every refresh, never per authenticated request).
 * - security_activity: one row per security event of an account, kept for ACTIVITY_RETENTION; read newest first
 *   by (user_id, id), purged by `at`.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const timestamp = pg ? 'timestamptz' : 'text'
  // One column per statement: SQLite's ALTER TABLE adds one at a time.
  await db.schema.alterTable('sessions').addColumn('user_agent', 'text').execute()
  await db.schema.alterTable('sessions').addColumn('client_address', 'text').execute()
  await db.schema.alterTable('sessions').addColumn('last_used_at', timestamp).execute()
  await db.schema
    .createTable('security_activity')
    .addColumn('id', pg ? 'bigint' : 'integer', (col) => (pg ? col.primaryKey().generatedByDefaultAsIdentity() : col.primaryKey().autoIncrement()))
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('at', timestamp, (col) => col.notNull())
    .addColumn('address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('details', 'text')
    .execute()
  await db.schema.createIndex('security_activity_user_id_id_idx').on('security_activity').columns(['user_id', 'id']).execute()
  await db.schema.createIndex('security_activity_at_idx').on('security_activity').column('at').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('security_activity').execute()
  await db.schema.alterTable('sessions').dropColumn('last_used_at').execute()
  await db.schema.alterTable('sessions').dropColumn('client_address').execute()
  await db.schema.alterTable('sessions').dropColumn('user_agent').execute()
}
