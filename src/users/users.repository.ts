import { CompiledQuery, type Kysely, sql } from 'kysely'
import type { Database, Dialect } from '../db/database.js'
import { comparable } from './field-rules.js'
import { skeleton } from './lookalikes.js'
import type { SearchReader } from './search-reader.js'
import { SEARCH_COLUMNS } from './search-index.js'
import type { NewUserRow, UserRow, UserRowUpdate } from './users.table.js'

export interface SearchOptions {
  /** Trimmed; '' lists everyone. */
  search: string
  limit: number
  offset: number
  /** Keyset paging: only ids above this one (offset is then ignored). */
  after?: number
  /** Counts stop here (Config.usersExactCountLimit). */
  exactCountLimit: number
}

export interface SearchPage {
  count: number
  countExact: boolean
  rows: UserRow[]
  /** A row follows this page. */
  more: boolean
}

type Executor = Kysely<Database>

/** The lower-cased copies and the skeleton are derived here from the names, so no caller can store one computed differently. */
type Derived = 'username_lower' | 'username_skeleton' | 'email_lower'
export type NewUser = Omit<NewUserRow, Derived>
export type UserChanges = Omit<UserRowUpdate, Derived>

/** The columns a profile write may set (never id or version, which the statement itself manages). */
const WRITABLE_COLUMNS = new Set([
  'username',
  'username_lower',
  'username_skeleton',
  'email',
  'email_lower',
  'password_hash',
  'first_name',
  'last_name',
  'number_phone',
  'avatar',
  'last_login',
  'is_active',
  'is_staff',
  'is_superuser',
  'email_verified',
])

/** Data access for users; the caller owns the transaction and passes it as the executor. */
export class UsersRepository {
  constructor(private readonly dialect: Dialect) {}

  findById(executor: Executor, id: number): Promise<UserRow | undefined> {
    return executor.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
  }

  /** Locks the row until the transaction ends where the dialect can (SQLite has one writer anyway). */
  findByIdForUpdate(executor: Executor, id: number): Promise<UserRow | undefined> {
    return executor
      .selectFrom('users')
      .selectAll()
      .where('id', '=', id)
      .$if(this.dialect === 'postgres', (query) => query.forUpdate())
      .executeTakeFirst()
  }

  findByLogin(executor: Executor, field: 'email_lower' | 'username_lower', value: string): Promise<UserRow | undefined> {
    return executor.selectFrom('users').selectAll().where(field, '=', value).executeTakeFirst()
  }

  /**
   * Which of the given names belong to someone other than `exceptId`: the email compared as `comparable`
   * does, the username also by its skeleton, so a name that looks like another user's counts as taken.
   */
  async takenBy(
    executor: Executor,
    names: { username?: string; email?: string },
    exceptId?: number,
  ): Promise<{ username: boolean; email: boolean }> {
    const username = names.username === undefined ? undefined : comparable(names.username)
    const lookalike = names.username === undefined ? undefined : skeleton(names.username)
    const email = names.email === undefined ? undefined : comparable(names.email)
    const rows = await executor
      .selectFrom('users')
      .select(['username_lower', 'username_skeleton', 'email_lower'])
      .where((eb) =>
        eb.or([
          ...(username !== undefined ? [eb('username_lower', '=', username)] : []),
          ...(lookalike !== undefined ? [eb('username_skeleton', '=', lookalike)] : []),
          ...(email !== undefined ? [eb('email_lower', '=', email)] : []),
        ]),
      )
      .$if(exceptId !== undefined, (query) => query.where('id', '!=', exceptId as number))
      .execute()
    return {
      username: rows.some((row) => row.username_lower === username || row.username_skeleton === lookalike),
      email: rows.some((row) => row.email_lower === email),
    }
  }

  insert(executor: Executor, user: NewUser): Promise<UserRow> {
    const row: NewUserRow = {
      ...user,
      username_lower: comparable(user.username),
      username_skeleton: skeleton(user.username),
      email_lower: comparable(user.email),
    }
    return executor.insertInto('users').values(row).returningAll().executeTakeFirstOrThrow()
  }

  /**
   * Applies the changes and bumps the version; undefined when the row is gone or its version moved on.
   *
   * Every profile write runs this statement, so it is written as SQL text instead of through the query
   * builder: building and compiling it with Kysely was a tenth of a JSON PATCH's CPU time (BENCHMARKS.md).
   * Column names come from a fixed list, every value is a bound parameter.
   */
  async update(executor: Executor, id: number, changes: UserChanges, expectedVersion?: number): Promise<UserRow | undefined> {
    const row: UserRowUpdate = { ...changes }
    if (changes.username !== undefined) {
      row.username_lower = comparable(changes.username)
      row.username_skeleton = skeleton(changes.username)
    }
    if (changes.email !== undefined) row.email_lower = comparable(changes.email)
    const columns = Object.keys(row).filter((column) => row[column as keyof UserRowUpdate] !== undefined)
    const parameters: unknown[] = columns.map((column) => {
      if (!WRITABLE_COLUMNS.has(column)) throw new Error(`users.${column} cannot be updated`)
      return row[column as keyof UserRowUpdate]
    })
    // The n-th bound parameter, as each dialect spells it.
    const param = (n: number) => (this.dialect === 'postgres' ? `$${n}` : '?')
    const assignments = columns.map((column, index) => `"${column}" = ${param(index + 1)}`)
    parameters.push(id)
    let text = `update "users" set ${[...assignments, '"version" = "version" + 1'].join(', ')} where "id" = ${param(parameters.length)}`
    if (expectedVersion !== undefined) {
      parameters.push(expectedVersion)
      text += ` and "version" = ${param(parameters.length)}`
    }
    const { rows } = await executor.executeQuery<UserRow>(CompiledQuery.raw(`${text} returning *`, parameters))
    return rows[0]
  }

  /**
   * Replaces a legacy password hash that just matched, only if it is still the stored one: a password change
   * committed meanwhile wins. The version (ETag) stays: the hash is never part of the representation.
   */
  async upgradePasswordHash(executor: Executor, id: number, oldHash: string, newHash: string): Promise<boolean> {
    const result = await executor
      .updateTable('users')
      .set({ password_hash: newHash })
      .where('id', '=', id)
      .where('password_hash', '=', oldHash)
      .executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  async delete(executor: Executor, id: number): Promise<boolean> {
    const result = await executor.deleteFrom('users').where('id', '=', id).executeTakeFirst()
    return result.numDeletedRows === 1n
  }

  /**
   * One page of users ordered by id, optionally filtered by a case-insensitive substring of the username,
   * email or names, through `reader` (off the event loop on SQLite, see search-reader.ts).
   *
   * - SQLite, three characters or more: the FTS5 trigram table (search-index.ts), which holds the same
   *   lower-cased text the scan compares, so the rows are the scan's rows.
   * - SQLite, one or two characters (no trigram to look up): the scan, in the reader's thread.
   * - PostgreSQL: the scan's SQL; pg_trgm's GIN indexes serve it when the extension was available.
   *
   * The count stops at `exactCountLimit`: above it `count` is that limit and `countExact` false, so no request
   * numbers 100,000 matches. `after` (keyset) starts after that id instead of skipping `offset` rows; `more`
   * says whether a row follows the page.
   */
  async search(executor: Executor, reader: SearchReader, options: SearchOptions): Promise<SearchPage> {
    const { search, limit, exactCountLimit } = options
    const lowered = search.toLowerCase()
    const [countRows = [], pageRows = []] = await reader.run(
      this.dialect === 'sqlite' && [...lowered].length >= 3
        ? this.indexedQueries(executor, lowered, options)
        : this.scanQueries(executor, lowered, options),
    )
    const counted = Number((countRows[0] as { count: number | bigint } | undefined)?.count ?? 0)
    const rows = pageRows as UserRow[]
    return {
      count: Math.min(counted, exactCountLimit),
      countExact: counted <= exactCountLimit,
      rows: rows.slice(0, limit),
      more: rows.length > limit,
    }
  }

  /** Today's scan: `lower(column) like '%…%'` over the four columns (the fallback, and short searches). */
  private scanQueries(executor: Executor, lowered: string, { limit, offset, after, exactCountLimit }: SearchOptions) {
    const pattern = `%${lowered.replace(/[\\%_]/g, (char) => `\\${char}`)}%`
    // Unicode-aware on both: PostgreSQL's lower() follows its locale, SQLite gets JS's toLowerCase (see createDb).
    // On SQLite the stored lower-case copies are compared as they are (toLowerCase gives the same text again):
    // half the calls into JavaScript on a scan that makes four per row.
    const lowerOf = (column: (typeof SEARCH_COLUMNS)[number]) =>
      this.dialect === 'postgres' ? sql`lower(${sql.ref(column)})` : column.endsWith('_lower') ? sql.ref(column) : sql`unicode_lower(${sql.ref(column)})`
    const base = executor.selectFrom('users').$if(lowered !== '', (query) =>
      query.where((eb) => eb.or(SEARCH_COLUMNS.map((column) => sql<boolean>`${lowerOf(column)} like ${pattern} escape '\\'`))),
    )
    const count = executor
      .selectFrom(base.select(sql<number>`1`.as('one')).limit(exactCountLimit + 1).as('capped'))
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .compile()
    const page = base
      .selectAll()
      .$if(after !== undefined, (query) => query.where('id', '>', after as number))
      .orderBy('id')
      .limit(limit + 1)
      .$if(after === undefined && offset > 0, (query) => query.offset(offset))
      .compile()
    return [count, page]
  }

  /** SQLite's FTS5 trigram table: the lower-cased text as one phrase, matched in any of the four columns. */
  private indexedQueries(executor: Executor, lowered: string, { limit, offset, after, exactCountLimit }: SearchOptions) {
    const phrase = `"${lowered.replace(/"/g, '""')}"`
    const count = sql`select count(*) as count from (select 1 from users_search where users_search match ${phrase} limit ${exactCountLimit + 1})`
    const from = after === undefined ? sql`` : sql` and users_search.rowid > ${after}`
    const skip = after === undefined && offset > 0 ? sql` offset ${offset}` : sql``
    const page = sql`select users.* from users_search join users on users.id = users_search.rowid
      where users_search match ${phrase}${from} order by users_search.rowid limit ${limit + 1}${skip}`
    return [count.compile(executor), page.compile(executor)]
  }

  async referencedAvatars(executor: Executor): Promise<Set<string>> {
    const rows = await executor.selectFrom('users').select('avatar').where('avatar', 'is not', null).execute()
    return new Set(rows.map((row) => row.avatar as string))
  }
}
