import type { Generated, Insertable, Selectable } from 'kysely'

type DbTimestamp = string | Date

/** One message to deliver (migration 0007). Pending while neither sent_at nor gave_up_at is set. */
export interface MailOutboxTable {
  id: Generated<number>
  /** The Message-ID header, stable across attempts, so a receiver can drop a repeat. */
  message_id: string
  to_address: string
  subject: string
  /** Emptied once the message is sent: a link in it must not outlive its delivery in the database. */
  text_body: string
  html_body: string
  created_at: DbTimestamp
  /** When the row is due; moved forward by a claim (the lease) and by each failure (the backoff). */
  next_attempt_at: DbTimestamp
  attempts: Generated<number>
  last_error: string | null
  sent_at: DbTimestamp | null
  gave_up_at: DbTimestamp | null
}

export type OutboxRow = Selectable<MailOutboxTable>
export type NewOutboxRow = Insertable<MailOutboxTable>
