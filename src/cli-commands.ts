import { createInterface } from 'node:readline'
import type { Config } from './config.js'
import { createDb, type Db } from './db/database.js'

/**
 * A command of `portrait`: its name (one or two words), its usage line(s) and what it does, shown by
 * `portrait --help`, `portrait help <command>` and `portrait <command> --help`. Each command registers itself
 * beside its implementation (cli.ts, or a feature's `*-cli.ts` that cli.ts imports).
 */
export interface Command {
  name: string
  /** Arguments after the name, e.g. `--username U --email E`. */
  args?: string
  /** One or more lines, shown in the command list. */
  about: string
  /** More lines, shown only in the command's own help and its group's (`portrait users --help`). */
  details?: string
  run: (config: Config, args: string[]) => Promise<void>
}

/** Every command, in the order they were registered (the order of the help). */
export const COMMANDS: Command[] = []

export function registerCommand(command: Command): void {
  COMMANDS.push(command)
}

/** Wrong arguments: the message, then the usage of the command (or of every command). Exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: Command,
  ) {
    super(message)
  }
}

/** Arguments understood but refused (a weak password, a name taken, no such user): the message alone. Exit code 2. */
export class Refused extends Error {}

/** Work with the database open; it is closed again whatever happens. */
export async function withDb<T>(config: Config, work: (db: Db) => Promise<T>): Promise<T> {
  const db = createDb(config)
  try {
    return await work(db)
  } finally {
    await db.destroy()
  }
}

/**
 * Asks for a new password twice without echoing it; refuses when the two differ. `unchanged` ends the refusal:
 * "nothing was created", "the password was not changed".
 */
export async function promptNewPassword(unchanged: string): Promise<string> {
  if (!process.stdin.isTTY) throw new Refused('no terminal to prompt on: set PORTRAIT_PASSWORD')
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true })
  // Echo nothing of what is typed; the prompts are written directly.
  ;(rl as unknown as { _writeToOutput: (text: string) => void })._writeToOutput = () => {}
  // Lines typed ahead wait here rather than being lost between the two questions.
  const lines = rl[Symbol.asyncIterator]()
  const ask = async (question: string) => {
    process.stdout.write(question)
    const { value, done } = await lines.next()
    process.stdout.write('\n')
    if (done) throw new Refused('no password given')
    return value as string
  }
  try {
    const password = await ask('Password: ')
    if ((await ask('Password (again): ')) !== password) throw new Refused(`the two passwords differ; ${unchanged}`)
    return password
  } finally {
    rl.close()
  }
}

/**
 * The command could not do its work (Redis does not answer, the counts are out of its reach): the message alone,
 * exit code `exitCode` (1 unless said otherwise).
 */
export class Failed extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}
