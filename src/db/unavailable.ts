// Socket-level failures reaching the database server.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])
// PostgreSQL SQLSTATEs: server shutting down or starting, too many connections, a statement or an idle transaction
// ended by the server's statement_timeout / idle_in_transaction_session_timeout.
const SERVER_CODES = new Set(['57P01', '57P02', '57P03', '53300', '57014', '25P03'])
// node-postgres reports a lost or never-made connection with these messages and no code.
const DRIVER_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|not queryable/

// SQLite: the file cannot be written (read-only file, directory or mount), opened, read back, or grown (disk full).
const SQLITE_FILE_CODES = /^SQLITE_(READONLY|CANTOPEN|IOERR|FULL)/

/** Whether the error means the database could not be reached (not that a statement was wrong). */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, message, errors } = error as { code?: unknown; message?: unknown; errors?: unknown }
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || SERVER_CODES.has(code) || code.startsWith('08'))) return true
  if (typeof code === 'string' && SQLITE_FILE_CODES.test(code)) return true
  if (typeof message === 'string' && DRIVER_MESSAGES.test(message)) return true
  // Connecting to a name with several addresses fails with an AggregateError of the attempts.
  return Array.isArray(errors) && errors.length > 0 && errors.every(isDatabaseUnavailable)
}
