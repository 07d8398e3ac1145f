import { type Kysely, PostgresAdapter, sql } from 'kysely'

/**
 * Issue 14: mail as data, and the tokens mail carries.
 * - users.email_verified: false for every existing account (nobody has proved an address yet).
 * - mail_outbox: one row per message, written in the transaction of the change that causes it; the sender
 *   claims due rows by moving next_attempt_at forward (the lease), and marks them sent or given up.
 * - account_tokens: password-reset and email-verification tokens, stored as SHA-256 of the secret only;
 *   `binding` is what the token is void without (the password hash's fingerprint, or the address it was sent to).
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const timestamp = pg ? 'timestamptz' : 'text'
  await db.schema
    .alterTable('users')
    .addColumn('email_verified', pg ? 'boolean' : 'integer', (col) => col.notNull().defaultTo(pg ? sql`false` : 0))
    .execute()

  await db.schema
    .createTable('mail_outbox')
    .addColumn('id', 'integer', (col) => (pg ? col.primaryKey().generatedByDefaultAsIdentity() : col.primaryKey().autoIncrement()))
    .addColumn('message_id', 'text', (col) => col.notNull().unique())
    .addColumn('to_address', 'text', (col) => col.notNull())
    .addColumn('subject', 'text', (col) => col.notNull())
    .addColumn('text_body', 'text', (col) => col.notNull())
    .addColumn('html_body', 'text', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('next_attempt_at', timestamp, (col) => col.notNull())
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('sent_at', timestamp)
    .addColumn('gave_up_at', timestamp)
    .execute()
  // Only the rows still to send, in the order the sender takes them.
  await db.schema
    .createIndex('mail_outbox_due_idx')
    .on('mail_outbox')
    .columns(['next_attempt_at', 'id'])
    .where(sql.ref('sent_at'), 'is', null)
    .where(sql.ref('gave_up_at'), 'is', null)
    .execute()

  await db.schema
    .createTable('account_tokens')
    .addColumn('token_hash', 'text', (col) => col.primaryKey())
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('binding', 'text', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('expires_at', timestamp, (col) => col.notNull())
    .addColumn('used_at', timestamp)
    .execute()
  await db.schema.createIndex('account_tokens_user_id_idx').on('account_tokens').columns(['user_id', 'purpose']).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('account_tokens').execute()
  await db.schema.dropTable('mail_outbox').execute()
  await db.schema.alterTable('users').dropColumn('email_verified').execute()
}
