import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createAvatarStorage } from '../avatars/storage-factory.js'
import type { Config } from '../config.js'
import { createDb } from '../db/database.js'
import { migrateToLatest } from '../db/migrate.js'
import { UsersRepository } from '../users/users.repository.js'
import { formatSummary, importDjangoUsers, JsonReportWriter } from './django-import.js'
import { openDjangoSource, SourceError } from './django-source.js'

/** A mistake in the command line or the source, shown in one line with the usage. */
export class ImportCommandError extends Error {}

/** `portrait import-django …`: the target is DATABASE_URL / MEDIA_STORAGE / MEDIA_ROOT, as for the server. */
export async function importDjangoCommand(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      from: { type: 'string' },
      table: { type: 'string', default: 'users_users' },
      'media-root': { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      report: { type: 'string' },
    },
  })
  if (!values.from) throw new ImportCommandError('import-django needs --from sqlite:PATH or --from postgres://…')
  let source: ReturnType<typeof openDjangoSource>
  try {
    source = openDjangoSource(values.from, values.table)
  } catch (error) {
    if (error instanceof SourceError) throw new ImportCommandError(error.message)
    throw error
  }
  const dryRun = values['dry-run']
  // A dry run creates nothing, not even an empty SQLite file: a target that does not exist yet is judged as empty.
  const sqlitePath = config.databaseUrl.startsWith('sqlite:') ? config.databaseUrl.slice('sqlite:'.length) : undefined
  const absent = dryRun && sqlitePath !== undefined && sqlitePath !== ':memory:' && !existsSync(sqlitePath)
  const db = createDb({
    ...config,
    databaseUrl: absent ? 'sqlite::memory:' : config.databaseUrl,
    databaseStatementTimeoutMs: Math.max(config.databaseStatementTimeoutMs ?? 0, 60_000),
  })
  const report = values.report ? new JsonReportWriter(values.report) : undefined
  const progress = process.stderr.isTTY ? new ProgressBar() : undefined
  try {
    const total = await source.count().catch((error: unknown) => {
      throw error instanceof SourceError ? new ImportCommandError(error.message) : error
    })
    // A dry run migrates nothing: a target without tables yet is judged as empty.
    const targetExists = dryRun ? await db.kysely.selectFrom('users').select('id').limit(1).execute().then(() => true, () => false) : true
    if (!dryRun) await migrateToLatest(db.kysely)
    const storage = dryRun ? undefined : await createAvatarStorage(config, db)
    const summary = await importDjangoUsers({
      source,
      db,
      users: new UsersRepository(db.dialect),
      storage,
      config,
      mediaRoot: values['media-root'],
      dryRun,
      targetExists,
      onRows: (rows) => report?.write(rows),
      onProgress: (done) => progress?.draw(done, total),
    })
    progress?.end()
    report?.finish(summary)
    console.log(formatSummary(summary))
    if (values.report) console.log(`  report:            ${values.report}`)
  } finally {
    await source.close()
    await db.destroy()
  }
}

/** `[#######……]  1200/100000  1%` on the terminal, redrawn in place. */
class ProgressBar {
  private lastDrawn = 0

  draw(done: number, total: number): void {
    const now = Date.now()
    if (done < total && now - this.lastDrawn < 100) return
    this.lastDrawn = now
    const width = 30
    const share = total ? Math.min(1, done / total) : 1
    const filled = Math.round(share * width)
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${Math.floor(share * 100)}%`)
  }

  end(): void {
    process.stderr.write('\n')
  }
}
