import { legacyJwtSecret } from './auth/jwt-secret.js'
import { signingAlgorithm } from './auth/keyset-setup.js'
import { SERVICE_KEY_NAME, ServiceKeys } from './auth/service-keys.js'
import { type AsymmetricAlgorithm, SigningKeyStore } from './auth/signing-keys.js'
import type { Config } from './config.js'
import { createDb, type Db } from './db/database.js'
import { migrateToLatest } from './db/migrate.js'

/** `portrait keys …` and `portrait service-keys …`: the lines cli.ts shows in its usage. */
/** A mistake in the command line; cli.ts prints it with the usage. */
export class KeysUsageError extends Error {}

async function withDb<T>(config: Config, work: (db: Db) => Promise<T>): Promise<T> {
  const db = createDb(config)
  try {
    await migrateToLatest(db.kysely)
    return await work(db)
  } finally {
    await db.destroy()
  }
}

function asymmetric(config: Config): AsymmetricAlgorithm {
  const alg = signingAlgorithm(config)
  if (alg === 'HS256') {
    throw new KeysUsageError('HS256 signs with JWT_SECRET, which has no keys to rotate: unset JWT_SECRET (or set JWT_ALGORITHM=EdDSA) to use database keys')
  }
  return alg
}

export async function keysCommand(config: Config, args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === 'list' && rest.length === 0) {
    const keys = await withDb(config, (db) => new SigningKeyStore(db).list())
    if (keys.length === 0) console.log('no signing keys yet (the server makes the first on start)')
    for (const key of keys) {
      const until = key.revokedAt ? ` since ${key.revokedAt}` : key.retiresAt ? ` ${key.state === 'retired' ? 'since' : 'until'} ${key.retiresAt}` : ''
      console.log(`${key.kid}  ${key.alg}  created ${key.created}  ${key.state}${until}`)
    }
    return
  }
  if (action === 'rotate' && rest.length === 0) {
    const alg = asymmetric(config)
    const kid = await withDb(config, async (db) => {
      const store = new SigningKeyStore(db)
      await store.ensure(alg, legacyJwtSecret(config.dataDir))
      return store.rotate(alg, config.accessTokenTtlSeconds)
    })
    console.log(`new signing key ${kid} (${alg}); the previous one verifies for ${config.accessTokenTtlSeconds + 30}s more, then retires`)
    return
  }
  if (action === 'revoke' && rest.length === 1) {
    const alg = asymmetric(config)
    const kid = rest[0] as string
    const result = await withDb(config, (db) => new SigningKeyStore(db).revoke(kid, alg, config.accessTokenTtlSeconds))
    if (!result.found) throw new KeysUsageError(`no signing key ${kid} (see portrait keys list)`)
    console.log(`revoked ${kid}: its tokens are refused from now on${result.rotatedTo ? `; it was the signing key, now ${result.rotatedTo}` : ''}`)
    return
  }
  throw new KeysUsageError(`unknown command: keys ${args.join(' ')}`.trim())
}

export async function serviceKeysCommand(config: Config, args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === 'list' && rest.length === 0) {
    const keys = await withDb(config, (db) => new ServiceKeys(db).list())
    if (keys.length === 0) console.log('no service keys')
    for (const key of keys) console.log(`${key.name}  created ${key.created}  ${key.revoked ? `revoked ${key.revoked}` : 'active'}`)
    return
  }
  if ((action === 'create' || action === 'revoke') && rest.length === 1) {
    const name = rest[0] as string
    if (!SERVICE_KEY_NAME.test(name)) throw new KeysUsageError('a service key NAME is 1 to 64 letters, digits, ".", "_" or "-"')
    if (action === 'revoke') {
      if (!(await withDb(config, (db) => new ServiceKeys(db).revoke(name)))) throw new KeysUsageError(`no active service key ${name}`)
      console.log(`revoked service key ${name}`)
      return
    }
    const secret = await withDb(config, async (db) => {
      try {
        return await new ServiceKeys(db).create(name)
      } catch (error) {
        if (/unique|duplicate/i.test(String((error as Error).message))) throw new KeysUsageError(`a service key named ${name} exists already`)
        throw error
      }
    })
    // The only time the secret is shown: stdout alone, so it can be piped into a secret store.
    console.error(`service key ${name} created; store this secret now, it is not shown again:`)
    console.log(secret)
    return
  }
  throw new KeysUsageError(`unknown command: service-keys ${args.join(' ')}`.trim())
}
