import { CompiledQuery, type Kysely, sql } from 'kysely'
import type { Database, Dialect } from '../db/database.js'
import { comparable } from './field-rules.js'
import { skeleton } from './lookalikes.js'
import { GRAM_INDEX, gramToken, PG_GRAMS_EXPRESSION, SEARCH_COLUMNS, TRIGRAM_LENGTH } from './search-index.js'
import type { SearchReader } from './search-reader.js'
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

/**
 * PostgreSQL, one- and two-character searches: how many ids the first step walks in id order before the gram
 * index takes over (see shortSearchPostgres). 5,000 rows of LIKEs cost about 10 ms.
 */
export const SHORT_SEARCH_WINDOW = 5000

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

  /**
   * The ids of the active superusers; on PostgreSQL their rows stay locked until the transaction ends, so two
   * operators deactivating two of them at once are taken one after the other (SQLite has one writer anyway).
   */
  async activeSuperuserIds(executor: Executor): Promise<number[]> {
    const rows = await executor
      .selectFrom('users')
      .select('id')
      .where('is_superuser', '=', this.dialect === 'postgres' ? true : 1)
      .where('is_active', '=', this.dialect === 'postgres' ? true : 1)
      .orderBy('id')
      .$if(this.dialect === 'postgres', (query) => query.forUpdate())
      .execute()
    return rows.map((row) => row.id)
  }

  async delete(executor: Executor, id: number): Promise<boolean> {
    const result = await executor.deleteFrom('users').where('id', '=', id).executeTakeFirst()
    return result.numDeletedRows === 1n
  }

  /**
   * One page of users ordered by id, optionally filtered by a case-insensitive substring of the username,
   * email or names, through `reader` (off the event loop on SQLite, see search-reader.ts). Every kind of
   * search returns the rows the plain scan (`lower(column) like '%…%'`) returns; only the way there differs:
   *
   * - three characters or more: the trigram index (search-index.ts): SQLite's FTS5 trigram table, which holds
   *   the same lower-cased text the scan compares; on PostgreSQL the scan's SQL, which pg_trgm's GIN indexes
   *   serve when the extension was available.
   * - one or two characters (no trigram to look up): the gram index of every one- and two-character
   *   substring (search-index.ts), on both dialects.
   *
   * The count stops at `exactCountLimit`: above it `count` is that limit and `countExact` false, so no request
   * numbers 100,000 matches. `after` (keyset) starts after that id instead of skipping `offset` rows; `more`
   * says whether a row follows the page.
   */
  async search(executor: Executor, reader: SearchReader, options: SearchOptions): Promise<SearchPage> {
    const { search } = options
    const lowered = search.toLowerCase()
    const short = lowered !== '' && [...lowered].length < TRIGRAM_LENGTH
    if (short && this.dialect === 'postgres') return this.shortSearchPostgres(executor, reader, lowered, options)
    let statements: CompiledQuery[]
    if (this.dialect === 'sqlite' && lowered !== '') {
      statements = short
        ? this.ftsQueries(executor, GRAM_INDEX, `"${gramToken(lowered)}"`, options)
        : this.ftsQueries(executor, 'users_search', `"${lowered.replace(/"/g, '""')}"`, options)
    } else {
      statements = this.scanQueries(executor, lowered, options)
    }
    const [countRows = [], pageRows = []] = await reader.run(statements)
    return this.page(countOf(countRows), pageRows as UserRow[], options)
  }

  private page(counted: number, rows: UserRow[], { limit, exactCountLimit }: SearchOptions): SearchPage {
    return {
      count: Math.min(counted, exactCountLimit),
      countExact: counted <= exactCountLimit,
      rows: rows.slice(0, limit),
      more: rows.length > limit,
    }
  }

  /**
   * PostgreSQL, one or two characters. The gram index finds rare grams at once, but the planner would walk
   * the primary key for a common one and evaluate the gram function (about 100 µs) on every row it passes,
   * so the index is only asked where the cheap LIKEs are not enough:
   *
   * 1. the LIKEs alone over the next SHORT_SEARCH_WINDOW ids in order (the page) and over the first ones (the
   *    count; one walk when both start at the beginning): a common gram fills the page and the capped count
   *    there;
   * 2. only for what step 1 left open, the rest of the ids through the gram index, in a transaction that
   *    allows no other plan (bitmap scans: the index's containment is exact, so the function never runs).
   *
   * Both steps are the scan's condition on disjoint id ranges, so the rows are the scan's rows.
   */
  private async shortSearchPostgres(executor: Executor, reader: SearchReader, lowered: string, options: SearchOptions): Promise<SearchPage> {
    const { limit, offset, after, exactCountLimit } = options
    const like = this.matches(lowered)
    const grams = sql<boolean>`${sql.raw(PG_GRAMS_EXPRESSION)} @> array[${lowered}]::text[]`
    const start = after ?? 0
    const skip = after === undefined ? offset : 0
    const need = skip + limit + 1
    const countLimit = exactCountLimit + 1
    // The ids matching in (from, from + window], in order. From the start (no `after`) one walk serves both.
    const walk = (from: number, rows: number) =>
      this.users(executor).select('id').where('id', '>', from).where('id', '<=', from + SHORT_SEARCH_WINDOW).where(like).orderBy('id').limit(rows).compile()
    const shared = start === 0
    const [top = [], first = [], second = []] = await reader.run([
      executor.selectFrom('users').select((eb) => eb.fn.max('id').as('max')).compile(),
      walk(0, shared ? Math.max(countLimit, need) : countLimit),
      ...(shared ? [] : [walk(start, need)]),
    ])
    const maxId = Number((top[0] as { max: number | null } | undefined)?.max ?? 0)
    const ids = (rows: unknown[]) => (rows as { id: number }[]).map((row) => row.id)
    const counted = Math.min(first.length, countLimit)
    const pageIds = shared ? ids(first).slice(0, need) : ids(second)
    const countOpen = counted < countLimit && SHORT_SEARCH_WINDOW < maxId
    const pageOpen = pageIds.length < need && start + SHORT_SEARCH_WINDOW < maxId
    const fetch = pageIds.slice(skip)
    if (!countOpen && !pageOpen && fetch.length === 0) return this.page(counted, [], options)

    // The page's rows, and what step 1 left open through the gram index (bitmap scans only).
    const statements = [CompiledQuery.raw('set local enable_seqscan = off'), CompiledQuery.raw('set local enable_indexscan = off')]
    statements.push(this.users(executor).selectAll().where('id', 'in', fetch.length ? fetch : [0]).orderBy('id').compile())
    if (countOpen) {
      const rest = this.users(executor).select(sql<number>`1`.as('one')).where('id', '>', SHORT_SEARCH_WINDOW).where(grams).where(like).limit(countLimit - counted)
      statements.push(executor.selectFrom(rest.as('capped')).select((eb) => eb.fn.countAll<number>().as('count')).compile())
    }
    if (pageOpen) {
      statements.push(
        this.users(executor)
          .selectAll()
          .where('id', '>', start + SHORT_SEARCH_WINDOW)
          .where(grams)
          .where(like)
          .orderBy('id')
          .limit(need - Math.max(skip, pageIds.length))
          .$if(skip > pageIds.length, (query) => query.offset(skip - pageIds.length))
          .compile(),
      )
    }
    const [fetched = [], ...results] = (await reader.run(statements)).slice(2)
    const total = counted + (countOpen ? countOf(results.shift() ?? []) : 0)
    const rows = [...(fetched as UserRow[]), ...(pageOpen ? ((results.shift() ?? []) as UserRow[]) : [])]
    return this.page(total, rows, options)
  }

  private users(executor: Executor) {
    return executor.selectFrom('users')
  }

  /**
   * The scan's condition, `lower(column) like '%…%'` over the four columns. Unicode-aware on both: PostgreSQL's
   * lower() follows its locale, SQLite gets JS's toLowerCase (see createDb). On SQLite the stored lower-case
   * copies are compared as they are (toLowerCase gives the same text again): half the calls into JavaScript
   * on a scan that makes four per row.
   */
  private matches(lowered: string) {
    const pattern = `%${lowered.replace(/[\\%_]/g, (char) => `\\${char}`)}%`
    const lowerOf = (column: (typeof SEARCH_COLUMNS)[number]) =>
      this.dialect === 'postgres' ? sql`lower(${sql.ref(column)})` : column.endsWith('_lower') ? sql.ref(column) : sql`unicode_lower(${sql.ref(column)})`
    return sql<boolean>`(${sql.join(
      SEARCH_COLUMNS.map((column) => sql`${lowerOf(column)} like ${pattern} escape '\\'`),
      sql` or `,
    )})`
  }

  /** The scan (PostgreSQL three characters or more, which pg_trgm's indexes serve; the list without a search). */
  private scanQueries(executor: Executor, lowered: string, { limit, offset, after, exactCountLimit }: SearchOptions): CompiledQuery[] {
    const base = executor.selectFrom('users').$if(lowered !== '', (query) => query.where(this.matches(lowered)))
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

  /**
   * SQLite's FTS5 tables, `table` (users_search or the gram table) matched against one phrase. FTS5 returns
   * rowids in order, so the page and the capped count stop after the rows they need.
   */
  private ftsQueries(executor: Executor, table: string, phrase: string, { limit, offset, after, exactCountLimit }: SearchOptions): CompiledQuery[] {
    const fts = sql.table(table)
    const count = sql`select count(*) as count from (select 1 from ${fts} where ${fts} match ${phrase} limit ${exactCountLimit + 1})`
    const from = after === undefined ? sql`` : sql` and ${fts}.rowid > ${after}`
    const skip = after === undefined && offset > 0 ? sql` offset ${offset}` : sql``
    const page = sql`select users.* from ${fts} join users on users.id = ${fts}.rowid
      where ${fts} match ${phrase}${from} order by ${fts}.rowid limit ${limit + 1}${skip}`
    return [count.compile(executor), page.compile(executor)]
  }

  async referencedAvatars(executor: Executor): Promise<Set<string>> {
    const rows = await executor.selectFrom('users').select('avatar').where('avatar', 'is not', null).execute()
    return new Set(rows.map((row) => row.avatar as string))
  }
}

function countOf(rows: unknown[]): number {
  return Number((rows[0] as { count: number | bigint } | undefined)?.count ?? 0)
}
