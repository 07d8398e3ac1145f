import type { SignInLimits } from '../config.js'
import { AppError } from '../errors.js'

/** Counts failures per key within a fixed window. Memory by default; Redis shares counts between instances. */
export interface FailureStore {
  /** Adds one failure; returns the count in the current window. */
  increment(key: string, windowSeconds: number): Promise<number>
  /** The count and the seconds until the window ends (0 when there is none). */
  get(key: string): Promise<{ count: number; retryAfterSeconds: number }>
  reset(key: string): Promise<void>
  close?(): Promise<void>
}

/** Per-process counts, swept as they expire. */
export class MemoryFailureStore implements FailureStore {
  private readonly windows = new Map<string, { count: number; endsAt: number }>()

  async increment(key: string, windowSeconds: number): Promise<number> {
    const now = Date.now()
    const window = this.windows.get(key)
    if (window && window.endsAt > now) return ++window.count
    if (this.windows.size > 100_000) this.sweep(now)
    this.windows.set(key, { count: 1, endsAt: now + windowSeconds * 1000 })
    return 1
  }

  async get(key: string): Promise<{ count: number; retryAfterSeconds: number }> {
    const window = this.windows.get(key)
    const now = Date.now()
    if (!window || window.endsAt <= now) return { count: 0, retryAfterSeconds: 0 }
    return { count: window.count, retryAfterSeconds: Math.ceil((window.endsAt - now) / 1000) }
  }

  async reset(key: string): Promise<void> {
    this.windows.delete(key)
  }

  private sweep(now: number): void {
    for (const [key, window] of this.windows) if (window.endsAt <= now) this.windows.delete(key)
  }
}

/** The sign-in brute-force limit (SPEC §5): failures counted per account and per client address. */
export class SignInLimiter {
  constructor(
    private readonly store: FailureStore,
    private readonly limits: SignInLimits,
  ) {}

  /** Throws 429 with Retry-After when either the account or the address has used up its failures. */
  async assertAllowed(account: string, address: string): Promise<void> {
    const [byAccount, byAddress] = await Promise.all([this.store.get(accountKey(account)), this.store.get(addressKey(address))])
    const blocked = [
      byAccount.count >= this.limits.maxFailuresPerAccount ? byAccount.retryAfterSeconds : 0,
      byAddress.count >= this.limits.maxFailuresPerAddress ? byAddress.retryAfterSeconds : 0,
    ]
    const retryAfter = Math.max(...blocked)
    if (retryAfter > 0) {
      throw new AppError('too_many_requests', {
        detail: 'Too many failed sign-in attempts. Try again later.',
        headers: { 'retry-after': String(retryAfter) },
      })
    }
  }

  async recordFailure(account: string, address: string): Promise<void> {
    const window = this.limits.windowSeconds
    await Promise.all([this.store.increment(accountKey(account), window), this.store.increment(addressKey(address), window)])
  }

  /** A successful sign-in clears the account's count (not the address's: one address may try many accounts). */
  async recordSuccess(account: string): Promise<void> {
    await this.store.reset(accountKey(account))
  }
}

const accountKey = (account: string) => `signin:account:${account.toLowerCase()}`
const addressKey = (address: string) => `signin:address:${address}`
