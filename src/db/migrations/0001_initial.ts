import { type Kysely, PostgresAdapter } from 'kysely'

// Migrations take Kysely<any> and import no app code, so they never change meaning later.
export async function up(db: Kysely<any>): Promise<void> {
  const pg = db.getExecutor().adapter instanceof PostgresAdapter
  const bool = pg ? 'boolean' : 'integer'
  const timestamp = pg ? 'timestamptz' : 'text'

  await db.schema
    .createTable('users')
    .addColumn('id', 'integer', (col) =>
      pg ? col.primaryKey().generatedByDefaultAsIdentity() : col.primaryKey().autoIncrement(),
    )
    .addColumn('username', 'text', (col) => col.notNull())
    // Lower-cased copies carry the case-insensitive uniqueness on both dialects.
    .addColumn('username_lower', 'text', (col) => col.notNull())
    .addColumn('email', 'text', (col) => col.notNull())
    .addColumn('email_lower', 'text', (col) => col.notNull())
    .addColumn('password_hash', 'text', (col) => col.notNull())
    .addColumn('first_name', 'text', (col) => col.notNull().defaultTo(''))
    .addColumn('last_name', 'text', (col) => col.notNull().defaultTo(''))
    .addColumn('number_phone', 'text', (col) => col.notNull().defaultTo(''))
    .addColumn('avatar', 'text')
    .addColumn('date_joined', timestamp, (col) => col.notNull())
    .addColumn('last_login', timestamp)
    .addColumn('is_active', bool, (col) => col.notNull())
    .addColumn('is_staff', bool, (col) => col.notNull())
    .addColumn('is_superuser', bool, (col) => col.notNull())
    .addColumn('version', 'integer', (col) => col.notNull().defaultTo(1))
    .execute()
  await db.schema.createIndex('users_username_lower_key').unique().on('users').column('username_lower').execute()
  await db.schema.createIndex('users_email_lower_key').unique().on('users').column('email_lower').execute()

  await db.schema
    .createTable('sessions')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('user_id', 'integer', (col) => col.notNull().references('users.id').onDelete('cascade'))
    .addColumn('refresh_hash', 'text', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .addColumn('expires_at', timestamp, (col) => col.notNull())
    .execute()
  await db.schema.createIndex('sessions_user_id_idx').on('sessions').column('user_id').execute()

  // Avatar bytes for MEDIA_STORAGE=db; unused with the fs driver.
  await db.schema
    .createTable('avatars')
    .addColumn('name', 'text', (col) => col.primaryKey())
    .addColumn('content', pg ? 'bytea' : 'blob', (col) => col.notNull())
    .addColumn('created_at', timestamp, (col) => col.notNull())
    .execute()
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('avatars').execute()
  await db.schema.dropTable('sessions').execute()
  await db.schema.dropTable('users').execute()
}
