import SQLite from 'better-sqlite3'
import pg from 'pg'
import type { Config } from '../../src/config.js'
import { queryPostgres } from './postgres.js'

export type AccountFlags = Partial<Record<'is_active' | 'is_staff' | 'is_superuser', boolean>>

/**
 * Sets account flags straight in the database, through a second connection: the API never lets a
 * client make itself staff, so a test that needs one has to go around it.
 */
export async function setFlags(config: Config, userId: number, flags: AccountFlags): Promise<void> {
  const entries = Object.entries(flags)
  if (entries.length === 0) return
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length))
    try {
      const set = entries.map(([flag]) => `${flag} = ?`).join(', ')
      db.prepare(`UPDATE users SET ${set}, version = version + 1 WHERE id = ?`).run(...entries.map(([, on]) => (on ? 1 : 0)), userId)
    } finally {
      db.close()
    }
    return
  }
  const client = new pg.Client({ connectionString: config.databaseUrl, options: `-c search_path=${config.databaseSchema}` })
  await client.connect()
  try {
    const set = entries.map(([flag], i) => `${flag} = $${i + 1}`).join(', ')
    await client.query(`UPDATE users SET ${set}, version = version + 1 WHERE id = $${entries.length + 1}`, [
      ...entries.map(([, on]) => on),
      userId,
    ])
  } finally {
    await client.end()
  }
}

/** Runs one statement over a connection of the test's own; `?` placeholders on both dialects. */
export async function query<R>(config: Config, statement: string, values: unknown[] = []): Promise<R[]> {
  if (config.databaseUrl.startsWith('sqlite:')) {
    const db = new SQLite(config.databaseUrl.slice('sqlite:'.length))
    try {
      const prepared = db.prepare(statement)
      if (prepared.reader) return prepared.all(...values) as R[]
      prepared.run(...values)
      return []
    } finally {
      db.close()
    }
  }
  let n = 0
  return (await queryPostgres(
    statement.replace(/\?/g, () => `$${++n}`),
    values,
    { url: config.databaseUrl, schema: config.databaseSchema },
  )) as R[]
}
