/** The unique index a write violated, or undefined when the error is something else. */
export function violatedUniqueIndex(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const { code, message, constraint } = error as { code?: string; message?: string; constraint?: string }
  if (code === '23505') return constraint // PostgreSQL
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    // SQLite names columns, not the index: "UNIQUE constraint failed: users.email_lower"
    const column = /failed: \w+\.(\w+)/.exec(message ?? '')?.[1]
    return column ? `users_${column}_key` : 'unknown'
  }
  return undefined
}
