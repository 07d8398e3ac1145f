import type { Insertable, Selectable } from 'kysely'

export interface MfaTotpTable {
  user_id: number
  /** `v1.<base64url(iv ‖ tag ‖ ciphertext)>`: the base32 secret under AES-256-GCM (see totp.ts). */
  secret: string
  /** RFC 6238 time step of the last accepted code; only a later one is accepted (replay). */
  last_step: number
  created_at: string | Date
  /** Null while enrolment waits for its first code; the factor is active once set. */
  confirmed_at: string | Date | null
}

export interface MfaRecoveryCodesTable {
  user_id: number
  /** SHA-256 (hex) of the normalised code; the code itself is shown once and never stored. */
  code_hash: string
  created_at: string | Date
}

export interface MfaChallengesTable {
  /** SHA-256 (hex) of the challenge handed to the client. */
  id_hash: string
  user_id: number
  created_at: string | Date
  expires_at: string | Date
}

export type MfaTotpRow = Selectable<MfaTotpTable>
export type NewMfaTotpRow = Insertable<MfaTotpTable>
export type MfaChallengeRow = Selectable<MfaChallengesTable>
