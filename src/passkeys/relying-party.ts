import { isIP } from 'node:net'

/** Who the passkeys are for: the RP ID the authenticator scopes them to, and the one origin allowed to use them. */
export interface RelyingParty {
  rpID: string
  origin: string
}

export type RelyingPartyAnswer = { available: true; rp: RelyingParty } | { available: false; reason: string }

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost'])
const LOCALHOST = /^localhost(?::(\d{1,5}))?$/i

const isLocalhost = (hostname: string) => hostname === 'localhost' || hostname.endsWith('.localhost')

/**
 * Decided once from PUBLIC_URL (else HOST), answered per request:
 * - PUBLIC_URL https://name…: RP ID `name`, origin PUBLIC_URL's; http:// only for localhost (or *.localhost), the
 *   one insecure origin browsers offer WebAuthn on. An IP address can never be an RP ID: unavailable.
 * - No PUBLIC_URL and a loopback HOST (the development default): available only to a page served on
 *   http://localhost[:port] (RP ID `localhost`, origin as the Host header says); a page on 127.0.0.1 gets none.
 * - Otherwise (HOST=0.0.0.0 or a name, no PUBLIC_URL): the page's origin is unknown, so unavailable.
 * `reason` says what to configure.
 */
export function relyingPartyResolver(config: { publicUrl?: string; host: string }): (hostHeader: string | undefined) => RelyingPartyAnswer {
  if (config.publicUrl !== undefined) {
    const url = new URL(config.publicUrl)
    const hostname = url.hostname.replace(/^\[|\]$/g, '')
    let answer: RelyingPartyAnswer
    if (isIP(hostname) !== 0) {
      answer = { available: false, reason: 'Passkeys need a domain name: PUBLIC_URL names an IP address, which cannot be a WebAuthn RP ID.' }
    } else if (url.protocol === 'http:' && !isLocalhost(hostname)) {
      answer = { available: false, reason: 'Passkeys need https: browsers offer them on http://localhost only, and PUBLIC_URL is plain http.' }
    } else {
      answer = { available: true, rp: { rpID: hostname, origin: url.origin } }
    }
    return () => answer
  }
  if (!LOOPBACK_HOSTS.has(config.host)) {
    const answer = { available: false, reason: 'Passkeys need PUBLIC_URL (the https address people open) to know their RP ID and origin.' } as const
    return () => answer
  }
  const elsewhere = {
    available: false,
    reason: 'PUBLIC_URL is not set: passkeys work only on a page opened at http://localhost:<port> (an IP address cannot be an RP ID).',
  } as const
  return (hostHeader) => {
    const match = hostHeader === undefined ? null : LOCALHOST.exec(hostHeader)
    if (!match) return elsewhere
    // new URL drops a default port, as the browser does when it writes the origin.
    return { available: true, rp: { rpID: 'localhost', origin: new URL(`http://localhost${match[1] ? `:${match[1]}` : ''}`).origin } }
  }
}
