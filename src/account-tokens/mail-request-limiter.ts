import { addressBucket, type FailureStore } from '../auth/sign-in-limiter.js'
import type { MailRequestLimits } from '../config.js'
import { AppError } from '../errors.js'

/**
 * How many mails a client may cause (password resets, new verification links) per email address and per client
 * address, in the sign-in limits' store (Redis when configured, so shared by every instance). One atomic reserve
 * counts both or neither; the email is counted whether or not an account has it, so the limit says nothing
 * about which addresses exist.
 */
export type MailKind = 'reset' | 'verification'

export class MailRequestLimiter {
  constructor(
    private readonly store: FailureStore,
    private readonly limits: MailRequestLimits,
  ) {}

  /**
   * Counts one request or throws 429 with Retry-After. `email` is compared as sign-in compares it. Each kind of
   * mail has its own count per email: anyone can use up an address's reset requests (they need no account), and
   * that must not also stop its owner, signed in, from asking for a new verification link. Without `address`
   * only the email is counted (an email change: its account, not a client, is who asks).
   */
  async reserve(kind: MailKind, email: string, address: string | undefined): Promise<void> {
    const { maxPerEmail, maxPerAddress, windowSeconds } = this.limits
    const counters = [
      { key: `mail:${kind}:email:${email}`, limit: maxPerEmail },
      ...(address === undefined ? [] : [{ key: `mail:address:${addressBucket(address)}`, limit: maxPerAddress }]),
    ]
    const reservation = await this.store.reserve(counters, windowSeconds)
    if (!reservation.allowed) {
      throw new AppError('too_many_requests', {
        detail: 'Too many mails asked for this address or from this client. Try again later.',
        headers: { 'retry-after': String(reservation.retryAfterSeconds) },
      })
    }
  }
}
