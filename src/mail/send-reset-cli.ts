import pino from 'pino'
import { AccountMail } from '../account-tokens/account-mail.service.js'
import { AccountTokensRepository } from '../account-tokens/account-tokens.repository.js'
import { MailRequestLimiter } from '../account-tokens/mail-request-limiter.js'
import { SessionsRepository } from '../auth/sessions.repository.js'
import { MemoryFailureStore, SignInLimiter } from '../auth/sign-in-limiter.js'
import type { Config } from '../config.js'
import { createDb } from '../db/database.js'
import { migrateToLatest } from '../db/migrate.js'
import { AppError } from '../errors.js'
import { findUserByArgument } from '../users/operator.service.js'
import { UsersRepository } from '../users/users.repository.js'
import { createMail } from './mail-setup.js'
import { maskAddress } from './mask.js'

/** A refusal of `portrait users send-reset` (cli.ts prints it, with the usage when `usage` is set, and exits 2). */
export class SendResetError extends Error {
  constructor(
    message: string,
    readonly usage = false,
  ) {
    super(message)
  }
}

/** The sender's log lines, as short human sentences on stderr (every command that delivers mail). */
export function cliLog() {
  return pino(
    { level: 'info', base: null, timestamp: false },
    {
      write(line: string) {
        const { msg, file, reason } = JSON.parse(line) as { msg: string; file?: string; reason?: string }
        console.error(`portrait: ${msg}${file ? `: ${file}` : ''}${reason ? ` (${reason})` : ''}`)
      },
    },
  )
}

export const sendResetCommand = {
  name: 'users send-reset',
  args: 'USER',
  about:
    'mail USER (a username or an email) a password-reset link, as POST /api/users/{id}/password-reset does;\nthe message is recorded in the outbox and delivered now (SMTP_URL, else an .eml file in DATA_DIR/outbox/);\nif delivery fails, a running server retries it',
  run: sendReset,
}

async function sendReset(config: Config, args: string[]): Promise<void> {
  if (args.length !== 1 || (args[0] as string).startsWith('-')) throw new SendResetError('users send-reset takes one USER (a username or an email)', true)
  const db = createDb(config)
  const log = cliLog()
  const mail = createMail(config, db, log)
  try {
    await migrateToLatest(db.kysely)
    const users = new UsersRepository(db.dialect)
    // USER as every `portrait users` command reads it: a username, an email or id:N (one lookup for all of them).
    const user = await findUserByArgument(db, users, args[0] as string).catch((error: unknown) => {
        throw error instanceof AppError ? new SendResetError(Object.values(error.errors ?? {}).flat().join(' ') || error.message) : error
      })
    const store = new MemoryFailureStore()
    const accountMail = new AccountMail({
      db,
      users,
      sessions: new SessionsRepository(db),
      tokens: new AccountTokensRepository(),
      outbox: mail.outbox,
      wake: () => {},
      limiter: new SignInLimiter(store, config.signInLimits, config.signUpLimits),
      mailLimiter: new MailRequestLimiter(store, config.mailRequestLimits),
      linkBase: () => config.publicUrl ?? `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`,
      log,
      config,
    })
    try {
      await accountMail.sendResetFor(user)
    } catch (error) {
      if (error instanceof AppError) throw new SendResetError(Object.values(error.errors ?? {}).flat().join(' ') || error.message)
      throw error
    }
    await mail.sender.runOnce()
    // This message's row (the newest to the address), whatever else the run delivered.
    const row = await db.kysely.selectFrom('mail_outbox').select(['sent_at', 'last_error']).where('to_address', '=', user.email).orderBy('id', 'desc').executeTakeFirst()
    console.log(
      row?.sent_at
        ? `password-reset link for ${user.username} (id ${user.id}) sent to ${maskAddress(user.email)}`
        : `password-reset link for ${user.username} (id ${user.id}) recorded, not delivered yet: a running server retries it`,
    )
  } finally {
    await mail.sender.stop()
    await db.destroy()
  }
}
