import type { Generated, Insertable, Selectable } from 'kysely'

export interface PasskeysTable {
  id: Generated<number>
  user_id: number
  /** The credential id, base64url. */
  credential_id: string
  /** The COSE public key, base64url. */
  public_key: string
  /** The highest signature counter seen (0: the authenticator keeps none). */
  counter: number
  /** JSON array of the transports the browser reported (usb, internal, hybrid, …). */
  transports: string
  /** base64url of the WebAuthn user.id the authenticator stores; random, one per user. */
  user_handle: string
  name: string
  backed_up: number | boolean
  created_at: string | Date
  last_used_at: string | Date | null
}

export type ChallengePurpose = 'register' | 'sign-in' | 'second-factor'

export interface PasskeyChallengesTable {
  id: string
  /** SHA-256 (hex) of the challenge as the options carried it (base64url). */
  challenge_hash: string
  purpose: ChallengePurpose
  /** The user it was made for; null for a passwordless sign-in, where nobody is known yet. */
  user_id: number | null
  /** Registration: the WebAuthn user.id the options carried, stored with the passkey it makes. */
  user_handle: string | null
  created_at: string | Date
  expires_at: string | Date
}

export type PasskeyRow = Selectable<PasskeysTable>
export type NewPasskeyRow = Insertable<PasskeysTable>
export type PasskeyChallengeRow = Selectable<PasskeyChallengesTable>
