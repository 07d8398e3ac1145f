import type { FastifyBaseLogger } from 'fastify'
import type { Db } from '../db/database.js'
import { purgeInBatches } from '../jobs/batched-purge.js'
import { toIso } from '../users/users.schemas.js'
import type { ActivityRepository } from './activity.repository.js'
import type { ActivityRow } from './activity.table.js'
import { type ClientInfo, deviceLabel, maskAddress } from './client.js'

/**
 * Every kind of entry. The last six are recorded by other features (password reset, second factors, passkeys)
 * through `ActivityLog.record`, in the transaction of their change.
 */
export const ACTIVITY_TYPES = [
  'sign_in',
  'sign_in_failed',
  'sign_out',
  'sign_out_all',
  'session_revoked',
  'password_changed',
  'email_changed',
  'account_locked',
  'password_reset',
  'mfa_enabled',
  'mfa_disabled',
  'recovery_codes_regenerated',
  'passkey_added',
  'passkey_removed',
] as const

export type ActivityType = (typeof ACTIVITY_TYPES)[number]

/** A few flat facts about the event ({new_device: true}, {by: <staff user id>}); never a secret or an email address. */
export type ActivityDetails = Record<string, string | number | boolean>

export interface ActivityEntry {
  userId: number
  type: ActivityType
  /** The request's client; absent for what no request caused. */
  client?: ClientInfo
  details?: ActivityDetails
  /** Defaults to now. */
  at?: string
}

type Executor = Db['kysely']

/** Lock entries remembered per process before expired ones are swept. */
const LOCK_MEMO_SWEEP_AT = 10_000

/**
 * The security activity of accounts: recorded with time, address and device, read newest first, purged after
 * the retention. `record` is the API other features use.
 */
export class ActivityLog {
  /** userId → when its current lockout ends (ms): a refused attempt inside it writes nothing. */
  private readonly lockedUntil = new Map<number, number>()
  /** Detached writes not yet done: `drain` waits for them before the database closes. */
  private readonly pending = new Set<Promise<unknown>>()

  constructor(
    private readonly deps: { db: Db; repository: ActivityRepository; retentionSeconds: number; log: FastifyBaseLogger },
  ) {}

  /** Records one entry through `executor`: pass the transaction of the change it records, so both commit or neither. */
  async record(executor: Executor, entry: ActivityEntry): Promise<void> {
    await this.deps.repository.insert(executor, toRow(entry))
  }

  /**
   * Whether this client signed in to the account before, by its address and user agent as recorded: a client
   * that keeps no device proof (a script, a browser that drops cookies) is not a new device each time.
   */
  signedInBefore(executor: Executor, userId: number, client: ClientInfo): Promise<boolean> {
    return this.deps.repository.signedInFrom(executor, userId, client.address ?? null, client.userAgent ?? null)
  }

  /**
   * Records an entry once the current response has gone out (setImmediate), on its own connection. For what
   * must not change the answer or its timing — a failed sign-in on an existing account answers exactly as one
   * on an unknown login. A failure to record is logged, never reported to the client.
   */
  recordDetached(entry: ActivityEntry): void {
    const at = entry.at ?? new Date().toISOString()
    this.detached(entry.type, () => this.record(this.deps.db.kysely, { ...entry, at }))
  }

  /**
   * The sign-in limiter refused the account: recorded once per lockout, however many attempts the lockout
   * refuses — this process remembers the lockout's end and writes nothing until then; another instance writes
   * only when no entry of the last window exists (one statement).
   */
  accountLocked(lock: { userId: number; address: string; retryAfterSeconds: number; windowSeconds: number }): void {
    const now = Date.now()
    if ((this.lockedUntil.get(lock.userId) ?? 0) > now) return
    if (this.lockedUntil.size >= LOCK_MEMO_SWEEP_AT) {
      for (const [userId, until] of this.lockedUntil) if (until <= now) this.lockedUntil.delete(userId)
    }
    this.lockedUntil.set(lock.userId, now + lock.retryAfterSeconds * 1000)
    const since = new Date(now - lock.windowSeconds * 1000).toISOString()
    const row = toRow({ userId: lock.userId, type: 'account_locked', client: { address: lock.address }, at: new Date(now).toISOString() })
    this.detached('account_locked', () => this.deps.repository.insertUnlessSince(this.deps.db.kysely, row, since))
  }

  /** Resolves once every detached write started so far has finished (the app's preClose). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /** Runs `write` after the current response has gone out (setImmediate); a failure is logged, never thrown. */
  private detached(type: ActivityType, write: () => Promise<unknown>): void {
    const done = new Promise<void>((resolve) => setImmediate(resolve))
      .then(write)
      .catch((error: unknown) => this.deps.log.warn({ err: error, type }, 'could not record security activity'))
      .finally(() => this.pending.delete(done))
    this.pending.add(done)
  }

  /** One page of a user's entries, newest first; `more` when older ones exist. */
  async page(userId: number, limit: number, before?: number) {
    const rows = await this.deps.repository.page(this.deps.db.kysely, userId, limit + 1, before)
    return { results: rows.slice(0, limit).map(presentActivity), more: rows.length > limit }
  }

  /** Deletes the entries older than the retention, in batches; returns how many. */
  purge(now = new Date()): Promise<number> {
    const before = new Date(now.getTime() - this.deps.retentionSeconds * 1000).toISOString()
    return purgeInBatches((limit) => this.deps.repository.deleteOlderThanBatch(before, limit))
  }
}

function toRow(entry: ActivityEntry) {
  return {
    user_id: entry.userId,
    type: entry.type,
    at: entry.at ?? new Date().toISOString(),
    address: entry.client?.address ?? null,
    user_agent: entry.client?.userAgent ?? null,
    details: entry.details && Object.keys(entry.details).length > 0 ? JSON.stringify(entry.details) : null,
  }
}

/** The API shape of an entry: the address masked, the device labelled, the details as an object. */
export function presentActivity(row: ActivityRow) {
  return {
    id: Number(row.id),
    type: row.type as ActivityType,
    at: toIso(row.at) as string,
    address: maskAddress(row.address),
    device: deviceLabel(row.user_agent),
    details: row.details ? (JSON.parse(row.details) as ActivityDetails) : {},
  }
}
