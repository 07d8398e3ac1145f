import { randomBytes } from 'node:crypto'
import { renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { mkdir, readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'

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
}

export interface StoredAvatar {
  name: string
  storedAt: Date
}

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
    writeFileSync(temporary, bytes)
    renameSync(temporary, join(this.dir, name))
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
