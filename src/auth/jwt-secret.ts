import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * The secret an earlier version generated into `dataDir/jwt-secret`, if there is one: it seeds the database's
 * server secret on the first start with database keys, so device proofs and refresh successors issued before
 * the upgrade stay valid. Nothing is created here.
 */
export function legacyJwtSecret(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim() || undefined
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
