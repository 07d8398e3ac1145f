import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely'
import pg from 'pg'

const TRANSACTION_START = /^\s*(begin|start\s+transaction)\b/i
const TRANSACTION_END = /^\s*(commit|rollback|end|abort)\s*;?\s*$/i

/**
 * The pool Kysely gets: it hands out pooled clients that are destroyed on release, never reused, once they
 * may carry state the next borrower would inherit.
 *
 * Kysely releases a connection the same way whatever happened on it. After a timed-out statement, node-postgres
 * has answered the caller but keeps the statement on the wire; a `BEGIN` caught that way runs when the server
 * answers again, on a connection back in the pool, and every later single-statement write on it lands in a
 * transaction nobody commits (acknowledged, then lost). So a client is destroyed when it saw a timeout, a
 * network error or any error inside a transaction, or when it is released with a transaction open for any
 * reason; and once it failed it refuses further statements at once (Kysely's `ROLLBACK` after a timed-out
 * statement would otherwise wait out another timeout behind it). A server-reported error on a single statement
 * outside a transaction (a unique violation) leaves the connection clean and it is kept.
 */
export class GuardedPool implements PostgresPool {
  private readonly guards = new WeakMap<pg.PoolClient, GuardedClient>()

  constructor(private readonly pool: pg.Pool) {}

  async connect(): Promise<PostgresPoolClient> {
    const client = await this.pool.connect()
    let guard = this.guards.get(client)
    if (!guard) {
      guard = new GuardedClient(client)
      this.guards.set(client, guard)
    }
    return guard
  }

  end(): Promise<void> {
    return this.pool.end()
  }
}

class GuardedClient implements PostgresPoolClient {
  /** The error that made this connection unfit for reuse; set only while checked out (a destroyed client never returns). */
  private failure: unknown
  private inTransaction = false

  constructor(private readonly client: pg.PoolClient) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>
  query(): never
  async query<R>(sql?: string, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> {
    if (typeof sql !== 'string') throw new Error('cursors are not supported on this pool')
    if (this.failure !== undefined) throw this.failure
    try {
      const result = await this.client.query(sql, parameters as unknown[])
      if (TRANSACTION_START.test(sql)) this.inTransaction = true
      else if (TRANSACTION_END.test(sql)) this.inTransaction = false
      return result as unknown as PostgresQueryResult<R>
    } catch (error) {
      const clean = error instanceof pg.DatabaseError && error.code !== '57014' && !this.inTransaction && !TRANSACTION_START.test(sql)
      if (!clean) this.failure = error
      throw error
    }
  }

  release(destroy?: boolean): void {
    // The transaction status is the server's own word at its last ReadyForQuery: 'T' or 'E' is an open transaction.
    const status = this.client.getTransactionStatus()
    const reusable = !destroy && this.failure === undefined && !this.inTransaction && status !== 'T' && status !== 'E'
    const failure = this.failure ?? new Error('connection released with a transaction open')
    this.failure = undefined
    this.inTransaction = false
    // An error passed to release() makes the pool destroy the client instead of keeping it.
    this.client.release(reusable ? undefined : failure instanceof Error ? failure : true)
  }
}
