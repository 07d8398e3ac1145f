import { type Kysely, sql } from 'kysely'

/**
 * The periodic purges (issue: tables that grew for ever) find what they delete by these columns; without an index
 * each batch would scan the whole table. The challenge tables have their expires_at indexes since 0008/0009.
 * - account_tokens: by expires_at (expired tokens), and used_at where set (used ones).
 * - mail_outbox: by sent_at where set, and by gave_up_at where set. Partial, like mail_outbox_due_idx: a pending
 *   row is in neither, and both dialects use such an index for `sent_at < ?` (the comparison implies NOT NULL).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('account_tokens_expires_at_idx').on('account_tokens').column('expires_at').execute()
  await db.schema.createIndex('account_tokens_used_at_idx').on('account_tokens').column('used_at').where(sql.ref('used_at'), 'is not', null).execute()
  await db.schema.createIndex('mail_outbox_sent_at_idx').on('mail_outbox').column('sent_at').where(sql.ref('sent_at'), 'is not', null).execute()
  await db.schema.createIndex('mail_outbox_gave_up_at_idx').on('mail_outbox').column('gave_up_at').where(sql.ref('gave_up_at'), 'is not', null).execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('mail_outbox_gave_up_at_idx').execute()
  await db.schema.dropIndex('mail_outbox_sent_at_idx').execute()
  await db.schema.dropIndex('account_tokens_used_at_idx').execute()
  await db.schema.dropIndex('account_tokens_expires_at_idx').execute()
}
