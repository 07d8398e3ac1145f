import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import type { Kysely, Selectable } from 'kysely'
import type { Database, Db } from '../db/database.js'
import type { KeysetTable, SigningKeysTable } from './signing-keys.table.js'

export type SigningAlgorithm = 'EdDSA' | 'ES256' | 'HS256'
export type AsymmetricAlgorithm = Exclude<SigningAlgorithm, 'HS256'>
export const SIGNING_ALGORITHMS: readonly SigningAlgorithm[] = ['EdDSA', 'ES256', 'HS256']

/** How far another instance's clock may run ahead of ours when it issues a token. */
export const CLOCK_SKEW_SECONDS = 30
/** At most one re-read of the keyset per this many ms for tokens naming a kid we do not know. */
const UNKNOWN_KID_RELOAD_MS = 1000
/** A kid as we make them (RFC 7638 thumbprint, or `hs-…`): anything else never triggers a re-read. */
export const KID = /^[A-Za-z0-9_-]{16,64}$/

/** A public key as the JWKS serves it: only these members, never `d` or `k`. */
export interface PublicJwk {
  kty: string
  crv: string
  x: string
  y?: string
  kid: string
  alg: AsymmetricAlgorithm
  use: 'sig'
}

export interface LoadedKey {
  kid: string
  alg: SigningAlgorithm
  /** Public key (or the HMAC secret) for verification. */
  verifyKey: KeyObject
  /** Private key (or the HMAC secret); present on every key, used only on the current one. */
  signKey: KeyObject
  /** Epoch ms after which it verifies nothing (Infinity while current or never superseded). */
  retiresAt: number
  publicJwk?: PublicJwk
}

export type KeyState = 'current' | 'verifying' | 'retired' | 'revoked'

export interface KeyListing {
  kid: string
  alg: string
  created: string
  state: KeyState
  retiresAt?: string
  revokedAt?: string
}

const time = (value: string | Date | null): number => (value === null ? Number.POSITIVE_INFINITY : new Date(value).getTime())
const iso = (value: string | Date): string => new Date(value).toISOString()

/** RFC 7638 thumbprint of a public JWK: the kid, a pure function of the public key. */
function thumbprint(jwk: JsonWebKey): string {
  const members = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url')
}

export function generateSigningKey(alg: AsymmetricAlgorithm): { kid: string; publicJwk: PublicJwk; privateJwk: JsonWebKey } {
  const { privateKey, publicKey } = alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const raw = publicKey.export({ format: 'jwk' })
  const kid = thumbprint(raw)
  const publicJwk: PublicJwk = { kty: raw.kty as string, crv: raw.crv as string, x: raw.x as string, kid, alg, use: 'sig' }
  if (raw.y !== undefined) publicJwk.y = raw.y
  return { kid, publicJwk, privateJwk: privateKey.export({ format: 'jwk' }) }
}

/** The symmetric key for JWT_SECRET: its kid is an HMAC of the secret, so it tells nothing about it. */
export function hmacKey(secret: string): LoadedKey {
  const key = createSecretKey(Buffer.from(secret, 'utf8'))
  const kid = `hs-${createHmac('sha256', secret).update('portrait kid v1').digest('base64url').slice(0, 22)}`
  return { kid, alg: 'HS256', verifyKey: key, signKey: key, retiresAt: Number.POSITIVE_INFINITY }
}

class ConcurrentRotation extends Error {}

/** The keyset rows, shared by the server and the `portrait keys` commands. */
export class SigningKeyStore {
  constructor(private readonly db: Db) {}

  /**
   * Makes the first signing key and the server secret unless some instance already did: the keyset row is
   * inserted only if absent, in the same transaction as the key, so instances starting at once end with one key.
   */
  async ensure(alg: AsymmetricAlgorithm, seedSecret?: string): Promise<void> {
    if (await this.db.kysely.selectFrom('keyset').select('id').where('id', '=', 1).executeTakeFirst()) return
    const key = generateSigningKey(alg)
    const now = new Date().toISOString()
    await this.db.kysely.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('keyset')
        .values({ id: 1, current_kid: key.kid, server_secret: seedSecret ?? randomBytes(48).toString('base64url'), updated_at: now })
        .onConflict((conflict) => conflict.column('id').doNothing())
        .returning('id')
        .executeTakeFirst()
      if (!inserted) return
      await trx
        .insertInto('signing_keys')
        .values({ kid: key.kid, alg, public_jwk: JSON.stringify(key.publicJwk), private_jwk: JSON.stringify(key.privateJwk), created_at: now })
        .execute()
    })
  }

  /**
   * Through `executor` when the caller holds a connection or transaction (a token is issued inside the
   * sign-up transaction, which on SQLite holds Kysely's only connection and on PostgreSQL one of the pool's);
   * otherwise through the database's own Kysely instance.
   */
  async currentKid(executor: Kysely<Database> = this.db.kysely): Promise<string | undefined> {
    return (await executor.selectFrom('keyset').select('current_kid').where('id', '=', 1).executeTakeFirst())?.current_kid
  }

  async read(executor: Kysely<Database> = this.db.kysely): Promise<{ keyset: Selectable<KeysetTable> | undefined; keys: Selectable<SigningKeysTable>[] }> {
    const keyset = await executor.selectFrom('keyset').selectAll().where('id', '=', 1).executeTakeFirst()
    const keys = await executor.selectFrom('signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute()
    return { keyset, keys }
  }

  /**
   * A new key becomes the signing key; the one it replaces verifies for one access-token lifetime plus the
   * clock skew more (every token it signed has expired by then), then it is retired.
   */
  async rotate(alg: AsymmetricAlgorithm, accessTtlSeconds: number, options: { from?: string; revoke?: string } = {}): Promise<string> {
    const key = generateSigningKey(alg)
    const now = new Date()
    const retiresAt = new Date(now.getTime() + (accessTtlSeconds + CLOCK_SKEW_SECONDS) * 1000).toISOString()
    for (let attempt = 0; ; attempt++) {
      try {
        await this.db.kysely.transaction().execute(async (trx) => {
          const row = await trx.selectFrom('keyset').select('current_kid').where('id', '=', 1).executeTakeFirst()
          if (!row) throw new Error('no keyset yet: start the server or run `portrait migrate` first')
          if (options.from !== undefined && row.current_kid !== options.from) return
          // Only if nobody rotated in between: two rotations at once cannot both name the current key.
          const swapped = await trx
            .updateTable('keyset')
            .set({ current_kid: key.kid, updated_at: now.toISOString() })
            .where('id', '=', 1)
            .where('current_kid', '=', row.current_kid)
            .executeTakeFirst()
          if (swapped.numUpdatedRows !== 1n) throw new ConcurrentRotation()
          await trx
            .insertInto('signing_keys')
            .values({ kid: key.kid, alg, public_jwk: JSON.stringify(key.publicJwk), private_jwk: JSON.stringify(key.privateJwk), created_at: now.toISOString() })
            .execute()
          await trx.updateTable('signing_keys').set({ retires_at: retiresAt }).where('kid', '=', row.current_kid).where('retires_at', 'is', null).execute()
          if (options.revoke !== undefined) {
            await trx.updateTable('signing_keys').set({ revoked_at: now.toISOString() }).where('kid', '=', options.revoke).execute()
          }
        })
        return key.kid
      } catch (error) {
        if (!(error instanceof ConcurrentRotation) || attempt >= 3) throw error
      }
    }
  }

  /**
   * Tokens signed with `kid` stop at once on every instance (each request checks the key is not revoked, in
   * its session query). Revoking the current key first rotates to a new one, in the same transaction.
   */
  async revoke(kid: string, alg: AsymmetricAlgorithm, accessTtlSeconds: number): Promise<{ found: boolean; rotatedTo?: string }> {
    const row = await this.db.kysely.selectFrom('signing_keys').select(['kid', 'revoked_at']).where('kid', '=', kid).executeTakeFirst()
    if (!row) return { found: false }
    if ((await this.currentKid()) === kid) return { found: true, rotatedTo: await this.rotate(alg, accessTtlSeconds, { revoke: kid }) }
    await this.db.kysely.updateTable('signing_keys').set({ revoked_at: new Date().toISOString() }).where('kid', '=', kid).where('revoked_at', 'is', null).execute()
    return { found: true }
  }

  async list(): Promise<KeyListing[]> {
    const { keyset, keys } = await this.read()
    const now = Date.now()
    return keys.map((key) => {
      const state: KeyState =
        key.revoked_at !== null ? 'revoked' : key.kid === keyset?.current_kid ? 'current' : time(key.retires_at) > now ? 'verifying' : 'retired'
      return {
        kid: key.kid,
        alg: key.alg,
        created: iso(key.created_at),
        state,
        ...(key.retires_at !== null ? { retiresAt: iso(key.retires_at) } : {}),
        ...(key.revoked_at !== null ? { revokedAt: iso(key.revoked_at) } : {}),
      }
    })
  }
}

/**
 * The keys one instance signs and verifies with, kept in memory and re-read from the database when a token
 * names a kid it does not know (at most once a second), when the current key changed (checked before each
 * token is issued), and periodically. With JWT_SECRET (HS256) it is the one fixed HMAC key.
 */
export class Keyset {
  private keys = new Map<string, LoadedKey>()
  private current: LoadedKey
  private reloading?: Promise<void>
  private lastReload = 0
  private delayedReload?: Promise<void>

  private constructor(
    private readonly store: SigningKeyStore | undefined,
    readonly serverSecret: string,
    keys: LoadedKey[],
    currentKid: string,
  ) {
    this.current = this.install(keys, currentKid)
  }

  /** HS256 with JWT_SECRET: no database keys. */
  static hmac(secret: string): Keyset {
    const key = hmacKey(secret)
    return new Keyset(undefined, secret, [key], key.kid)
  }

  /**
   * EdDSA or ES256 keys from the database, made on first start. A configured algorithm other than the current
   * key's rotates to a key of that algorithm (the old one verifies on until retired).
   */
  static async open(db: Db, alg: AsymmetricAlgorithm, accessTtlSeconds: number, options: { seedSecret?: string } = {}): Promise<Keyset> {
    const store = new SigningKeyStore(db)
    await store.ensure(alg, options.seedSecret)
    let { keyset, keys } = await store.read()
    const current = keys.find((key) => key.kid === keyset?.current_kid)
    if (!current || current.alg !== alg || current.revoked_at !== null) {
      await store.rotate(alg, accessTtlSeconds, { from: keyset?.current_kid })
      ;({ keyset, keys } = await store.read())
    }
    if (!keyset) throw new Error('the keyset row is missing')
    return new Keyset(store, keyset.server_secret, keys.map(loadRow).filter((key) => key !== undefined), keyset.current_kid)
  }

  get algorithm(): SigningAlgorithm {
    return this.current.alg
  }

  /** A key that verifies now, or undefined (unknown, retired or revoked as of the last read). */
  get(kid: string): LoadedKey | undefined {
    const key = this.keys.get(kid)
    return key !== undefined && key.retiresAt > Date.now() ? key : undefined
  }

  /**
   * The signing key, after checking with the database that no rotation happened elsewhere (one primary-key
   * read through `executor`, the caller's connection; a changed key is read through it too).
   */
  async signer(executor: Kysely<Database>): Promise<LoadedKey> {
    if (this.store && (await this.store.currentKid(executor)) !== this.current.kid) await this.load(executor)
    return this.current
  }

  /** Reads the keyset through `executor` now, outside the shared reload. */
  private async load(executor: Kysely<Database>): Promise<void> {
    const { keyset, keys } = await (this.store as SigningKeyStore).read(executor)
    if (keyset) this.current = this.install(keys.map(loadRow).filter((key) => key !== undefined), keyset.current_kid)
  }

  /**
   * Re-reads at most once a second (a token naming an unknown kid, a JWKS request). Within a second of the last
   * read the caller waits for the next one instead of going without: a key rotated a moment after that read is
   * still found, and callers meanwhile share one delayed read.
   */
  async reloadThrottled(): Promise<void> {
    if (!this.store) return
    if (this.reloading) return this.reloading
    const wait = UNKNOWN_KID_RELOAD_MS - (Date.now() - this.lastReload)
    if (wait <= 0) return this.reload()
    this.delayedReload ??= new Promise((resolve) => setTimeout(resolve, wait)).then(() => {
      this.delayedReload = undefined
      return this.reload()
    })
    return this.delayedReload
  }

  /** Re-reads the keyset (one at a time; callers meanwhile share the read in flight). */
  reload(): Promise<void> {
    if (!this.store) return Promise.resolve()
    this.reloading ??= (async () => {
      try {
        const { keyset, keys } = await (this.store as SigningKeyStore).read()
        if (keyset) this.current = this.install(keys.map(loadRow).filter((key) => key !== undefined), keyset.current_kid)
      } finally {
        this.lastReload = Date.now()
        this.reloading = undefined
      }
    })()
    return this.reloading
  }

  /** Re-reads every `intervalMs`; returns the stop function. */
  startRefresh(intervalMs: number, onError: (error: unknown) => void): () => Promise<void> {
    if (!this.store) return async () => {}
    const timer = setInterval(() => this.reload().catch(onError), intervalMs)
    timer.unref()
    return async () => {
      clearInterval(timer)
      await this.reloading?.catch(() => {})
    }
  }

  /** The public keys that verify now: the current one and those not yet retired or revoked. */
  jwks(): PublicJwk[] {
    const now = Date.now()
    return [...this.keys.values()].filter((key) => key.publicJwk !== undefined && key.retiresAt > now).map((key) => key.publicJwk as PublicJwk)
  }

  private install(keys: LoadedKey[], currentKid: string): LoadedKey {
    const current = keys.find((key) => key.kid === currentKid)
    if (!current) throw new Error(`the current signing key ${currentKid} is missing or revoked`)
    this.keys = new Map(keys.map((key) => [key.kid, key]))
    return current
  }
}

/** A usable key from its row; revoked keys are left out altogether. */
function loadRow(row: { kid: string; alg: string; public_jwk: string; private_jwk: string; retires_at: string | Date | null; revoked_at: string | Date | null }):
  | LoadedKey
  | undefined {
  if (row.revoked_at !== null || (row.alg !== 'EdDSA' && row.alg !== 'ES256')) return undefined
  const publicJwk = JSON.parse(row.public_jwk) as PublicJwk
  return {
    kid: row.kid,
    alg: row.alg,
    verifyKey: createPublicKey({ key: publicJwk as unknown as JsonWebKey, format: 'jwk' }),
    signKey: createPrivateKey({ key: JSON.parse(row.private_jwk) as JsonWebKey, format: 'jwk' }),
    retiresAt: time(row.retires_at),
    publicJwk: { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, ...(publicJwk.y ? { y: publicJwk.y } : {}), kid: row.kid, alg: row.alg, use: 'sig' },
  }
}
