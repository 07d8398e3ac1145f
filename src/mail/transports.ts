import { mkdirSync } from 'node:fs'
import { chmod, open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import nodemailer from 'nodemailer'
import MailComposer from 'nodemailer/lib/mail-composer/index.js'
import type Mail from 'nodemailer/lib/mailer/index.js'
import type { MailSettings } from '../config.js'
import { maskAddress } from './mask.js'

/** A message ready to leave, as the outbox holds it. */
export interface Outgoing {
  messageId: string
  to: string
  subject: string
  text: string
  html: string
  date: Date
}

/** Delivers one message or throws; the sender retries. */
export interface MailTransport {
  /** For the log: `smtp` or `file`. */
  readonly kind: string
  send(message: Outgoing): Promise<void>
  close(): Promise<void>
}

// Bounds on every step, so a hung server fails an attempt (retried later) well within the sender's lease.
const SMTP_TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 }

function mailOptions(from: string, message: Outgoing): Mail.Options {
  return {
    from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    html: message.html,
    messageId: message.messageId,
    date: message.date,
    // The bodies are our own strings: nothing in them may make nodemailer read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  }
}

/** SMTP_URL set: nodemailer's SMTP transport (smtp:// with STARTTLS when offered, smtps:// with TLS from the start). */
export function smtpTransport(smtpUrl: string, from: string): MailTransport {
  const transporter = nodemailer.createTransport({ url: smtpUrl, ...SMTP_TIMEOUTS } as unknown as Parameters<typeof nodemailer.createTransport>[0])
  return {
    kind: 'smtp',
    async send(message) {
      await transporter.sendMail(mailOptions(from, message))
    },
    async close() {
      transporter.close()
    },
  }
}

/**
 * SMTP_URL unset: each message becomes DATA_DIR/outbox/<message id>.eml (Django's file-based backend), written
 * to a temporary file with mode 0600 and renamed into place, so a reader never sees half a message. The name
 * comes from the Message-ID: a repeat after a crash replaces the same file.
 */
export function fileTransport(directory: string, from: string, log: FastifyBaseLogger): MailTransport {
  return {
    kind: 'file',
    async send(message) {
      mkdirSync(directory, { recursive: true, mode: 0o700 })
      const raw = await new MailComposer(mailOptions(from, message)).compile().build()
      const name = `${message.date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${message.messageId.replace(/^<|@.*$/g, '')}.eml`
      const path = join(directory, name)
      const temporary = join(directory, `.${name}.tmp`)
      const file = await open(temporary, 'w', 0o600)
      try {
        await file.writeFile(raw)
        await file.sync()
      } finally {
        await file.close()
      }
      try {
        // open's mode is masked by the umask; the file must be the owner's alone whatever it is.
        await chmod(temporary, 0o600)
        await rename(temporary, path)
      } catch (error) {
        await rm(temporary, { force: true })
        throw error
      }
      log.info({ file: path, to: maskAddress(message.to) }, 'mail written to file (SMTP_URL is not set)')
    },
    async close() {},
  }
}

/** The transport the configuration asks for. */
export function createTransport(mail: MailSettings, dataDir: string, log: FastifyBaseLogger): MailTransport {
  return mail.smtpUrl ? smtpTransport(mail.smtpUrl, mail.from) : fileTransport(join(dataDir, 'outbox'), mail.from, log)
}
