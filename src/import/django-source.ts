import Database from 'better-sqlite3'
import pg from 'pg'

/** One row of a Django user table (AbstractUser plus the app's number_phone and avatar), as read. */
export interface DjangoUserRow {
  id: number
  password: string
  last_login: string | null
  is_superuser: boolean
  username: unknown
  first_name: unknown
  last_name: unknown
  email: unknown
  is_staff: boolean
  is_active: boolean
  date_joined: string
  number_phone: unknown
  avatar: string | null
}

/** Reads a Django user table in id order, in batches, never holding more than one batch. */
export interface DjangoSource {
  readonly description: string
  count(): Promise<number>
  batches(size: number): AsyncIterable<DjangoUserRow[]>
  /** The highest id the table's sequence ever handed out (deleted rows included), or 0 when unknown. */
  lastIssuedId(): Promise<number>
  close(): Promise<void>
}

const COLUMNS = [
  'id',
  'password',
  'last_login',
  'is_superuser',
  'username',
  'first_name',
  'last_name',
  'email',
  'is_staff',
  'is_active',
  'date_joined',
  'number_phone',
  'avatar',
]
// `users_users`, or `schema.users_users` on PostgreSQL: identifiers only, quoted, never interpolated raw.
const TABLE = /^(?:([A-Za-z_][A-Za-z0-9_]{0,62})\.)?([A-Za-z_][A-Za-z0-9_]{0,62})$/

export class SourceError extends Error {}

function quotedTable(table: string): { schema?: string; name: string; sql: string } {
  const match = TABLE.exec(table)
  if (!match) throw new SourceError(`--table must be a table name such as users_users (or schema.users_users), not ${JSON.stringify(table)}`)
  const [, schema, name] = match as unknown as [string, string | undefined, string]
  return { schema, name, sql: schema ? `"${schema}"."${name}"` : `"${name}"` }
}

const SELECT = COLUMNS.map((column) => `"${column}"`).join(', ')

/** Django stores aware datetimes in UTC; SQLite as `YYYY-MM-DD HH:MM:SS[.ffffff]`, PostgreSQL as timestamptz. */
export function djangoTimestamp(value: unknown): string | null {
  if (value === null || value === undefined || value === '') return null
  if (value instanceof Date) return value.toISOString()
  const text = String(value).trim().replace(' ', 'T')
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(text) ? text : `${text}Z`
  const date = new Date(zoned)
  if (Number.isNaN(date.getTime())) throw new SourceError(`not a timestamp: ${JSON.stringify(value)}`)
  return date.toISOString()
}

function normalise(row: Record<string, unknown>): DjangoUserRow {
  return {
    id: Number(row.id),
    password: String(row.password ?? ''),
    last_login: djangoTimestamp(row.last_login),
    date_joined: djangoTimestamp(row.date_joined) as string,
    is_superuser: Boolean(row.is_superuser),
    is_staff: Boolean(row.is_staff),
    is_active: Boolean(row.is_active),
    username: row.username,
    first_name: row.first_name ?? '',
    last_name: row.last_name ?? '',
    email: row.email ?? '',
    number_phone: row.number_phone ?? '',
    avatar: row.avatar === null || row.avatar === undefined || row.avatar === '' ? null : String(row.avatar),
  }
}

/** `sqlite:PATH` or `postgres://…` (`postgresql://` too). */
export function openDjangoSource(from: string, table: string): DjangoSource {
  const target = quotedTable(table)
  if (from.startsWith('sqlite:')) return new SqliteSource(from.slice('sqlite:'.length), target)
  if (/^postgres(ql)?:\/\//.test(from)) return new PostgresSource(from, target)
  throw new SourceError('--from must be sqlite:PATH or postgres://user@host:5432/db')
}

class SqliteSource implements DjangoSource {
  readonly description: string
  private readonly db: Database.Database

  constructor(
    path: string,
    private readonly table: { name: string; sql: string },
  ) {
    this.description = `sqlite:${path} (table ${table.name})`
    try {
      this.db = new Database(path, { readonly: true, fileMustExist: true })
    } catch (error) {
      throw new SourceError(`cannot open ${path}: ${(error as Error).message}`)
    }
  }

  async count(): Promise<number> {
    try {
      return (this.db.prepare(`select count(*) as n from ${this.table.sql}`).get() as { n: number }).n
    } catch (error) {
      throw new SourceError(`cannot read table ${this.table.name}: ${(error as Error).message}`)
    }
  }

  async *batches(size: number): AsyncIterable<DjangoUserRow[]> {
    // iterate() steps through the result one row at a time: memory holds one batch, whatever the table's size.
    let batch: DjangoUserRow[] = []
    for (const row of this.db.prepare(`select ${SELECT} from ${this.table.sql} order by "id"`).iterate()) {
      batch.push(normalise(row as Record<string, unknown>))
      if (batch.length === size) {
        yield batch
        batch = []
      }
    }
    if (batch.length) yield batch
  }

  async lastIssuedId(): Promise<number> {
    try {
      const row = this.db.prepare('select seq from sqlite_sequence where name = ?').get(this.table.name) as { seq: number } | undefined
      return Number(row?.seq ?? 0)
    } catch {
      return 0 // no AUTOINCREMENT table in this file
    }
  }

  async close(): Promise<void> {
    this.db.close()
  }
}

class PostgresSource implements DjangoSource {
  readonly description: string
  private readonly client: pg.Client
  private connected?: Promise<void>

  constructor(
    url: string,
    private readonly table: { schema?: string; name: string; sql: string },
  ) {
    const shown = new URL(url)
    shown.password = shown.password ? '***' : ''
    this.description = `${shown.toString()} (table ${table.schema ? `${table.schema}.` : ''}${table.name})`
    this.client = new pg.Client({ connectionString: url })
  }

  private async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    this.connected ??= this.client.connect().then(() => undefined)
    await this.connected
    try {
      return (await this.client.query<R>(text, values)).rows
    } catch (error) {
      throw new SourceError(`cannot read table ${this.table.name}: ${(error as Error).message}`)
    }
  }

  async count(): Promise<number> {
    const [row] = await this.query<{ n: string }>(`select count(*) as n from ${this.table.sql}`)
    return Number(row?.n ?? 0)
  }

  async *batches(size: number): AsyncIterable<DjangoUserRow[]> {
    // Keyset pagination on the primary key: each batch is one indexed range scan, no open cursor between batches.
    let after = -Number.MAX_SAFE_INTEGER
    for (;;) {
      const rows = await this.query(`select ${SELECT} from ${this.table.sql} where "id" > $1::bigint order by "id" limit $2`, [after, size])
      if (rows.length === 0) return
      after = Number(rows[rows.length - 1]?.id)
      yield rows.map(normalise)
      if (rows.length < size) return
    }
  }

  async lastIssuedId(): Promise<number> {
    const qualified = this.table.schema ? `"${this.table.schema}"."${this.table.name}"` : `"${this.table.name}"`
    const [row] = await this.query<{ last: string | null }>(
      'select pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass) as last',
      [qualified, 'id'],
    ).catch(() => [{ last: null }])
    return Number(row?.last ?? 0)
  }

  async close(): Promise<void> {
    if (this.connected) await this.client.end()
  }
}
