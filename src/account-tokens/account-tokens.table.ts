import type { Selectable } from 'kysely'

type DbTimestamp = string | Date

export type TokenPurpose = 'password_reset' | 'email_verification'

/** A single-use secret sent by mail (migration 0007); only its SHA-256 is stored. */
export interface AccountTokensTable {
  token_hash: string
  purpose: TokenPurpose
  user_id: number
  /** password_reset: fingerprint of the password hash at issue; email_verification: the address, as compared. */
  binding: string
  created_at: DbTimestamp
  expires_at: DbTimestamp
  used_at: DbTimestamp | null
}

export type AccountTokenRow = Selectable<AccountTokensTable>
