import { accessSync, constants } from 'node:fs'
import { dirname } from 'node:path'
import SQLite from 'better-sqlite3'

// Faults of the file, not of the statement: read-only (file, directory or mount), cannot open, I/O error.
const FILE_FAULT = /^SQLITE_(READONLY|CANTOPEN|IOERR)/
const BUSY = /^SQLITE_BUSY/
// At most one reopening attempt per this many ms, whatever the traffic.
const REOPEN_INTERVAL_MS = 1000

export const SQLITE_BUSY_TIMEOUT_MS = 5000

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : ''
}

/**
 * Throws unless this connection can write. `BEGIN IMMEDIATE` succeeds even on a read-only connection
 * (measured), so the probe is a write statement that touches no row: it must open a write transaction,
 * which a read-only file refuses with SQLITE_READONLY, and then commits nothing. A writer of another
 * process holding the lock proves the file writable; the probe does not wait for it.
 */
function probeWritable(sqlite: SQLite.Database): void {
  sqlite.pragma('busy_timeout = 0')
  try {
    sqlite.prepare('UPDATE users SET id = id WHERE 0').run()
  } catch (error) {
    if (!BUSY.test(codeOf(error))) throw error
  } finally {
    sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`)
  }
}

/**
 * The one SQLite connection, replaced by a fresh one when the file was at fault. A connection opened while
 * the file or its directory was read-only stays read-only for good (SQLite falls back to O_RDONLY at open):
 * every write answers SQLITE_READONLY even once permissions are back, until the file is opened again.
 * So after such a fault (`failed`), the next statement outside a transaction (`beforeStatement`) or a health
 * probe opens the file again, once the file and its directory are writable (checked first, so a file still
 * read-only costs two access(2) calls a second, not a reopening). Kysely runs one query at a time on this
 * connection and a transaction holds it from BEGIN to COMMIT, so no transaction ever spans two connections.
 */
export class SqliteConnection {
  #current: SQLite.Database
  #faulted = false
  #lastAttempt = 0

  constructor(
    private readonly path: string,
    private readonly configure: (sqlite: SQLite.Database) => void,
  ) {
    this.#current = this.#open()
  }

  get current(): SQLite.Database {
    return this.#current
  }

  /** Every statement error comes here; a fault of the file makes the next statement try a fresh connection. */
  failed(error: unknown): void {
    if (FILE_FAULT.test(codeOf(error))) this.#faulted = true
  }

  /** Called before each statement; cheap (one boolean) unless a fault was seen. */
  beforeStatement(): void {
    if (this.#faulted) this.#reopen()
  }

  /** Health: throws unless the database can take a write now, reopening it first if the file was at fault. */
  probe(): void {
    try {
      if (this.#faulted) this.#reopen()
      probeWritable(this.#current)
    } catch (error) {
      this.failed(error)
      if (!this.#faulted || !this.#reopen()) throw error
    }
  }

  close(): void {
    this.#current.close()
  }

  #open(): SQLite.Database {
    const sqlite = new SQLite(this.path)
    try {
      this.configure(sqlite)
    } catch (error) {
      sqlite.close()
      throw error
    }
    return sqlite
  }

  /**
   * Opens the file again once it looks writable; true if the new connection can write. SQLite shares a file's
   * WAL index between the connections of a process, so one opened beside the read-only connection would be
   * read-only too (measured): the old one is closed first. If the new one still cannot write, it serves reads
   * as the old one did.
   */
  #reopen(): boolean {
    // An in-memory database lives only in its connection; an open transaction must finish where it began.
    if (this.path === ':memory:' || this.#current.inTransaction) return false
    const now = Date.now()
    if (now - this.#lastAttempt < REOPEN_INTERVAL_MS) return false
    this.#lastAttempt = now
    if (!writable(this.path) || !writable(dirname(this.path))) return false
    try {
      this.#current.close()
    } catch {}
    try {
      this.#current = this.#open()
    } catch {
      // Writable but not openable (an I/O error, say): a read-only connection keeps reads going if it opens.
      try {
        this.#current = new SQLite(this.path, { readonly: true })
      } catch {}
      return false
    }
    try {
      probeWritable(this.#current)
    } catch {
      return false
    }
    this.#faulted = false
    return true
  }
}

/** Whether this process may write the path now (a read-only mount says no even to root). */
function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK)
    return true
  } catch {
    return false
  }
}
