import { isIPv4, isIPv6 } from 'node:net'
import type { SignInLimits, SignUpLimits } from '../config.js'
import { AppError } from '../errors.js'

/** A counter and the most it may reach within a window. */
export interface Counter {
  key: string
  limit: number
}

/** A refusal names the keys of the counters that were at their limit (`blocked`). */
export type Reservation = { allowed: true } | { allowed: false; retryAfterSeconds: number; blocked: string[] }

/**
 * Attempt counts per key within a fixed window. Memory by default; Redis shares counts between instances.
 * A decision is one atomic step (`reserve`), so parallel requests cannot all pass a check made before any was counted.
 */
export interface FailureStore {
  /**
   * If every counter is below its limit, adds one to each (a window starts with a counter's first attempt and is
   * never extended) and allows; otherwise changes nothing and returns the seconds until the last blocking window ends.
   */
  reserve(counters: readonly Counter[], windowSeconds: number): Promise<Reservation>
  /** Gives one reserved attempt back (the attempt succeeded); a count never goes below zero. */
  release(key: string): Promise<void>
  /** Removes these counters and every counter whose key starts with one of `prefixes`; returns how many there were. */
  forget(keys: readonly string[], prefixes?: readonly string[]): Promise<number>
  close?(): Promise<void>
}

/** Per-process counts, swept as they expire. Atomic because nothing awaits between the check and the count. */
export class MemoryFailureStore implements FailureStore {
  private readonly windows = new Map<string, { count: number; endsAt: number }>()

  async reserve(counters: readonly Counter[], windowSeconds: number): Promise<Reservation> {
    const now = Date.now()
    let blockedUntil = 0
    const blocked: string[] = []
    for (const { key, limit } of counters) {
      const window = this.live(key, now)
      if (window && window.count >= limit) {
        blockedUntil = Math.max(blockedUntil, window.endsAt)
        blocked.push(key)
      }
    }
    if (blockedUntil > 0) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((blockedUntil - now) / 1000)), blocked }
    if (this.windows.size > 100_000) this.sweep(now)
    for (const { key } of counters) {
      const window = this.live(key, now)
      if (window) window.count += 1
      else this.windows.set(key, { count: 1, endsAt: now + windowSeconds * 1000 })
    }
    return { allowed: true }
  }

  async release(key: string): Promise<void> {
    const window = this.live(key, Date.now())
    if (!window) return
    window.count -= 1
    if (window.count <= 0) this.windows.delete(key)
  }

  async forget(keys: readonly string[], prefixes: readonly string[] = []): Promise<number> {
    const now = Date.now()
    let removed = 0
    for (const [key, window] of this.windows) {
      if (!keys.includes(key) && !prefixes.some((prefix) => key.startsWith(prefix))) continue
      if (window.endsAt > now) removed += 1
      this.windows.delete(key)
    }
    return removed
  }

  private live(key: string, now: number) {
    const window = this.windows.get(key)
    return window && window.endsAt > now ? window : undefined
  }

  private sweep(now: number): void {
    for (const [key, window] of this.windows) if (window.endsAt <= now) this.windows.delete(key)
  }
}

/** Whose attempt this is: the account a password is checked for, and where the request comes from. */
export interface Attempt {
  /** The user's id when the login names an existing user (by username or email), else the login text. */
  account: { userId: number } | { login: string }
  address: string
  /** Set when the client proved (SECURITY.md, device proof) an earlier successful sign-in to this very account. */
  device?: string
}

/** An existing account's own failure count refused an attempt; called synchronously, before the 429 is thrown. */
export type AccountLockedListener = (lock: { userId: number; address: string; retryAfterSeconds: number; windowSeconds: number }) => void

/** A reserved attempt: call `succeeded` when the password was right; a failure needs nothing (it stays counted). */
export interface Ticket {
  /** Gives the attempt back on every counter; failures before it stay counted until their window ends. */
  succeeded(): Promise<void>
  /** The attempt ended before a password was judged (an error): it does not count. */
  cancelled(): Promise<void>
}

/**
 * The brute-force limits on every password check (sign-in, password change, deletion) and on sign-ups.
 * Each attempt is counted before the password is checked, so N parallel guesses get at most the limit's worth of checks.
 */
export class SignInLimiter {
  private readonly localSignUps = new MemoryFailureStore()
  private accountLocked?: AccountLockedListener

  constructor(
    private readonly store: FailureStore,
    private readonly limits: SignInLimits,
    private readonly signUpLimits: SignUpLimits,
  ) {}

  /** Told whenever the account's own counter refuses an attempt (not a device's or an address's); see activity. */
  whenAccountLocked(listener: AccountLockedListener): void {
    this.accountLocked = listener
  }

  /**
   * Reserves one attempt or throws 429 with Retry-After. A device with proof is judged by its own count only,
   * so failures from elsewhere cannot lock its owner out; any other client shares the account's and its address's.
   */
  async reserve(attempt: Attempt): Promise<Ticket> {
    const { maxFailuresPerAccount, maxFailuresPerAddress, windowSeconds } = this.limits
    const counters: Counter[] = attempt.device
      ? [{ key: deviceKey(attempt.account, attempt.device), limit: maxFailuresPerAccount }]
      : [
          { key: accountKey(attempt.account), limit: maxFailuresPerAccount },
          { key: addressKey(attempt.address), limit: maxFailuresPerAddress },
        ]
    const reservation = await this.store.reserve(counters, windowSeconds)
    if (!reservation.allowed) {
      if ('userId' in attempt.account && reservation.blocked.includes(accountKey(attempt.account))) {
        this.accountLocked?.({ userId: attempt.account.userId, address: attempt.address, retryAfterSeconds: reservation.retryAfterSeconds, windowSeconds })
      }
      throw tooMany('Too many failed password attempts. Try again later.', reservation.retryAfterSeconds)
    }
    const giveBack = () => Promise.all(counters.map(({ key }) => this.store.release(key))).then(() => {})
    // The right password gives back its own attempt only: the failures before it stay counted, so a success
    // inside a burst of guesses does not open the way for another limit's worth of them.
    return { succeeded: giveBack, cancelled: giveBack }
  }

  /**
   * Clears the account's failure counts: its own and those of its devices (an operator's unlock, a new password).
   * The counts of the addresses it was tried from stay: they are every account's there, not this one's.
   * Returns how many counters there were.
   */
  forgetAccount(userId: number): Promise<number> {
    return this.store.forget([accountKey({ userId })], [deviceKeyPrefix(userId)])
  }

  /**
   * One attempt counted against the address alone: a passkey sign-in names no account until it has succeeded,
   * and counting against the account a credential id names would let anyone who saw that id lock it out.
   */
  async reserveForAddress(address: string): Promise<Ticket> {
    const { maxFailuresPerAddress, windowSeconds } = this.limits
    const counters = [{ key: addressKey(address), limit: maxFailuresPerAddress }]
    const reservation = await this.store.reserve(counters, windowSeconds)
    if (!reservation.allowed) throw tooMany('Too many failed sign-in attempts from this address. Try again later.', reservation.retryAfterSeconds)
    const giveBack = () => Promise.all(counters.map(({ key }) => this.store.release(key))).then(() => {})
    return { succeeded: giveBack, cancelled: giveBack }
  }

  /**
   * Passkey sign-in challenges one address may ask for per window: ten times its failed sign-ins (each challenge
   * is a row for five minutes, and asking is no guess, so the bound is against filling the table).
   */
  async reservePasskeyChallenge(address: string): Promise<void> {
    const { maxFailuresPerAddress, windowSeconds } = this.limits
    const counters = [{ key: `passkey:options:address:${addressBucket(address)}`, limit: maxFailuresPerAddress * 10 }]
    const reservation = await this.store.reserve(counters, windowSeconds)
    if (!reservation.allowed) throw tooMany('Too many passkey sign-in requests from this address. Try again later.', reservation.retryAfterSeconds)
  }

  /**
   * Counts one sign-up from this address, or throws 429 with Retry-After once it has made `maxPerAddress` in the window.
   * While Redis is down sign-ups go on, counted by this instance alone (sign-up needs no shared state otherwise).
   */
  async reserveSignUp(address: string): Promise<void> {
    const { maxPerAddress, windowSeconds } = this.signUpLimits
    const counters = [{ key: `signup:address:${addressBucket(address)}`, limit: maxPerAddress }]
    const reservation = await this.store.reserve(counters, windowSeconds).catch((error: unknown) => {
      if (error instanceof AppError && error.code === 'service_unavailable') return this.localSignUps.reserve(counters, windowSeconds)
      throw error
    })
    if (!reservation.allowed) throw tooMany('Too many sign-ups from this address. Try again later.', reservation.retryAfterSeconds)
  }
}

function tooMany(detail: string, retryAfterSeconds: number): AppError {
  return new AppError('too_many_requests', { detail, headers: { 'retry-after': String(retryAfterSeconds) } })
}

const accountKey = (account: Attempt['account']) =>
  'userId' in account ? `signin:account:id:${account.userId}` : `signin:account:login:${account.login.toLowerCase()}`
const addressKey = (address: string) => `signin:address:${addressBucket(address)}`
// A device's count is named after its account too, so that clearing the account's counts can find it.
const deviceKeyPrefix = (userId: number | 'login') => `signin:device:${userId}:`
const deviceKey = (account: Attempt['account'], device: string) => `${deviceKeyPrefix('userId' in account ? account.userId : 'login')}${device}`

/**
 * The unit a client address is limited by: an IPv4 address itself (also when written IPv4-mapped, ::ffff:a.b.c.d
 * or ::ffff:102:304), an IPv6 address by its /64 — one subscriber or host usually holds a whole /64 and can pick
 * any address in it. A port some proxies append (Azure Application Gateway writes `1.2.3.4:5678` and
 * `[2001:db8::1]:5678`) is not part of it, or every new connection would be a new client. Anything that is no
 * address at all can only have been written by a client (a hop count set too high): all such share one bucket,
 * so writing a new one on every guess gains nothing.
 */
export function addressBucket(address: string): string {
  const text = (/^\[([^\]]*)\](?::\d*)?$/.exec(address)?.[1] ?? /^(\d+\.\d+\.\d+\.\d+):\d*$/.exec(address)?.[1] ?? address)
    .trim()
    .replace(/%.*$/, '')
  if (isIPv4(text)) return text
  if (!isIPv6(text)) return 'invalid'
  const groups = expandIPv6(text)
  if (groups.slice(0, 5).every((group) => group === '0') && groups[5] === 'ffff') {
    const [high, low] = [Number.parseInt(groups[6] as string, 16), Number.parseInt(groups[7] as string, 16)]
    return [high >> 8, high & 255, low >> 8, low & 255].join('.')
  }
  return `${groups.slice(0, 4).join(':')}::/64`
}

/** The eight 16-bit groups of an IPv6 address, lower-case hex without leading zeros. */
function expandIPv6(address: string): string[] {
  let text = address.toLowerCase()
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = (v4[1] as string).split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.split('::') as [string, string | undefined]
  const left = head ? head.split(':') : []
  const right = tail === undefined ? [] : tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  return groups.map((group) => Number.parseInt(group, 16).toString(16))
}
