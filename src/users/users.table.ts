import type { Generated, Insertable, Selectable, Updateable } from 'kysely'

/** SQLite stores booleans as 0/1 and timestamps as ISO text; PostgreSQL as boolean/timestamptz. */
type DbBoolean = number | boolean
type DbTimestamp = string | Date

export interface UsersTable {
  id: Generated<number>
  username: string
  username_lower: string
  /** lookalikes.ts `skeleton(username)`, unique: no two usernames that look alike. Null only for an account that already looked like an older one when the column was added (migration 0004). */
  username_skeleton: string | null
  email: string
  email_lower: string
  password_hash: string
  first_name: string
  last_name: string
  number_phone: string
  /** Stored file name, not a URL. */
  avatar: string | null
  date_joined: DbTimestamp
  last_login: DbTimestamp | null
  is_active: DbBoolean
  is_staff: DbBoolean
  is_superuser: DbBoolean
  /** The address has been proved by a verification link since it was last set (issue 14). */
  email_verified: Generated<DbBoolean>
  /** Bumped on every write; the ETag. */
  version: Generated<number>
}

export type UserRow = Selectable<UsersTable>
export type NewUserRow = Insertable<UsersTable>
export type UserRowUpdate = Updateable<UsersTable>
