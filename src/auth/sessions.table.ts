import type { Selectable } from 'kysely'

export interface SessionsTable {
  /** Random, unguessable; also the first half of the refresh token. */
  id: string
  user_id: number
  /** SHA-256 of the current refresh secret; the secret itself is never stored. */
  refresh_hash: string
  created_at: string | Date
  expires_at: string | Date
}

export type SessionRow = Selectable<SessionsTable>
