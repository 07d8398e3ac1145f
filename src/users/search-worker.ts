import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import SQLite from 'better-sqlite3'

/**
 * The thread that runs the staff list's statements on SQLite (see SearchReader): its own read-only
 * connection to the same WAL file, so a query whose cost grows with the table never holds the server's event
 * loop. It answers one message at a time.
 */
export interface SearchRequest {
  id: number
  statements: { sql: string; parameters: readonly unknown[] }[]
}
export type SearchResponse = { id: number; results: unknown[][] } | { id: number; error: string }

const { path } = workerData as { path: string }
// On Linux a thread has its own nice value: this one yields the CPU to the main thread whenever both want
// the same core, so a long scan here does not stretch GET /me there. Elsewhere it runs at normal priority.
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
  if (Number.isSafeInteger(tid) && tid > 0) setPriority(tid, 10)
} catch {}
const db = new SQLite(path, { readonly: true, fileMustExist: true })
db.pragma('busy_timeout = 5000')
// The same function the app's connection has (database.ts): the scan for one- and two-letter searches uses it.
db.function('unicode_lower', { deterministic: true }, (value) => (typeof value === 'string' ? value.toLowerCase() : value))
const cache = new Map<string, SQLite.Statement>()

parentPort?.on('message', (request: SearchRequest) => {
  let response: SearchResponse
  try {
    // One read transaction: the count and the page see the same snapshot.
    const results = db.transaction(() =>
      request.statements.map(({ sql, parameters }) => {
        let statement = cache.get(sql)
        if (!statement) {
          statement = db.prepare(sql)
          if (cache.size < 100) cache.set(sql, statement)
        }
        return statement.all(...parameters) as unknown[]
      }),
    )()
    response = { id: request.id, results }
  } catch (error) {
    response = { id: request.id, error: error instanceof Error ? error.message : String(error) }
  }
  parentPort?.postMessage(response)
})
