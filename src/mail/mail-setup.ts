import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { OutboxRepository } from './outbox.repository.js'
import { MailSender } from './sender.js'
import { createTransport } from './transports.js'

/** The domain of MAIL_FROM's address, which Message-IDs use. */
export function fromDomain(from: string): string {
  const address = /<([^<>]+)>$/.exec(from)?.[1] ?? from
  return address.slice(address.lastIndexOf('@') + 1)
}

/** The outbox and the sender that delivers it, with the transport the configuration names. */
export function createMail(config: Pick<Config, 'mail' | 'dataDir'>, db: Db, log: FastifyBaseLogger) {
  const outbox = new OutboxRepository(db.dialect, fromDomain(config.mail.from))
  const transport = createTransport(config.mail, config.dataDir, log)
  const sender = new MailSender({ db, outbox, transport, settings: config.mail, log })
  return { outbox, sender, transport }
}
