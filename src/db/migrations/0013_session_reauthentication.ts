import { type Kysely, PostgresAdapter } from 'kysely'

/**
 * Step-up for accounts without a second factor (src/mfa/step-up.ts): sessions.reauthenticated_at is when the
 * password was last proven in the session after its sign-in (POST /api/users/me/reauthenticate, or
 * current_password sent with the operation). Null until then; the sign-in's own time is created_at.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  await db.schema
    .alterTable('sessions')
    .addColumn('reauthenticated_at', pg ? 'timestamptz' : 'text')
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('reauthenticated_at').execute()
}
