import type { Db } from '../db/database.js'
import type { OutboxRepository } from '../mail/outbox.repository.js'
import { newDeviceSignInMail } from '../mail/templates.js'
import type { UserRow } from '../users/users.table.js'
import { type ClientInfo, deviceLabel, maskAddress } from './client.js'

/**
 * The mail telling a person their account was signed in to from a device never seen before (no valid device
 * proof): recorded in the sign-in's transaction through the outbox, delivered by its sender after the commit.
 */
export class NewDeviceNotices {
  constructor(private readonly deps: { outbox: OutboxRepository; wake: () => void }) {}

  /** Records the notice in the caller's transaction: the device and the masked address, never the full address. */
  async record(executor: Db['kysely'], user: UserRow, client: ClientInfo, at: string): Promise<void> {
    const when = at.replace('T', ' ').replace(/\.\d+Z$/, '')
    const sign = { device: deviceLabel(client.userAgent), address: maskAddress(client.address), at: when }
    await this.deps.outbox.record(executor, newDeviceSignInMail(user.email, user.username, sign), new Date(at))
  }

  /** After the commit: the sender delivers now rather than at its next poll. */
  committed(): void {
    this.deps.wake()
  }
}
