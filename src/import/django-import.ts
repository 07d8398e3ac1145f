import { closeSync, openSync, writeSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { isAbsolute, relative, resolve } from 'node:path'
import { sql } from 'kysely'
import { hashFormat } from '../auth/django-hashers.js'
import { InvalidImageError, processAvatar } from '../avatars/image.js'
import type { AvatarStorage } from '../avatars/storage.js'
import { newAvatarName } from '../avatars/storage.js'
import { ConcurrencyLimit } from '../concurrency.js'
import type { Config } from '../config.js'
import { violatedUniqueIndex } from '../db/constraints.js'
import type { Db } from '../db/database.js'
import { cleanText, comparable, type TextField } from '../users/field-rules.js'
import { skeleton } from '../users/lookalikes.js'
import type { NewUser, UsersRepository } from '../users/users.repository.js'
import type { DjangoSource, DjangoUserRow } from './django-source.js'

export const IMPORT_BATCH_SIZE = 500

export type Outcome = 'imported' | 'would_import' | 'already_imported' | 'skipped'
export type AvatarOutcome = 'imported' | 'missing' | 'invalid'

/** What happened to one source row; every row gets one, in id order. */
export interface RowReport {
  id: number
  username: string
  outcome: Outcome
  /** Skipped: why, in words. */
  reason?: string
  /** Skipped for a collision: the user that keeps the name. */
  kept_id?: number
  hash_format: string
  avatar?: { source: string; outcome: AvatarOutcome; reason?: string }
}

export interface ImportSummary {
  source: string
  dryRun: boolean
  read: number
  imported: number
  alreadyImported: number
  skipped: number
  /** Skipped rows per kind of reason. */
  skippedBy: Record<string, number>
  /** The first skipped rows, for the printed summary (all of them are in the report). */
  skippedExamples: RowReport[]
  avatars: Record<AvatarOutcome, number>
  avatarProblems: RowReport[]
  hashFormats: Record<string, number>
  /** The id the next sign-up gets, or would get after a real run. */
  nextId: number
}

export interface ImportOptions {
  source: DjangoSource
  db: Db
  users: UsersRepository
  /** Where avatars go; unused (and may be omitted) in a dry run. */
  storage?: AvatarStorage
  config: Pick<Config, 'avatarSize' | 'avatarMaxBytes' | 'imageConcurrency'>
  mediaRoot?: string
  dryRun?: boolean
  /** False when the target has no users table yet (a dry run before any migration): judged as empty. */
  targetExists?: boolean
  batchSize?: number
  /** Called after each batch with the rows done so far. */
  onProgress?: (done: number) => void
  /** Called with each batch's row outcomes (the --report writer). */
  onRows?: (rows: RowReport[]) => void
}

const EXAMPLES = 20

interface Candidate {
  source: DjangoUserRow
  report: RowReport
  user?: NewUser
  keys?: { id: number; username: string; skeleton: string; email: string }
}

/** Names already held, by the target database and (in a dry run) by the rows this run would have written. */
interface Holders {
  ids: Map<number, { username_lower: string; email_lower: string }>
  usernames: Map<string, number>
  skeletons: Map<string, number>
  emails: Map<string, number>
}

const emptyHolders = (): Holders => ({ ids: new Map(), usernames: new Map(), skeletons: new Map(), emails: new Map() })

/**
 * Copies a Django user table into Portrait's users: the same ids and fields, the password hash as it is
 * (verified by django-hashers.ts at sign-in and then replaced by argon2id), avatars through the upload
 * pipeline. Batches of `batchSize` rows, each written in one transaction through UsersRepository, so the
 * derived columns and any trigger-kept index are exactly what a sign-up writes. Rows already present
 * (same id, same username and email) are left as they are, so a run can be repeated or resumed.
 */
export async function importDjangoUsers(options: ImportOptions): Promise<ImportSummary> {
  const { source, db, dryRun = false, batchSize = IMPORT_BATCH_SIZE } = options
  const summary: ImportSummary = {
    source: source.description,
    dryRun,
    read: 0,
    imported: 0,
    alreadyImported: 0,
    skipped: 0,
    skippedBy: {},
    skippedExamples: [],
    avatars: { imported: 0, missing: 0, invalid: 0 },
    avatarProblems: [],
    hashFormats: {},
    nextId: 0,
  }
  // A dry run writes nothing, so the names it would have taken are remembered here instead (memory grows with
  // the rows it would import; a real run keeps only the current batch).
  const wouldHold = emptyHolders()
  const images = new ConcurrencyLimit(Math.max(1, options.config.imageConcurrency))
  let highestId = 0

  for await (const batch of source.batches(batchSize)) {
    const reports = await importBatch(options, batch, dryRun ? wouldHold : undefined, images)
    for (const report of reports) {
      summary.read++
      highestId = Math.max(highestId, report.id)
      summary.hashFormats[report.hash_format] = (summary.hashFormats[report.hash_format] ?? 0) + 1
      if (report.outcome === 'imported' || report.outcome === 'would_import') summary.imported++
      else if (report.outcome === 'already_imported') summary.alreadyImported++
      else {
        summary.skipped++
        const kind = reasonKind(report.reason as string)
        summary.skippedBy[kind] = (summary.skippedBy[kind] ?? 0) + 1
        if (summary.skippedExamples.length < EXAMPLES) summary.skippedExamples.push(report)
      }
      if (report.avatar && report.outcome !== 'skipped' && report.outcome !== 'already_imported') {
        summary.avatars[report.avatar.outcome]++
        if (report.avatar.outcome !== 'imported' && summary.avatarProblems.length < EXAMPLES) summary.avatarProblems.push(report)
      }
    }
    options.onRows?.(reports)
    options.onProgress?.(summary.read)
  }

  // Ids never go back: new sign-ups start above the highest imported id and above any id Django handed out
  // to a row deleted since (other systems may still refer to it).
  const floor = Math.max(highestId, await source.lastIssuedId())
  summary.nextId = (options.targetExists === false ? floor : await advanceIdSequence(db, floor, dryRun)) + 1
  return summary
}

function reasonKind(reason: string): string {
  return reason.split(':')[0] as string
}

async function importBatch(options: ImportOptions, batch: DjangoUserRow[], dryRunHolders: Holders | undefined, images: ConcurrencyLimit) {
  const { db, users, storage } = options
  for (let attempt = 1; ; attempt++) {
    const candidates = batch.map(prepare)
    const found = options.targetExists === false ? emptyHolders() : await holdersOf(db, candidates)
    // A dry run judges against the target plus every row it would have written before.
    const holders = dryRunHolders ? mergeHolders(dryRunHolders, found) : found
    judge(candidates, holders)
    const writing = candidates.filter((candidate) => candidate.user)
    // Each file is read inside its turn, so at most imageConcurrency originals (≤ AVATAR_MAX_BYTES each) are in memory.
    await Promise.all(writing.map((candidate) => images.run(() => loadAvatar(options, candidate))))
    const outcome: Outcome = dryRunHolders ? 'would_import' : 'imported'
    if (dryRunHolders) {
      for (const candidate of writing) candidate.report.outcome = outcome
      return candidates.map((candidate) => candidate.report)
    }
    if (!storage) throw new Error('an import that writes needs the avatar storage')
    // Non-transactional storage (files) is written first: a failed batch leaves unreferenced files, which the
    // start-up sweep and `portrait media gc` remove; never a profile pointing at a missing file.
    if (!storage.transactional) {
      for (const { image } of writing) if (image) await storage.put(image.name, image.bytes, db.kysely)
    }
    try {
      await db.kysely.transaction().execute(async (trx) => {
        for (const candidate of writing) {
          await users.insert(trx, candidate.user as NewUser)
          if (candidate.image && storage.transactional) await storage.put(candidate.image.name, candidate.image.bytes, trx)
        }
      })
    } catch (error) {
      // Someone (a sign-up on a running server) took a name between the check and the write: judge the batch again.
      if (violatedUniqueIndex(error) !== undefined && attempt < 3) continue
      throw error
    }
    for (const candidate of writing) candidate.report.outcome = outcome
    return candidates.map((candidate) => candidate.report)
  }
}

interface WithImage extends Candidate {
  image?: { name: string; bytes: Buffer }
}

/** Trims and checks each field as the API does; a value it cannot repair makes the row skipped. */
function prepare(source: DjangoUserRow): WithImage {
  const rawName = typeof source.username === 'string' ? source.username : String(source.username ?? '')
  const report: RowReport = { id: source.id, username: rawName, outcome: 'skipped', hash_format: hashFormat(source.password) }
  const candidate: WithImage = { source, report }
  if (!Number.isSafeInteger(source.id) || source.id < 1) {
    report.reason = `invalid id: ${source.id}`
    return candidate
  }
  const text = {} as Record<TextField, string>
  const problems: string[] = []
  for (const field of ['username', 'email', 'first_name', 'last_name', 'number_phone'] as const) {
    const result = cleanText(field, source[field])
    if ('error' in result) problems.push(`${field} ${JSON.stringify(source[field])}: ${result.error}`)
    else text[field] = result.value
  }
  if (problems.length) {
    report.reason = `invalid ${problems.join('; ')}`
    return candidate
  }
  report.username = text.username
  candidate.user = {
    id: source.id,
    username: text.username,
    email: text.email,
    first_name: text.first_name,
    last_name: text.last_name,
    number_phone: text.number_phone,
    password_hash: source.password,
    avatar: null,
    date_joined: source.date_joined,
    last_login: source.last_login,
    is_active: source.is_active ? 1 : 0,
    is_staff: source.is_staff ? 1 : 0,
    is_superuser: source.is_superuser ? 1 : 0,
  }
  candidate.keys = { id: source.id, username: comparable(text.username), skeleton: skeleton(text.username), email: comparable(text.email) }
  return candidate
}

/** Who in the target already holds any id or name of this batch: one query per batch. */
async function holdersOf(db: Db, candidates: Candidate[]): Promise<Holders> {
  const holders = emptyHolders()
  const keys = candidates.flatMap((candidate) => (candidate.keys ? [candidate.keys] : []))
  if (keys.length === 0) return holders
  const rows = await db.kysely
    .selectFrom('users')
    .select(['id', 'username_lower', 'username_skeleton', 'email_lower'])
    .where((eb) =>
      eb.or([
        eb(
          'id',
          'in',
          keys.map((key) => key.id),
        ),
        eb(
          'username_lower',
          'in',
          keys.map((key) => key.username),
        ),
        eb(
          'username_skeleton',
          'in',
          keys.map((key) => key.skeleton),
        ),
        eb(
          'email_lower',
          'in',
          keys.map((key) => key.email),
        ),
      ]),
    )
    .execute()
  for (const row of rows) {
    holders.ids.set(row.id, { username_lower: row.username_lower, email_lower: row.email_lower })
    keepLowest(holders.usernames, row.username_lower, row.id)
    if (row.username_skeleton !== null) keepLowest(holders.skeletons, row.username_skeleton, row.id)
    keepLowest(holders.emails, row.email_lower, row.id)
  }
  return holders
}

function keepLowest(map: Map<string, number>, key: string, id: number): void {
  const held = map.get(key)
  if (held === undefined || id < held) map.set(key, id)
}

function mergeHolders(into: Holders, from: Holders): Holders {
  for (const [id, names] of from.ids) into.ids.set(id, names)
  for (const [key, id] of from.usernames) keepLowest(into.usernames, key, id)
  for (const [key, id] of from.skeletons) keepLowest(into.skeletons, key, id)
  for (const [key, id] of from.emails) keepLowest(into.emails, key, id)
  return into
}

function remember(holders: Holders, candidate: Candidate): void {
  const keys = candidate.keys as NonNullable<Candidate['keys']>
  holders.ids.set(keys.id, { username_lower: keys.username, email_lower: keys.email })
  keepLowest(holders.usernames, keys.username, keys.id)
  keepLowest(holders.skeletons, keys.skeleton, keys.id)
  keepLowest(holders.emails, keys.email, keys.id)
}

/**
 * Decides each row in id order against what the target holds and the rows before it: Portrait's names are
 * unique ignoring case (and usernames by look-alike skeleton), Django's only case-sensitively, so the older
 * account keeps the name and the newer one is skipped, naming the kept id.
 */
function judge(candidates: Candidate[], holders: Holders): void {
  for (const candidate of candidates) {
    const { keys, report } = candidate
    if (!keys) continue
    const present = holders.ids.get(keys.id)
    if (present) {
      candidate.user = undefined
      if (present.username_lower === keys.username && present.email_lower === keys.email) {
        report.outcome = 'already_imported'
      } else {
        report.reason = `id taken: user ${keys.id} already exists in Portrait with another username or email`
        report.kept_id = keys.id
      }
      continue
    }
    const clash =
      collision(holders.usernames, keys.username, keys.id, `username taken: ${JSON.stringify(candidate.user?.username)} is, ignoring case, the username of user`) ??
      collision(holders.skeletons, keys.skeleton, keys.id, `username looks alike: ${JSON.stringify(candidate.user?.username)} looks like the username of user`) ??
      collision(holders.emails, keys.email, keys.id, `email taken: ${JSON.stringify(candidate.user?.email)} is, ignoring case, the email of user`)
    if (clash) {
      candidate.user = undefined
      report.reason = clash.reason
      report.kept_id = clash.keptId
      continue
    }
    remember(holders, candidate)
  }
}

function collision(map: Map<string, number>, key: string, id: number, text: string): { reason: string; keptId: number } | undefined {
  const held = map.get(key)
  return held !== undefined && held !== id ? { reason: `${text} ${held}`, keptId: held } : undefined
}

/** The Django file (relative to MEDIA_ROOT) through the upload pipeline; a missing or bad one leaves no avatar. */
async function loadAvatar(options: ImportOptions, candidate: WithImage): Promise<void> {
  const path = candidate.source.avatar
  if (!path) return
  const report = candidate.report
  const missing = (reason: string) => {
    report.avatar = { source: path, outcome: 'missing', reason }
  }
  if (!options.mediaRoot) return missing('no --media-root given')
  const root = resolve(options.mediaRoot)
  const file = resolve(root, path)
  const inside = relative(root, file)
  if (inside.startsWith('..') || isAbsolute(inside)) return missing('the path leads outside --media-root')
  let bytes: Buffer
  try {
    const info = await stat(file)
    if (!info.isFile()) return missing('not a file')
    if (info.size > options.config.avatarMaxBytes) {
      report.avatar = { source: path, outcome: 'invalid', reason: `larger than AVATAR_MAX_BYTES (${options.config.avatarMaxBytes})` }
      return
    }
    bytes = await readFile(file)
  } catch (error) {
    return missing((error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `unreadable: ${(error as Error).message}`)
  }
  try {
    const webp = await processAvatar(bytes, options.config.avatarSize)
    const name = newAvatarName()
    candidate.image = { name, bytes: webp }
    ;(candidate.user as NewUser).avatar = name
    report.avatar = { source: path, outcome: 'imported' }
  } catch (error) {
    if (!(error instanceof InvalidImageError)) throw error
    report.avatar = { source: path, outcome: 'invalid', reason: error.message }
  }
}

/**
 * Moves the users id sequence to at least `floor` (never back) and returns the highest id issued so far.
 * SQLite: the AUTOINCREMENT counter in sqlite_sequence; PostgreSQL: the identity column's sequence.
 */
async function advanceIdSequence(db: Db, floor: number, dryRun: boolean): Promise<number> {
  const kysely = db.kysely
  if (db.dialect === 'sqlite') {
    const { rows } = await sql<{ seq: number | null }>`select max(
        coalesce((select seq from sqlite_sequence where name = 'users'), 0),
        coalesce((select max(id) from users), 0)) as seq`.execute(kysely)
    const current = Number(rows[0]?.seq ?? 0)
    if (dryRun || floor <= current) return Math.max(current, floor)
    // Inserting explicit ids already moved the counter to the highest of them; this adds Django's deleted tail.
    const updated = await sql`update sqlite_sequence set seq = cast(${floor} as integer) where name = 'users'`.execute(kysely)
    if (!updated.numAffectedRows) await sql`insert into sqlite_sequence (name, seq) values ('users', cast(${floor} as integer))`.execute(kysely)
    return floor
  }
  const { rows } = await sql<{ sequence: string; last: string | null; highest: string }>`
    select s.sequence, pg_sequence_last_value(s.sequence::regclass) as last,
      (select coalesce(max(id), 0) from users) as highest
    from (select pg_get_serial_sequence('users', 'id') as sequence) s`.execute(kysely)
  const row = rows[0]
  if (!row?.sequence) throw new Error('users.id has no sequence')
  const current = Math.max(Number(row.last ?? 0), Number(row.highest))
  const target = Math.max(current, floor)
  if (dryRun || target === 0 || target === Number(row.last ?? 0)) return target
  await sql`select setval(${row.sequence}::regclass, ${target}, true)`.execute(kysely)
  return target
}

/** Streams every row's outcome into FILE as one JSON document: `{"rows": [...], "summary": {...}}`. */
export class JsonReportWriter {
  private readonly fd: number
  private first = true

  constructor(path: string) {
    this.fd = openSync(path, 'w')
    writeSync(this.fd, '{"rows": [\n')
  }

  write(rows: RowReport[]): void {
    if (rows.length === 0) return
    const text = rows.map((row) => JSON.stringify(row)).join(',\n')
    writeSync(this.fd, `${this.first ? '' : ',\n'}${text}`)
    this.first = false
  }

  finish(summary: ImportSummary): void {
    const { skippedExamples: _s, avatarProblems: _a, ...totals } = summary
    writeSync(this.fd, `\n],\n"summary": ${JSON.stringify(totals)}}\n`)
    closeSync(this.fd)
  }
}

/** The summary printed at the end, in plain lines. */
export function formatSummary(summary: ImportSummary): string {
  const lines: string[] = []
  const would = summary.dryRun ? ' (dry run: nothing written)' : ''
  lines.push(`Django import from ${summary.source}${would}`)
  lines.push(`  rows read:         ${summary.read}`)
  lines.push(`  ${summary.dryRun ? 'would import:     ' : 'imported:         '} ${summary.imported}`)
  lines.push(`  already imported:  ${summary.alreadyImported}${summary.alreadyImported ? ' (left unchanged)' : ''}`)
  lines.push(`  skipped:           ${summary.skipped}`)
  for (const [kind, count] of Object.entries(summary.skippedBy)) lines.push(`    ${kind}: ${count}`)
  for (const row of summary.skippedExamples) lines.push(`    - id ${row.id} ${JSON.stringify(row.username)}: ${row.reason}`)
  if (summary.skipped > summary.skippedExamples.length) lines.push(`    … ${summary.skipped - summary.skippedExamples.length} more in --report`)
  const { imported, missing, invalid } = summary.avatars
  lines.push(`  avatars:           ${imported} ${summary.dryRun ? 'would be imported' : 'imported'}, ${missing} missing, ${invalid} invalid`)
  for (const row of summary.avatarProblems) {
    const avatar = row.avatar as NonNullable<RowReport['avatar']>
    lines.push(`    - id ${row.id} ${JSON.stringify(row.username)}: ${avatar.source} ${avatar.outcome} (${avatar.reason}); ${summary.dryRun ? 'would be imported' : 'imported'} without an avatar`)
  }
  const formats = Object.entries(summary.hashFormats)
    .sort((a, b) => b[1] - a[1])
    .map(([format, count]) => `${format} ${count}`)
  lines.push(`  hash formats:      ${formats.join(', ') || 'none'}`)
  lines.push(`  next new user id:  ${summary.nextId}`)
  return lines.join('\n')
}
