import type { Kysely } from 'kysely'
import type { Database } from '../db/database.js'
import type { UsersRepository } from '../users/users.repository.js'
import type { AvatarStorage } from './storage.js'

export interface SweepOptions {
  /**
   * Leave files written less than this long ago. With the fs driver an upload stores its image
   * moments before its profile row commits; a sweep running beside live traffic (another instance,
   * `portrait media gc` on a serving machine) must not take such an image for garbage. 0 (the
   * default) is right only when nothing else is writing, as at the start of a single instance.
   */
  minAgeMs?: number
  now?: Date
}

/**
 * Removes stored images that no profile references: what a crash between storing a new image and
 * committing (or between committing and removing the old one) can leave behind. Returns how many.
 */
export async function sweepUnreferencedAvatars(
  db: Kysely<Database>,
  users: UsersRepository,
  storage: AvatarStorage,
  { minAgeMs = 0, now = new Date() }: SweepOptions = {},
): Promise<number> {
  // Listed first: an image stored after the listing is not looked at, so it cannot be mistaken for garbage.
  const stored = await storage.list()
  const referenced = await users.referencedAvatars(db)
  const cutoff = now.getTime() - minAgeMs
  const garbage = stored.filter(({ name, storedAt }) => !referenced.has(name) && (minAgeMs === 0 || storedAt.getTime() <= cutoff))
  for (const { name } of garbage) await storage.remove(name, db)
  return garbage.length
}

export interface TemporaryFileSweepOptions {
  intervalMs: number
  /** A temporary file lives for the microseconds of one write; one older than this is left from a failure or a crash. */
  maxAgeMs: number
  log: { info(fields: object, message: string): void; warn(fields: object, message: string): void }
}

/**
 * Removes leftover temporary files every `intervalMs` while the server runs (the start-up sweep only sees
 * those of an earlier run). The timer does not keep the process alive; call the returned function to stop it.
 */
export function startTemporaryFileSweep(storage: AvatarStorage, { intervalMs, maxAgeMs, log }: TemporaryFileSweepOptions): () => void {
  const removeTemporaryFiles = storage.removeTemporaryFiles?.bind(storage)
  if (!removeTemporaryFiles) return () => {}
  let running = false
  const timer = setInterval(async () => {
    // A slow disk must not stack sweeps up.
    if (running) return
    running = true
    try {
      const removed = await removeTemporaryFiles(new Date(Date.now() - maxAgeMs))
      if (removed > 0) log.info({ removed }, 'removed leftover temporary avatar files')
    } catch (error) {
      log.warn({ err: error }, 'could not sweep temporary avatar files')
    } finally {
      running = false
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
