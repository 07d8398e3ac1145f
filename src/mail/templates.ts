import type { Message } from './outbox.repository.js'

/**
 * The messages Portrait sends: a plain-text part and a simple HTML part with the same words, the product's
 * name, and nothing a mail client would block or that could track the reader (no remote images, scripts,
 * styles sheets or tracking links: the only link is the one the message is about).
 */
const PRODUCT = 'Portrait'

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char] as string)

/** "1 hour", "3 days", "90 minutes". */
export function humanDuration(seconds: number): string {
  const units: [number, string][] = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ]
  for (const [size, name] of units) {
    if (seconds % size === 0 && seconds >= size) return `${seconds / size} ${name}${seconds / size === 1 ? '' : 's'}`
  }
  return `${seconds} seconds`
}

interface Parts {
  to: string
  subject: string
  greeting: string
  paragraphs: string[]
  action?: { label: string; url: string }
  footer: string
}

function compose({ to, subject, greeting, paragraphs, action, footer }: Parts): Message {
  const text = [greeting, '', ...paragraphs.flatMap((line) => [line, '']), ...(action ? [`${action.label}:`, action.url, ''] : []), '-- ', `${PRODUCT}: ${footer}`, ''].join(
    '\n',
  )
  const html = [
    '<!DOCTYPE html>',
    `<html><head><meta charset="utf-8"><title>${escapeHtml(subject)}</title></head>`,
    '<body style="font-family: sans-serif; line-height: 1.5; color: #222;">',
    `<p>${escapeHtml(greeting)}</p>`,
    ...paragraphs.map((line) => `<p>${escapeHtml(line)}</p>`),
    ...(action ? [`<p><a href="${escapeHtml(action.url)}">${escapeHtml(action.label)}</a></p>`, `<p style="font-size: 0.9em;">${escapeHtml(action.url)}</p>`] : []),
    `<hr><p style="font-size: 0.8em; color: #666;">${PRODUCT}: ${escapeHtml(footer)}</p>`,
    '</body></html>',
    '',
  ].join('\n')
  return { to, subject, text, html }
}

const NOT_YOU = 'If this was not you, sign in and change your password, or ask an administrator for help.'

export function passwordResetMail(to: string, username: string, link: string, ttlSeconds: number): Message {
  return compose({
    to,
    subject: `${PRODUCT}: reset your password`,
    greeting: `Hello ${username},`,
    paragraphs: [
      `Someone asked to reset the password of your ${PRODUCT} account. The link below lets you choose a new one; it works once, for ${humanDuration(ttlSeconds)}.`,
      'If you did not ask for this, ignore this message: your password stays as it is.',
    ],
    action: { label: 'Choose a new password', url: link },
    footer: 'you received this because a password reset was asked for your account.',
  })
}

export function emailVerificationMail(to: string, username: string, link: string, ttlSeconds: number): Message {
  return compose({
    to,
    subject: `${PRODUCT}: confirm your email address`,
    greeting: `Hello ${username},`,
    paragraphs: [`Please confirm that ${to} is your address by opening the link below. It works once, for ${humanDuration(ttlSeconds)}.`],
    action: { label: 'Confirm my address', url: link },
    footer: 'you received this because this address was given for an account.',
  })
}

export function passwordChangedMail(to: string, username: string, how: 'changed' | 'reset'): Message {
  return compose({
    to,
    subject: `${PRODUCT}: your password was ${how}`,
    greeting: `Hello ${username},`,
    paragraphs: [
      how === 'reset'
        ? `The password of your ${PRODUCT} account was just reset with a link sent to this address, and every session was signed out.`
        : `The password of your ${PRODUCT} account was just changed, and your other sessions were signed out.`,
      NOT_YOU,
    ],
    footer: 'a notice about your account’s security.',
  })
}

export function emailChangedMail(to: string, username: string, newAddress: string): Message {
  return compose({
    to,
    subject: `${PRODUCT}: your email address was changed`,
    greeting: `Hello ${username},`,
    paragraphs: [
      `The email address of your ${PRODUCT} account was changed to ${newAddress}. Mail about the account goes there from now on.`,
      `If this was not you, someone may have your password: reset it, or ask an administrator for help.`,
    ],
    footer: 'a notice about your account’s security, sent to its previous address.',
  })
}

/** A sign-in from a device that brought no proof of an earlier sign-in (activity's new-device notice). */
export function newDeviceSignInMail(to: string, username: string, sign: { device: string; address: string | null; at: string }): Message {
  return compose({
    to,
    subject: `${PRODUCT}: a new sign-in to your account`,
    greeting: `Hello ${username},`,
    paragraphs: [
      `Your ${PRODUCT} account was just signed in to from a device it has not seen before: ${sign.device}${sign.address ? `, from ${sign.address}` : ''}, at ${sign.at} (UTC).`,
      'If this was you, there is nothing to do. If not, sign in, end that session under "Sessions" and change your password.',
    ],
    footer: 'a notice about your account’s security.',
  })
}

/** The changes of a second factor or passkey that a notice tells about (activity's types of the same names). */
export type FactorChange = 'mfa_enabled' | 'mfa_disabled' | 'recovery_codes_regenerated' | 'passkey_added' | 'passkey_removed'

const FACTOR_CHANGES: Record<FactorChange, { subject: string; what: string }> = {
  mfa_enabled: { subject: 'two-step verification was turned on', what: 'Two-step verification with an authenticator app was turned on for your account.' },
  mfa_disabled: { subject: 'two-step verification was turned off', what: 'Two-step verification with an authenticator app was turned off for your account.' },
  recovery_codes_regenerated: {
    subject: 'new recovery codes were made',
    what: 'New recovery codes were made for your account; the earlier ones no longer work.',
  },
  passkey_added: { subject: 'a passkey was added', what: 'A passkey was added to your account: it can sign in to it from now on.' },
  passkey_removed: { subject: 'a passkey was removed', what: 'A passkey was removed from your account: it signs nobody in any more.' },
}

/**
 * A second factor or passkey added, removed or renewed (issue 18): what changed, from which device; no link.
 * `'operator'`: an administrator made the change from the command line (`portrait users reset-mfa`).
 */
export function factorChangedMail(
  to: string,
  username: string,
  change: FactorChange,
  from: { device: string; address: string | null } | 'operator',
): Message {
  const { subject, what } = FACTOR_CHANGES[change]
  const source = from === 'operator' ? 'An administrator made the change.' : `The change came from ${from.device}${from.address ? `, from ${from.address}` : ''}.`
  return compose({
    to,
    subject: `${PRODUCT}: ${subject}`,
    greeting: `Hello ${username},`,
    paragraphs: [`${what} ${source}`, NOT_YOU],
    footer: 'a notice about your account’s security.',
  })
}
