import type SQLite from 'better-sqlite3'
import type { SqliteDatabase, SqliteStatement } from 'kysely'
import type { SqliteConnection } from './sqlite-connection.js'

/**
 * better-sqlite3 behind Kysely, with each distinct SQL text prepared once. Kysely's SQLite driver calls
 * `prepare` for every query, and parsing the statement again was a tenth of a profile update's CPU time.
 * Reusing a statement is safe here: Kysely runs one query at a time on the one connection, and every
 * execution binds its own parameters. The least recently used statements are dropped past `capacity`
 * (dynamic queries such as a partial UPDATE produce a bounded but not tiny set of texts).
 *
 * Every failure is shown to the connection, which reopens the file after a fault of the file (see
 * SqliteConnection); the cache starts again empty on a new connection.
 */
export function withStatementCache(connection: SqliteConnection, capacity = 256): SqliteDatabase {
  const statements = new Map<string, SqliteStatement>()
  let preparedOn: SQLite.Database = connection.current
  const guard = <T>(run: () => T): T => {
    try {
      return run()
    } catch (error) {
      connection.failed(error)
      throw error
    }
  }
  return {
    close: () => connection.close(),
    prepare(sql: string): SqliteStatement {
      connection.beforeStatement()
      const sqlite = connection.current
      if (sqlite !== preparedOn) {
        statements.clear()
        preparedOn = sqlite
      }
      let statement = statements.get(sql)
      if (statement) {
        // Re-inserting moves it to the back of the Map's order, which is our recency order.
        statements.delete(sql)
      } else {
        const prepared = guard(() => sqlite.prepare(sql))
        statement = {
          reader: prepared.reader,
          all: (parameters) => guard(() => prepared.all(parameters)),
          run: (parameters) => guard(() => prepared.run(parameters)),
          iterate: (parameters) => guard(() => prepared.iterate(parameters)),
        }
        if (statements.size >= capacity) statements.delete(statements.keys().next().value as string)
      }
      statements.set(sql, statement)
      return statement
    },
  }
}
