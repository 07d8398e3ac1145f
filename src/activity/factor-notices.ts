import type { Db } from '../db/database.js'
import type { OutboxRepository } from '../mail/outbox.repository.js'
import { type FactorChange, factorChangedMail } from '../mail/templates.js'
import type { UserRow } from '../users/users.table.js'
import type { ActivityLog } from './activity.service.js'
import { type ClientInfo, deviceLabel, maskAddress } from './client.js'

/**
 * A second factor or passkey added, removed or renewed: the activity entry and the mail notice to the account's
 * address, both recorded in the change's transaction (so a refused change records neither); the sender
 * delivers after the commit.
 */
export class FactorNotices {
  constructor(private readonly deps: { activity: ActivityLog; outbox: OutboxRepository; wake: () => void }) {}

  /**
   * In the caller's transaction: the entry (with the client) and the notice (device and masked address only).
   * `'operator'` is a change made from the command line: no client to record, and the notice says who did it
   * rather than "Unknown device".
   */
  async record(
    executor: Db['kysely'],
    user: UserRow,
    change: FactorChange,
    client: ClientInfo | 'operator',
    details?: Record<string, string | number | boolean>,
  ): Promise<void> {
    const request = client === 'operator' ? undefined : client
    await this.deps.activity.record(executor, { userId: user.id, type: change, client: request, details })
    const from = request ? { device: deviceLabel(request.userAgent), address: maskAddress(request.address) } : 'operator'
    await this.deps.outbox.record(executor, factorChangedMail(user.email, user.username, change, from))
  }

  /** After the commit: the sender delivers now rather than at its next poll. */
  committed(): void {
    this.deps.wake()
  }
}
