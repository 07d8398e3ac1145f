import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { legacyJwtSecret } from './jwt-secret.js'
import { Keyset, type SigningAlgorithm } from './signing-keys.js'

type KeyConfig = Pick<Config, 'jwtSecret' | 'jwtAlgorithm' | 'accessTokenTtlSeconds' | 'dataDir'>

/** JWT_ALGORITHM, else HS256 when JWT_SECRET is set (as before issue 16), else EdDSA. */
export function signingAlgorithm(config: Pick<Config, 'jwtSecret' | 'jwtAlgorithm'>): SigningAlgorithm {
  return config.jwtAlgorithm ?? (config.jwtSecret !== undefined ? 'HS256' : 'EdDSA')
}

/** The keyset this configuration signs with: JWT_SECRET for HS256, else the database's keys (made on first start). */
export async function openKeyset(db: Db, config: KeyConfig): Promise<Keyset> {
  const alg = signingAlgorithm(config)
  if (alg === 'HS256') return Keyset.hmac(config.jwtSecret as string)
  return Keyset.open(db, alg, config.accessTokenTtlSeconds, { seedSecret: legacyJwtSecret(config.dataDir) })
}

/**
 * The key material of the HMAC derivations (device proofs, refresh successors): JWT_SECRET when set, as
 * before; otherwise the secret stored with the keys, the same on every instance of one database.
 */
export function serverSecret(config: Pick<Config, 'jwtSecret'>, keyset: Keyset): string {
  return config.jwtSecret ?? keyset.serverSecret
}
