import type { Generated, Insertable, Selectable } from 'kysely'

export interface SessionsTable {
  /** Random, unguessable; also the first half of the refresh token. */
  id: string
  user_id: number
  /** SHA-256 of the current refresh secret; the secret itself is never stored. */
  refresh_hash: string
  /** SHA-256 of the secret the last rotation replaced: a repeat within the grace gets the same successor. */
  previous_hash: string | null
  /** When `refresh_hash` replaced `previous_hash`. */
  rotated_at: string | Date | null
  created_at: string | Date
  expires_at: string | Date
  /** How the session signed in: RFC 8176 `amr` values, space-separated ('pwd', 'pwd otp', 'hwk user'). */
  amr: Generated<string>
  /** When a second factor was last proven in this session (sign-in or step-up), or null. */
  second_factor_at: string | Date | null
  /** When the password was last proven in this session after its sign-in (step-up without a second factor), or null. */
  reauthenticated_at?: string | Date | null
  /** The User-Agent that signed in, cut to USER_AGENT_MAX_LENGTH; null for sessions older than migration 0010. */
  user_agent?: string | null
  /** The client address that signed in (request.ip), stored whole; shown masked. */
  client_address?: string | null
  /** Set at sign-in and at every refresh, never per authenticated request: stale by at most ACCESS_TOKEN_TTL. */
  last_used_at?: string | Date | null
}

export type SessionRow = Selectable<SessionsTable>
export type NewSessionRow = Insertable<SessionsTable>
