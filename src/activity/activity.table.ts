import type { Generated, Insertable, Selectable } from 'kysely'

export interface SecurityActivityTable {
  /** Increasing: the keyset the listing pages by (newest first). */
  id: Generated<number>
  user_id: number
  /** One of ACTIVITY_TYPES. */
  type: string
  at: string | Date
  /** The client address as the request came (request.ip), stored whole; every response shows it masked. */
  address: string | null
  /** Cut to USER_AGENT_MAX_LENGTH; the device label is derived from it when read. */
  user_agent: string | null
  /** A small JSON object (e.g. {"new_device":true}); null when there is nothing to add. */
  details: string | null
}

export type ActivityRow = Selectable<SecurityActivityTable>
export type NewActivityRow = Insertable<SecurityActivityTable>
