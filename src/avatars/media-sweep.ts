import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import type { UsersRepository } from '../users/users.repository.js'
import type { AvatarStorage } from './storage.js'

/**
 * Removes stored images that no profile references: what a crash between storing a new image and
 * committing (or between committing and removing the old one) can leave behind. Returns how many.
 */
export async function sweepUnreferencedAvatars(db: Kysely<Database>, users: UsersRepository, storage: AvatarStorage): Promise<number> {
  // Listed first: an image stored after the listing is not looked at, so it cannot be mistaken for garbage.
  const stored = await storage.list()
  const referenced = await users.referencedAvatars(db)
  const garbage = stored.filter((name) => !referenced.has(name))
  for (const name of garbage) await storage.remove(name, db)
  return garbage.length
}
