import { randomUUID } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import type { Database, Dialect } from '../db/database.js'
import { deleteBatchBefore } from '../jobs/batched-purge.js'
import type { OutboxRow } from './mail.table.js'

type Executor = Kysely<Database>

/** A message as the templates make it. */
export interface Message {
  to: string
  subject: string
  text: string
  html: string
}

/** The outbox table: written by the services inside their transactions, read and updated by the sender. */
export class OutboxRepository {
  constructor(
    private readonly dialect: Dialect,
    /** The domain of Message-IDs (MAIL_FROM's). */
    private readonly messageIdDomain: string,
  ) {}

  /** Records a message in the caller's transaction; it is due at once. Returns its Message-ID. */
  async record(executor: Executor, message: Message, now = new Date()): Promise<string> {
    const messageId = `<${randomUUID()}@${this.messageIdDomain}>`
    const at = now.toISOString()
    await executor
      .insertInto('mail_outbox')
      .values({
        message_id: messageId,
        to_address: message.to,
        subject: message.subject,
        text_body: message.text,
        html_body: message.html,
        created_at: at,
        next_attempt_at: at,
      })
      .execute()
    return messageId
  }

  /**
   * Takes up to `limit` due rows for this sender: one UPDATE moves their next_attempt_at to the lease's end
   * and counts the attempt, so no other sender (instance, CLI) takes them until the lease runs out (a sender
   * that crashed mid-send). PostgreSQL skips rows another claim holds locked instead of waiting for them.
   */
  async claim(executor: Executor, now: Date, leaseMs: number, limit: number): Promise<OutboxRow[]> {
    const due = executor
      .selectFrom('mail_outbox')
      .select('id')
      .where('sent_at', 'is', null)
      .where('gave_up_at', 'is', null)
      .where('next_attempt_at', '<=', now.toISOString())
      .orderBy('next_attempt_at')
      .orderBy('id')
      .limit(limit)
      .$if(this.dialect === 'postgres', (query) => query.forUpdate().skipLocked())
    return executor
      .updateTable('mail_outbox')
      .set({ next_attempt_at: new Date(now.getTime() + leaseMs).toISOString(), attempts: sql`attempts + 1` })
      .where('id', 'in', due)
      .returningAll()
      .execute()
  }

  /** Gives claimed rows back untried (a sender stopping): due at once, the attempt not counted. */
  async release(executor: Executor, ids: number[], now = new Date()): Promise<void> {
    if (ids.length === 0) return
    await executor
      .updateTable('mail_outbox')
      .set({ next_attempt_at: now.toISOString(), attempts: sql`attempts - 1` })
      .where('id', 'in', ids)
      .where('sent_at', 'is', null)
      .execute()
  }

  /** Delivered: the bodies (which may hold a live link) are emptied, the row stays as a record. */
  async markSent(executor: Executor, id: number, now = new Date()): Promise<void> {
    await executor.updateTable('mail_outbox').set({ sent_at: now.toISOString(), text_body: '', html_body: '', last_error: null }).where('id', '=', id).execute()
  }

  /** A failed attempt: due again at `retryAt`, or never again when `retryAt` is undefined (given up). */
  async markFailed(executor: Executor, id: number, error: string, retryAt: Date | undefined, now = new Date()): Promise<void> {
    await executor
      .updateTable('mail_outbox')
      .set(retryAt ? { last_error: error, next_attempt_at: retryAt.toISOString() } : { last_error: error, gave_up_at: now.toISOString() })
      .where('id', '=', id)
      .execute()
  }

  /** Deletes up to `limit` rows sent before `before`; returns how many. One short statement, by mail_outbox_sent_at_idx. */
  deleteSentBatch(executor: Executor, before: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'mail_outbox', key: 'id', column: 'sent_at' }, before, limit)
  }

  /** Deletes up to `limit` rows given up before `before`; returns how many. One short statement, by mail_outbox_gave_up_at_idx. */
  deleteGivenUpBatch(executor: Executor, before: string, limit: number): Promise<number> {
    return deleteBatchBefore(executor, { table: 'mail_outbox', key: 'id', column: 'gave_up_at' }, before, limit)
  }
}
