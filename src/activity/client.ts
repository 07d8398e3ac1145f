import Bowser from 'bowser'
import type { FastifyRequest } from 'fastify'
import { addressBucket } from '../auth/sign-in-limiter.js'

/** The longest User-Agent kept: enough for any real browser's, and a client cannot make a row large. */
export const USER_AGENT_MAX_LENGTH = 512

/** Where a request came from, as sessions and activity entries record it. */
export interface ClientInfo {
  /** request.ip (after TRUST_PROXY). */
  address: string
  /** The User-Agent header, cut to USER_AGENT_MAX_LENGTH; undefined when absent. */
  userAgent?: string
}

/** The client of a request: its address and its User-Agent, cut short. */
export function clientOf(request: FastifyRequest): ClientInfo {
  const agent = request.headers['user-agent']
  return { address: request.ip, userAgent: agent ? agent.slice(0, USER_AGENT_MAX_LENGTH) : undefined }
}

/**
 * The address as shown to people: an IPv4 address by its /24 (203.0.113.0/24), an IPv6 one by its /64
 * (2001:db8:1:2::/64), an IPv4-mapped one as IPv4. Enough to tell "my home" from "another country", not
 * enough to point at one machine. Null when nothing was recorded or it is no address.
 */
export function maskAddress(address: string | null | undefined): string | null {
  if (!address) return null
  const bucket = addressBucket(address)
  if (bucket === 'invalid') return null
  if (bucket.endsWith('/64')) return bucket
  return `${bucket.slice(0, bucket.lastIndexOf('.'))}.0/24`
}

/** "Firefox 131 on macOS" from a User-Agent; parsed when read, so a newer parser relabels old rows too. */
export function deviceLabel(userAgent: string | null | undefined): string {
  if (!userAgent) return 'Unknown device'
  const { browser, os } = Bowser.parse(userAgent)
  const major = browser.version?.split('.')[0]
  const name = browser.name ? [browser.name, major].filter(Boolean).join(' ') : undefined
  if (name && os.name) return `${name} on ${os.name}`
  return name ?? os.name ?? 'Unknown device'
}
