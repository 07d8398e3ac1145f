import type { Db } from '../db/database.js'
import { hashSecret, randomToken } from './tokens.js'

const SECRET = /^psk_[A-Za-z0-9_-]{43}$/
export const SERVICE_KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/

/**
 * Credentials of the services allowed to introspect tokens. The secret is `psk_` and 32 random bytes,
 * printed once; only its SHA-256 is stored, and a presented secret is looked up by that hash (a unique
 * index), so no comparison runs over secret bytes.
 */
export class ServiceKeys {
  constructor(private readonly db: Db) {}

  async create(name: string): Promise<string> {
    const secret = `psk_${randomToken(32)}`
    await this.db.kysely.insertInto('service_keys').values({ name, secret_hash: hashSecret(secret), created_at: new Date().toISOString() }).execute()
    return secret
  }

  async list(): Promise<{ name: string; created: string; revoked?: string }[]> {
    const rows = await this.db.kysely.selectFrom('service_keys').select(['name', 'created_at', 'revoked_at']).orderBy('created_at').execute()
    return rows.map((row) => ({
      name: row.name,
      created: new Date(row.created_at).toISOString(),
      ...(row.revoked_at !== null ? { revoked: new Date(row.revoked_at).toISOString() } : {}),
    }))
  }

  async revoke(name: string): Promise<boolean> {
    const result = await this.db.kysely
      .updateTable('service_keys')
      .set({ revoked_at: new Date().toISOString() })
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .executeTakeFirst()
    return result.numUpdatedRows === 1n
  }

  /** The service's name when `secret` is a live service credential. */
  async check(secret: string): Promise<string | undefined> {
    if (!SECRET.test(secret)) return undefined
    const row = await this.db.kysely
      .selectFrom('service_keys')
      .select('name')
      .where('secret_hash', '=', hashSecret(secret))
      .where('revoked_at', 'is', null)
      .executeTakeFirst()
    return row?.name
  }
}
