import type SQLite from 'better-sqlite3'
import type { SqliteDatabase, SqliteStatement } from 'kysely'

/**
 * better-sqlite3 behind Kysely, with each distinct SQL text prepared once. Kysely's SQLite driver calls
 * `prepare` for every query, and parsing the statement again was a tenth of a profile update's CPU time.
 * Reusing a statement is safe here: Kysely runs one query at a time on the one connection, and every
 * execution binds its own parameters. The least recently used statements are dropped past `capacity`
 * (dynamic queries such as a partial UPDATE produce a bounded but not tiny set of texts).
 */
export function withStatementCache(sqlite: SQLite.Database, capacity = 256): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>()
  return {
    close: () => sqlite.close(),
    prepare(sql: string): SqliteStatement {
      let statement = statements.get(sql)
      if (statement) {
        // Re-inserting moves it to the back of the Map's order, which is our recency order.
        statements.delete(sql)
      } else {
        statement = sqlite.prepare(sql)
        if (statements.size >= capacity) statements.delete(statements.keys().next().value as string)
      }
      statements.set(sql, statement)
      return statement
    },
  }
}
