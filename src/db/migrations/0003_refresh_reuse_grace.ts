import { type Kysely, PostgresAdapter } from 'kysely'

// A refresh token rotated out a moment ago is recognised (its hash, and when it was rotated), so a
// parallel or retried refresh gets the same successor instead of ending the session (issue 12 §5).
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  // One column per statement: SQLite's ALTER TABLE adds one at a time.
  await db.schema.alterTable('sessions').addColumn('previous_hash', 'text').execute()
  await db.schema.alterTable('sessions').addColumn('rotated_at', pg ? 'timestamptz' : 'text').execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('rotated_at').execute()
  await db.schema.alterTable('sessions').dropColumn('previous_hash').execute()
}
