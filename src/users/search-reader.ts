import { Worker } from 'node:worker_threads'
import type { CompiledQuery, Kysely } from 'kysely'
import type { Database, Db } from '../db/database.js'
import type { SearchRequest, SearchResponse } from './search-worker.js'

/**
 * Runs the staff list's read-only statements. On a SQLite file they go to a worker thread with its own
 * connection (search-worker.ts): better-sqlite3 is synchronous, and a one-letter search, a count or a deep
 * page over a million rows would otherwise stop every other request for as long as it runs. PostgreSQL
 * (asynchronous already) and in-memory SQLite (which a second connection cannot see) run them on `db`.
 */
export interface SearchReader {
  run(statements: CompiledQuery[]): Promise<unknown[][]>
  close(): Promise<void>
}

export function createSearchReader(db: Db, databaseUrl: string): SearchReader {
  const path = databaseUrl.startsWith('sqlite:') ? databaseUrl.slice('sqlite:'.length) : undefined
  if (db.dialect === 'sqlite' && path && path !== ':memory:' && !path.startsWith('file:')) return new WorkerSearchReader(path)
  return new InlineSearchReader(db.kysely)
}

class InlineSearchReader implements SearchReader {
  constructor(private readonly kysely: Kysely<Database>) {}

  /** In one transaction, as in the thread: one connection, so a statement may set what the next ones see (`set local`). */
  run(statements: CompiledQuery[]): Promise<unknown[][]> {
    return this.kysely.transaction().execute(async (trx) => {
      const results: unknown[][] = []
      for (const statement of statements) results.push((await trx.executeQuery(statement)).rows as unknown[])
      return results
    })
  }

  async close(): Promise<void> {}
}

class WorkerSearchReader implements SearchReader {
  private worker: Worker | undefined
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (rows: unknown[][]) => void; reject: (error: Error) => void }>()

  constructor(private readonly path: string) {}

  run(statements: CompiledQuery[]): Promise<unknown[][]> {
    const worker = this.worker ?? this.start()
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      const request: SearchRequest = { id, statements: statements.map(({ sql, parameters }) => ({ sql, parameters })) }
      worker.postMessage(request)
    })
  }

  async close(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    await worker?.terminate()
  }

  /** Started on the first search, so instances that never list users never pay for the thread. */
  private start(): Worker {
    // From dist/ the compiled .js next to this file. From the sources (tests, tsx) the .ts file, with tsx's
    // loader registered in the thread first: Node 20 applies neither the parent's loader nor --import to a worker.
    const workerData = { path: this.path }
    const worker = import.meta.url.endsWith('.ts')
      ? new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./search-worker.ts', import.meta.url).href)}) })`,
          { eval: true, workerData },
        )
      : new Worker(new URL('./search-worker.js', import.meta.url), { workerData })
    worker.unref()
    worker.on('message', (response: SearchResponse) => {
      const waiting = this.pending.get(response.id)
      this.pending.delete(response.id)
      if ('error' in response) waiting?.reject(new Error(`user search failed: ${response.error}`))
      else waiting?.resolve(response.results)
    })
    // A crashed thread fails what it held; the next search starts a new one.
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined
      for (const waiting of this.pending.values()) waiting.reject(error)
      this.pending.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`user search thread exited (${code})`)))
    this.worker = worker
    return worker
  }
}
