import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { loadConfig } from '../src/config.js'

/**
 * A fresh, empty place on the given PostgreSQL server, dropped afterwards: a schema passed as
 * DATABASE_SCHEMA when the service reads that variable, otherwise a new database.
 */
export async function freshPostgres(url: string): Promise<{ url: string; schema?: string; drop: () => Promise<void> }> {
  const name = `portrait_bench_${randomBytes(6).toString('hex')}`
  if (supportsSchemaVariable()) {
    await run(url, `CREATE SCHEMA ${name}`)
    return { url, schema: name, drop: () => run(url, `DROP SCHEMA ${name} CASCADE`) }
  }
  await run(url, `CREATE DATABASE ${name}`)
  const fresh = new URL(url)
  fresh.pathname = `/${name}`
  // WITH (FORCE): the server's pool may still hold connections for a moment after it stopped.
  return { url: fresh.toString(), drop: () => run(url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

function supportsSchemaVariable(): boolean {
  try {
    return loadConfig({ DATABASE_SCHEMA: 'probe' }).databaseSchema === 'probe'
  } catch {
    return false
  }
}

async function run(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(statement)
  } finally {
    await client.end()
  }
}
