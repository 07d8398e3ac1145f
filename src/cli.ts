import { parseArgs } from 'node:util'
import { hashPassword, passwordProblems } from './auth/passwords.js'
import { sweepUnreferencedAvatars } from './avatars/media-sweep.js'
import { createAvatarStorage } from './avatars/storage-factory.js'
import { COMMANDS, type Command, Failed, promptNewPassword, Refused, registerCommand, UsageError, withDb } from './cli-commands.js'
import { type Config, ConfigError, loadConfig, parseDurationSeconds } from './config.js'
import { migrateToLatest } from './db/migrate.js'
import { ImportCommandError, importDjangoCommand } from './import/django-import-command.js'
import { KeysUsageError, keysCommand, serviceKeysCommand } from './keys-cli.js'
import { SendResetError, sendResetCommand } from './mail/send-reset-cli.js'
import { describeStartupError } from './startup-errors.js'
import './users/users-cli.js'
import { cleanText } from './users/field-rules.js'
import { UsersRepository } from './users/users.repository.js'
import { uniqueViolationError } from './users/users.service.js'

/** Every command, or those of one group (`portrait users --help`: `users list`, `users unlock`, …). */
function usage(group?: string): string {
  const commands = group ? groupCommands(group) : COMMANDS
  const heads = commands.map((command) => [command.name, command.args].filter(Boolean).join(' '))
  const width = Math.max(...heads.map((head) => head.length), 14) + 3
  const lines = commands.flatMap((command, i) => {
    const [first, ...more] = [command.about, ...(group && command.details ? [command.details] : [])].join('\n').split('\n')
    return [`  ${(heads[i] as string).padEnd(width)}${first}`, ...more.map((line) => `  ${' '.repeat(width)}${line}`)]
  })
  return `usage: portrait ${group ? `${group} ` : ''}<command> [options]\n\ncommands:\n${lines.join('\n')}\n  help [command]${' '.repeat(Math.max(1, width - 14))}show this help, or one command's\n\nConfiguration comes from the environment (and .env), as for the server.`
}

/** The two-word commands whose first word is `group`; none for a word that names no group. */
function groupCommands(group: string): Command[] {
  return COMMANDS.filter((command) => command.name.startsWith(`${group} `))
}

function commandUsage(command: Command): string {
  return `usage: portrait ${[command.name, command.args].filter(Boolean).join(' ')}\n\n${[command.about, command.details].filter(Boolean).join('\n')}`
}

/** The command named by the first one or two words, and the words after it. */
function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  for (const words of [2, 1]) {
    const command = COMMANDS.find((candidate) => candidate.name === argv.slice(0, words).join(' '))
    if (command) return { command, rest: argv.slice(words) }
  }
  return undefined
}

/** The configuration once read, to describe a database that does not answer. */
let loaded: Config | undefined

const isHelp = (word: string | undefined) => word === '--help' || word === '-h'

async function main(argv: string[]): Promise<void> {
  const [first, ...others] = argv
  if (first === undefined) throw new UsageError('no command given')
  if (first === 'help' || isHelp(first)) {
    const named = others.length ? findCommand(others) : undefined
    const group = others.length === 1 && groupCommands(others[0] as string).length ? others[0] : undefined
    if (others.length && !named && !group) throw new UsageError(`unknown command: ${others.join(' ')}`)
    console.log(named ? commandUsage(named.command) : usage(group))
    return
  }
  const found = findCommand(argv)
  if (!found && groupCommands(first).length && argv.length === 2 && isHelp(argv[1])) {
    console.log(usage(first))
    return
  }
  if (!found) throw new UsageError(argv.length === 1 && groupCommands(first).length ? `no ${first} command given` : `unknown command: ${argv.join(' ')}`)
  if (found.rest.some(isHelp)) {
    console.log(commandUsage(found.command))
    return
  }
  try {
    process.loadEnvFile()
  } catch {}
  const config = loadConfig()
  loaded = config
  try {
    await found.command.run(config, found.rest)
  } catch (error) {
    // parseArgs: an unknown option, a missing value.
    if (String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError((error as Error).message, found.command)
    }
    if (error instanceof UsageError && !error.command) throw new UsageError(error.message, found.command)
    throw error
  }
}

registerCommand({ name: 'migrate', about: 'apply pending database migrations', run: (config) => migrate(config) })

async function migrate(config: Config): Promise<void> {
  const applied = await withDb(config, (db) => migrateToLatest(db.kysely))
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date')
}

registerCommand({
  name: 'create-superuser',
  args: '--username U --email E',
  about: 'create a superuser (password from PORTRAIT_PASSWORD or a hidden prompt, asked twice)',
  run: (config, args) => createSuperuser(config, args),
})

async function createSuperuser(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { username: { type: 'string' }, email: { type: 'string' } }, strict: true })
  if (!values.username || !values.email) throw new UsageError('create-superuser needs --username and --email')
  const problems: string[] = []
  const username = cleanText('username', values.username)
  const email = cleanText('email', values.email)
  if ('error' in username) problems.push(`username: ${username.error}`)
  if ('error' in email) problems.push(`email: ${email.error}`)
  if (problems.length) throw new Refused(problems.join('\n'))
  const password = process.env.PORTRAIT_PASSWORD ?? (await promptNewPassword('nothing was created'))
  const weak = passwordProblems(password, { username: values.username, email: values.email })
  if (weak.length) throw new Refused(`password: ${weak.join(' ')}`)
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
      if (taken) throw new Refused(Object.values(taken.errors ?? {}).flat().join(' '))
      throw error
    }
  })
  console.log(`superuser ${user.username} created with id ${user.id}`)
}

registerCommand({
  name: 'import-django',
  args: '--from <sqlite:PATH | postgres://…> [--table users_users] [--media-root DIR] [--dry-run] [--report FILE]',
  about: "copy a Django app's users (same ids, password hashes, avatars) into Portrait",
  run: (config, args) =>
    importDjangoCommand(config, args).catch((error: unknown) => {
      throw error instanceof ImportCommandError ? new UsageError(error.message) : error
    }),
})

// Signing keys and service credentials (keys-cli.ts): each subcommand is a command of its own in the help.
for (const [name, args, about] of [
  ['keys list', '', 'signing keys: kid, algorithm, created, state (current, verifying, retired, revoked)'],
  ['keys rotate', '', 'a new signing key; the old one verifies until its tokens have expired'],
  ['keys revoke', 'KID', 'its tokens stop working on every instance at once'],
  ['service-keys create', 'NAME', 'a credential for POST /api/auth/introspect (printed once)'],
  ['service-keys list', '', 'service credentials: names and states, never secrets'],
  ['service-keys revoke', 'NAME', 'the credential stops working at once'],
] as const) {
  const [group, subcommand] = name.split(' ') as [string, string]
  const run = group === 'keys' ? keysCommand : serviceKeysCommand
  registerCommand({
    name,
    ...(args ? { args } : {}),
    about,
    run: (config, rest) =>
      run(config, [subcommand, ...rest]).catch((error: unknown) => {
        throw error instanceof KeysUsageError ? new UsageError(error.message) : error
      }),
  })
}

registerCommand({
  ...sendResetCommand,
  run: (config, args) =>
    sendResetCommand.run(config, args).catch((error: unknown) => {
      if (!(error instanceof SendResetError)) throw error
      throw error.usage ? new UsageError(error.message) : new Refused(error.message)
    }),
})

registerCommand({
  name: 'media gc',
  args: '[--min-age 10m]',
  about: 'remove stored avatar images no profile references,\nsparing files younger than --min-age (uploads about to commit)',
  run: (config, args) => mediaGc(config, args),
})

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

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    const group = process.argv[2]
    const groupUsage = group !== undefined && groupCommands(group).length ? usage(group) : usage()
    console.error(`portrait: ${error.message}\n\n${error.command ? commandUsage(error.command) : groupUsage}`)
    process.exit(2)
  }
  if (error instanceof Refused || error instanceof ConfigError) {
    console.error(`portrait: ${error.message}`)
    process.exit(2)
  }
  if (error instanceof Failed) {
    console.error(`portrait: ${error.message}`)
    process.exit(error.exitCode)
  }
  // A database that does not answer or refuses us: one line, as at the server's start; a fault of ours keeps its stack.
  const line = loaded && describeStartupError(error, loaded)
  console.error(line ? `portrait: ${line}` : error)
  process.exit(1)
})
