import type { TestContext } from 'node:test'
import { Secret, TOTP } from 'otpauth'
import type { Config } from '../../src/config.js'
import { createDb } from '../../src/db/database.js'
import type { Session, TestClient } from './app.js'
import { deferCleanup } from './cleanup.js'

/** The code an authenticator app shows for `secret`, `steps` time steps from now (RFC 6238, as the server). */
export function codeAt(secret: string, steps = 0): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: Date.now() + steps * 30_000 })
}

/**
 * Waits out the last 4 seconds of a 30-second step, so that "this step, the one before, the one after" mean
 * the same to the test and to the server a few requests later (a test runs well within that).
 */
export async function awayFromStepEdge(): Promise<void> {
  const into = Date.now() % 30_000
  if (into > 26_000) await new Promise((resolve) => setTimeout(resolve, 30_000 - into + 50))
}

/** Sets up an authenticator app for the session's user: the secret, and the recovery codes. Uses the step before now. */
export async function enrolTotp(client: TestClient, session: Session): Promise<{ secret: string; recoveryCodes: string[] }> {
  const enrolled = await client.send('POST', '/api/users/me/mfa/totp', undefined, session.access)
  if (enrolled.statusCode !== 200) throw new Error(`enrol: ${enrolled.statusCode} ${enrolled.body}`)
  const { secret } = enrolled.json() as { secret: string }
  const confirmed = await client.send('POST', '/api/users/me/mfa/totp/confirm', { code: codeAt(secret, -1) }, session.access)
  if (confirmed.statusCode !== 200) throw new Error(`confirm: ${confirmed.statusCode} ${confirmed.body}`)
  return { secret, recoveryCodes: (confirmed.json() as { recovery_codes: string[] }).recovery_codes }
}

/** The claims of an access token (read, not verified: the server did that). */
export function claimsOf(access: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(access.split('.')[1] as string, 'base64url').toString('utf8'))
}

/** A second connection to the test's database, for what no API does (ageing a row, reading a stored secret). */
export function sideDb(t: TestContext, config: Config) {
  const db = createDb(config)
  deferCleanup(t, () => db.destroy())
  return db.kysely
}
