import type { TestContext } from 'node:test'
import { type ParsedMail, simpleParser } from 'mailparser'
import { SMTPServer } from 'smtp-server'
import { deferCleanup } from './cleanup.js'

export interface SmtpSink {
  port: number
  url: string
  /** Every message received so far, parsed, in arrival order. */
  messages: ParsedMail[]
  /** Resolves with the first message that matches once it has arrived; fails after `timeoutMs` (a hang guard, not a timing assertion). */
  waitFor(match: (mail: ParsedMail) => boolean, timeoutMs?: number): Promise<ParsedMail>
  close(): Promise<void>
}

/** A real SMTP server over TCP on 127.0.0.1 (no TLS, no auth), on `port` or a free one; closed when the test ends. */
export async function startSmtp(t: TestContext, port = 0): Promise<SmtpSink> {
  const messages: ParsedMail[] = []
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, callback) {
      simpleParser(stream).then(
        (mail) => {
          messages.push(mail)
          callback()
        },
        (error: Error) => callback(error),
      )
    },
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  const bound = (server.server.address() as { port: number }).port
  let closed = false
  const close = () =>
    closed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          closed = true
          server.close(() => resolve())
        })
  deferCleanup(t, close)
  return {
    port: bound,
    url: `smtp://127.0.0.1:${bound}`,
    messages,
    async waitFor(match, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const found = messages.find(match)
        if (found) return found
        if (Date.now() > deadline) throw new Error(`no matching mail arrived; got: ${messages.map((m) => `${m.to && 'text' in m.to ? m.to.text : '?'}: ${m.subject}`).join(', ')}`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    close,
  }
}

/** The addresses a message went to, as text. */
export function recipients(mail: ParsedMail): string {
  const to = mail.to
  if (!to) return ''
  return (Array.isArray(to) ? to : [to]).map((address) => address.text).join(', ')
}

/** The token of the first `/<page>#token=…` link in the plain-text part. */
export function tokenIn(mail: ParsedMail, page: 'reset-password' | 'verify-email'): string {
  const match = new RegExp(`/${page}#token=([A-Za-z0-9_-]+)`).exec(mail.text ?? '')
  if (!match) throw new Error(`no ${page} link in: ${mail.text}`)
  return match[1] as string
}

/** A port nothing listens on right now (for an SMTP server that is down, and comes up later on it). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}
