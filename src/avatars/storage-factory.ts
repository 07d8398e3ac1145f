import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { type AvatarStorage, DbAvatarStorage, FsAvatarStorage } from './storage.js'

/** The storage driver MEDIA_STORAGE names. */
export async function createAvatarStorage(config: Pick<Config, 'mediaStorage' | 'mediaRoot'>, db: Db): Promise<AvatarStorage> {
  if (config.mediaStorage === 'db') return new DbAvatarStorage(db.kysely)
  const storage = new FsAvatarStorage(config.mediaRoot)
  await storage.init()
  return storage
}
