import type { TestContext } from 'node:test'
import pg from 'pg'
import { deferCleanup } from './cleanup.js'

export const POSTGRES_SKIP: string | false = process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set'

/** Runs one statement on TEST_DATABASE_URL (or `url`), optionally inside `schema`, over a connection of its own. */
export async function queryPostgres<R extends pg.QueryResultRow = pg.QueryResultRow>(
  statement: string,
  values: unknown[] = [],
  { url = process.env.TEST_DATABASE_URL as string, schema }: { url?: string; schema?: string } = {},
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, ...(schema ? { options: `-c search_path=${schema}` } : {}) })
  await client.connect()
  try {
    return (await client.query<R>(statement, values)).rows
  } finally {
    await client.end()
  }
}

/** A new empty schema on TEST_DATABASE_URL, dropped with everything in it when the test ends. */
export async function freshSchema(t: TestContext): Promise<string> {
  const schema = `portrait_it_${process.pid}_${Math.random().toString(36).slice(2, 10)}`
  await queryPostgres(`CREATE SCHEMA ${schema}`)
  deferCleanup(t, () => queryPostgres(`DROP SCHEMA ${schema} CASCADE`))
  return schema
}
