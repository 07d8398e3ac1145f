import { randomBytes } from 'node:crypto'
import { renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { mkdir, opendir, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import { AppError } from '../errors.js'

type Executor = Kysely<Database>

/** Names we hand out: 128 random bits, base64url, `.webp`. Anything else is not ours. */
const AVATAR_NAME = /^[A-Za-z0-9_-]{22}\.webp$/

export function newAvatarName(): string {
  return `${randomBytes(16).toString('base64url')}.webp`
}

export function isAvatarName(name: string): boolean {
  return AVATAR_NAME.test(name)
}

/**
 * Where avatar bytes live. `transactional` drivers write inside the caller's transaction
 * (executor given); the others write immediately and ignore it.
 */
export interface AvatarStorage {
  readonly transactional: boolean
  put(name: string, bytes: Buffer, executor: Executor): Promise<void>
  remove(name: string, executor: Executor): Promise<void>
  get(name: string): Promise<Buffer | undefined>
  /** Every stored name and when it was written, for the sweep. */
  list(): Promise<StoredAvatar[]>
  /** Drivers with a storage of their own (fs): throws unless a file can be written there now. */
  probe?(): Promise<void>
  /** Drivers that write temporary files (fs): removes those last modified before `olderThan`; returns how many. */
  removeTemporaryFiles?(olderThan: Date): Promise<number>
}

export interface StoredAvatar {
  name: string
  storedAt: Date
}

// What a write can fail with when the disk, not the request, is at fault.
const FULL = new Set(['ENOSPC', 'EDQUOT'])
const NOT_WRITABLE = new Set(['EROFS', 'EACCES', 'EPERM'])

/** A 503 telling the client why no avatar can be stored now, or undefined for any other error. */
export function avatarStorageUnavailable(error: unknown): AppError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? ''
  const state = FULL.has(code) ? 'full' : NOT_WRITABLE.has(code) ? 'not writable' : undefined
  if (!state) return undefined
  return new AppError('service_unavailable', {
    detail: `The avatar storage is ${state}, so no new avatar can be saved now. Try again later; changes without an avatar still work.`,
    headers: { 'retry-after': '60' },
    cause: error,
  })
}

// About one stored avatar: the health check says down once another one would not fit.
const PROBE_BYTES = Buffer.alloc(64 * 1024)

/**
 * Files under MEDIA_ROOT/avatars, written to a temporary file and renamed into place.
 *
 * Writes, renames and removals are synchronous on purpose: a stored avatar is at most AVATAR_SIZE² as WebP
 * (about 45 KB at 512 px), which lands in the page cache in tens of microseconds, while the same work through
 * fs/promises took five thread-pool round trips and their promise machinery: 0.3 ms of CPU per upload
 * (`npm run bench`). The database writes (better-sqlite3) block the same way. For a slow network volume,
 * MEDIA_STORAGE=db is the better choice anyway.
 */
export class FsAvatarStorage implements AvatarStorage {
  readonly transactional = false
  private readonly dir: string

  constructor(mediaRoot: string) {
    this.dir = join(mediaRoot, 'avatars')
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true })
  }

  async put(name: string, bytes: Buffer): Promise<void> {
    const temporary = join(this.dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`)
    try {
      writeFileSync(temporary, bytes)
      renameSync(temporary, join(this.dir, name))
    } catch (error) {
      // A write that failed part-way may hold the last free blocks: give them back at once.
      try {
        unlinkSync(temporary)
      } catch {}
      throw avatarStorageUnavailable(error) ?? error
    }
  }

  async remove(name: string): Promise<void> {
    try {
      unlinkSync(join(this.dir, name))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }

  async get(name: string): Promise<Buffer | undefined> {
    if (!isAvatarName(name)) return undefined
    try {
      return await readFile(join(this.dir, name))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /** Writes and removes a file the size of an avatar (named like a temporary file, so a crash in between leaves it to the sweep). */
  async probe(): Promise<void> {
    const file = join(this.dir, `.probe.${randomBytes(6).toString('hex')}.tmp`)
    try {
      await writeFile(file, PROBE_BYTES)
    } finally {
      await rm(file, { force: true }).catch(() => {})
    }
  }

  /** Streams the directory (it may hold a file per user) and removes the temporary files older than `olderThan`. */
  async removeTemporaryFiles(olderThan: Date): Promise<number> {
    let removed = 0
    for await (const entry of await opendir(this.dir)) {
      if (!entry.name.endsWith('.tmp')) continue
      const file = join(this.dir, entry.name)
      try {
        if ((await stat(file)).mtime > olderThan) continue
        await unlink(file)
        removed += 1
      } catch (error) {
        // Renamed into place or removed since the listing.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
    }
    return removed
  }

  /** Avatar files and leftover temporary files (from a crash mid-write). */
  async list(): Promise<StoredAvatar[]> {
    const names = (await readdir(this.dir)).filter((name) => isAvatarName(name) || name.endsWith('.tmp'))
    const stored: StoredAvatar[] = []
    for (const name of names) {
      try {
        stored.push({ name, storedAt: (await stat(join(this.dir, name))).mtime })
      } catch (error) {
        // Renamed or removed since the listing: nothing left to sweep.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
    }
    return stored
  }
}

/** Bytes in the `avatars` table, written in the same transaction as the profile change. */
export class DbAvatarStorage implements AvatarStorage {
  readonly transactional = true

  constructor(private readonly db: Executor) {}

  async put(name: string, bytes: Buffer, executor: Executor): Promise<void> {
    await executor.insertInto('avatars').values({ name, content: bytes, created_at: new Date().toISOString() }).execute()
  }

  async remove(name: string, executor: Executor): Promise<void> {
    await executor.deleteFrom('avatars').where('name', '=', name).execute()
  }

  async get(name: string): Promise<Buffer | undefined> {
    if (!isAvatarName(name)) return undefined
    const row = await this.db.selectFrom('avatars').select('content').where('name', '=', name).executeTakeFirst()
    return row?.content
  }

  async list(): Promise<StoredAvatar[]> {
    const rows = await this.db.selectFrom('avatars').select(['name', 'created_at']).execute()
    return rows.map((row) => ({ name: row.name, storedAt: new Date(row.created_at) }))
  }
}
