import type { FastifyBaseLogger } from 'fastify'
import type { MailSettings } from '../config.js'
import type { Db } from '../db/database.js'
import { isDatabaseUnavailable } from '../db/unavailable.js'
import { PURGE_BATCH_SIZE, purgeInBatches } from '../jobs/batched-purge.js'
import type { OutboxRow } from './mail.table.js'
import { maskAddress } from './mask.js'
import type { OutboxRepository } from './outbox.repository.js'
import type { MailTransport } from './transports.js'

/** A claimed row is another sender's again after this long: well past the transport's own timeouts (transports.ts). */
export const LEASE_MS = 2 * 60_000
const BATCH_SIZE = 20
const MAX_BACKOFF_MS = 60 * 60_000
/** A sent row (recipient, subject, no bodies) is kept this long: enough to answer "did my mail go out?". */
export const SENT_KEPT_MS = 7 * 86_400_000
/** A given-up row (with its last_error) is kept longer, for an operator to see why and to resend. */
export const GIVEN_UP_KEPT_MS = 30 * 86_400_000

export interface MailSenderDeps {
  db: Db
  outbox: OutboxRepository
  transport: MailTransport
  settings: Pick<MailSettings, 'maxAttempts' | 'retryBaseMs'>
  log: FastifyBaseLogger
}

/** The wait before attempt `attempts + 1`: the base, doubled for each attempt made, at most an hour. */
export function backoffMs(attempts: number, baseMs: number): number {
  return Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempts - 1))
}

/**
 * Delivers the outbox, never on a request's path: woken right after a commit in this process, and on an
 * interval for rows others recorded or that are due for a retry. One run at a time per sender; several
 * senders (instances, a CLI command) share the table safely through claims (OutboxRepository.claim).
 *
 * Delivery is at least once: a crash after the transport accepted a message and before the row is marked
 * sent repeats it when the lease ends, with the same Message-ID (and the same .eml file name).
 */
export class MailSender {
  private running: Promise<void> | undefined
  private again = false
  private stopped = false
  private timer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private retryAt = Number.POSITIVE_INFINITY

  constructor(private readonly deps: MailSenderDeps) {}

  /** Starts the interval; returns the stop function (for preClose): no new run, the current one finished, the transport closed. */
  start(pollIntervalMs: number): () => Promise<void> {
    this.timer = setInterval(() => this.wake(), pollIntervalMs)
    this.timer.unref()
    this.wake()
    return () => this.stop()
  }

  /** Asks for a run now (after a commit that recorded mail); a run in progress makes one more pass. */
  wake(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.runUntilIdle().finally(() => {
      this.running = undefined
    })
  }

  /** Delivers every due message (also used by the CLI); resolves when none is left due. Returns how many were sent. */
  async runOnce(): Promise<number> {
    let sent = 0
    for (;;) {
      const rows = await this.deps.outbox.claim(this.deps.db.kysely, new Date(), LEASE_MS, BATCH_SIZE)
      for (const [index, row] of rows.entries()) {
        if (this.stopped) {
          // Stopping: the rows not yet tried are given back at once, for another instance (or the next start).
          await this.deps.outbox.release(this.deps.db.kysely, rows.slice(index).map(({ id }) => id))
          return sent
        }
        if (await this.deliver(row)) sent += 1
      }
      if (rows.length < BATCH_SIZE || this.stopped) return sent
    }
  }

  /**
   * Deletes the rows sent more than SENT_KEPT_MS and given up more than GIVEN_UP_KEPT_MS before `now`, in
   * batches; returns how many. Pending rows are never touched.
   */
  async purge(now = new Date(), batchSize = PURGE_BATCH_SIZE): Promise<number> {
    const { db, outbox } = this.deps
    const sentBefore = new Date(now.getTime() - SENT_KEPT_MS).toISOString()
    const gaveUpBefore = new Date(now.getTime() - GIVEN_UP_KEPT_MS).toISOString()
    const sent = await purgeInBatches((limit) => outbox.deleteSentBatch(db.kysely, sentBefore, limit), batchSize)
    return sent + (await purgeInBatches((limit) => outbox.deleteGivenUpBatch(db.kysely, gaveUpBefore, limit), batchSize))
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.retryTimer)
    await this.running
    await this.deps.transport.close()
  }

  /** A retry due before the next poll gets a timer of its own (the earliest one wins). */
  private wakeAt(at: number): void {
    if (this.stopped || at >= this.retryAt) return
    clearTimeout(this.retryTimer)
    this.retryAt = at
    this.retryTimer = setTimeout(() => {
      this.retryAt = Number.POSITIVE_INFINITY
      this.wake()
    }, Math.max(0, at - Date.now()))
    this.retryTimer.unref()
  }

  private async runUntilIdle(): Promise<void> {
    do {
      this.again = false
      try {
        await this.runOnce()
      } catch (error) {
        // The rows wait, the next interval tries again. An unreachable database is the health check's to report
        // (two lines per outage, health/outages.ts), not a warning per run.
        if (isDatabaseUnavailable(error)) this.deps.log.debug({ err: error }, 'mail sender could not reach the database')
        else this.deps.log.warn({ err: error }, 'mail sender could not read the outbox')
        return
      }
    } while (this.again && !this.stopped)
  }

  private async deliver(row: OutboxRow): Promise<boolean> {
    const { db, outbox, transport, settings, log } = this.deps
    const to = maskAddress(row.to_address)
    try {
      await transport.send({
        messageId: row.message_id,
        to: row.to_address,
        subject: row.subject,
        text: row.text_body,
        html: row.html_body,
        date: new Date(row.created_at),
      })
    } catch (error) {
      const reason = String((error as Error)?.message ?? error).slice(0, 500)
      const giveUp = row.attempts >= settings.maxAttempts
      const retryAt = giveUp ? undefined : new Date(Date.now() + backoffMs(row.attempts, settings.retryBaseMs))
      const context = { id: row.id, to, attempts: row.attempts, transport: transport.kind, reason }
      if (giveUp) log.warn(context, 'mail not delivered: gave up after the last attempt (the row is kept)')
      else log.warn({ ...context, retryAt }, 'mail not delivered: will retry')
      await outbox.markFailed(db.kysely, row.id, reason, retryAt).catch((markError: unknown) => log.warn({ err: markError, id: row.id }, 'could not record a mail failure'))
      if (retryAt) this.wakeAt(retryAt.getTime())
      return false
    }
    try {
      await outbox.markSent(db.kysely, row.id)
    } catch (error) {
      // Delivered but not marked: sent again with the same Message-ID when the lease ends (at least once).
      log.warn({ err: error, id: row.id, to }, 'mail delivered but not marked sent; it may be delivered again')
    }
    if (transport.kind === 'smtp') log.info({ id: row.id, to, attempts: row.attempts }, 'mail sent')
    return true
  }
}
