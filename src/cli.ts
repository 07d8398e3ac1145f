import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { passwordProblems, hashPassword } from './auth/passwords.js'
import { sweepUnreferencedAvatars } from './avatars/media-sweep.js'
import { createAvatarStorage } from './avatars/storage-factory.js'
import { type Config, ConfigError, loadConfig, parseDurationSeconds } from './config.js'
import { createDb } from './db/database.js'
import { migrateToLatest } from './db/migrate.js'
import { KEYS_USAGE, KeysUsageError, keysCommand, serviceKeysCommand } from './keys-cli.js'
import { cleanText } from './users/field-rules.js'
import { UsersRepository } from './users/users.repository.js'
import { uniqueViolationError } from './users/users.service.js'

const USAGE = `usage: portrait <command>

commands:
  migrate                                   apply pending database migrations
  create-superuser --username U --email E   create a superuser (password from PORTRAIT_PASSWORD or a hidden prompt)
  media gc [--min-age 10m]                  remove stored avatar images no profile references,
                                            sparing files younger than --min-age (uploads about to commit)
${KEYS_USAGE}`

class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  try {
    process.loadEnvFile()
  } catch {}
  const config = loadConfig()
  const [command, ...rest] = argv
  if (command === 'migrate') return migrate(config)
  if (command === 'create-superuser') return createSuperuser(config, rest)
  if (command === 'media' && rest[0] === 'gc') return mediaGc(config, rest.slice(1))
  if (command === 'keys') return keysCommand(config, rest)
  if (command === 'service-keys') return serviceKeysCommand(config, rest)
  throw new UsageError(command ? `unknown command: ${[command, ...rest].join(' ')}` : 'no command given')
}

async function withDb<T>(config: Config, work: (db: ReturnType<typeof createDb>) => Promise<T>): Promise<T> {
  const db = createDb(config)
  try {
    return await work(db)
  } finally {
    await db.destroy()
  }
}

async function migrate(config: Config): Promise<void> {
  const applied = await withDb(config, (db) => migrateToLatest(db.kysely))
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date')
}

async function createSuperuser(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { username: { type: 'string' }, email: { type: 'string' } }, strict: true })
  if (!values.username || !values.email) throw new UsageError('create-superuser needs --username and --email')
  const problems: string[] = []
  const username = cleanText('username', values.username)
  const email = cleanText('email', values.email)
  if ('error' in username) problems.push(`username: ${username.error}`)
  if ('error' in email) problems.push(`email: ${email.error}`)
  if (problems.length) throw new UsageError(problems.join('\n'))
  const password = process.env.PORTRAIT_PASSWORD ?? (await promptHidden('Password: '))
  const weak = passwordProblems(password, { username: values.username, email: values.email })
  if (weak.length) throw new UsageError(`password: ${weak.join(' ')}`)
  const hash = await hashPassword(password, config.passwordHashCost)
  const user = await withDb(config, async (db) => {
    await migrateToLatest(db.kysely)
    const now = new Date().toISOString()
    const name = (username as { value: string }).value
    const address = (email as { value: string }).value
    try {
      return await new UsersRepository(db.dialect).insert(db.kysely, {
        username: name,
        email: address,
        password_hash: hash,
        first_name: '',
        last_name: '',
        number_phone: '',
        avatar: null,
        date_joined: now,
        last_login: null,
        is_active: 1,
        is_staff: 1,
        is_superuser: 1,
      })
    } catch (error) {
      const taken = uniqueViolationError(error)
      if (taken) throw new UsageError(Object.values(taken.errors ?? {}).flat().join(' '))
      throw error
    }
  })
  console.log(`superuser ${user.username} created with id ${user.id}`)
}

async function mediaGc(config: Config, args: string[]): Promise<void> {
  // The default spares recent files: a server may be running beside this command, its uploads stored
  // moments before their profile rows commit.
  const { values } = parseArgs({ args, options: { 'min-age': { type: 'string', default: '10m' } }, strict: true })
  const minAgeSeconds = parseDurationSeconds(values['min-age'])
  if (minAgeSeconds === undefined) throw new UsageError('--min-age takes a duration such as 0, 90s, 10m or 1h')
  const removed = await withDb(config, async (db) => {
    await migrateToLatest(db.kysely)
    const storage = await createAvatarStorage(config, db)
    return sweepUnreferencedAvatars(db.kysely, new UsersRepository(db.dialect), storage, { minAgeMs: minAgeSeconds * 1000 })
  })
  console.log(`removed ${removed} unreferenced avatar image(s)`)
}

/** Reads a line without echoing it. */
function promptHidden(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError('no terminal to prompt on: set PORTRAIT_PASSWORD')
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true })
    const output = rl as unknown as { _writeToOutput: (text: string) => void }
    rl.question(question, (answer) => {
      rl.close()
      process.stdout.write('\n')
      resolve(answer)
    })
    // Echo nothing after the prompt itself.
    output._writeToOutput = () => {}
  })
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof KeysUsageError) error = new UsageError(error.message)
  if (error instanceof UsageError || error instanceof ConfigError) {
    console.error(`portrait: ${error.message}`)
    if (error instanceof UsageError) console.error(`\n${USAGE}`)
    process.exit(2)
  }
  console.error(error)
  process.exit(1)
})
