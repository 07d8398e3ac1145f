import { validationError } from '../errors.js'
import type { UserRow } from '../users/users.table.js'
import { hashFormat } from './django-hashers.js'
import { verifyPassword } from './passwords.js'
import type { SignInLimiter } from './sign-in-limiter.js'

/**
 * Checks a signed-in user's password: 400 on `field` when it is wrong. The attempt is reserved against the
 * account's sign-in limit first (429 without a hash once the limit is used up), so a stolen access token cannot
 * guess the password any faster than a sign-in form could.
 */
export async function checkPassword(
  limiter: SignInLimiter,
  user: UserRow,
  password: string,
  address: string,
  field = 'current_password',
): Promise<void> {
  const ticket = await limiter.reserve({ account: { userId: user.id }, address })
  let matches: boolean
  try {
    matches = await verifyPassword(user.password_hash, password)
  } catch (error) {
    await ticket.cancelled()
    throw error
  }
  if (!matches) throw validationError({ [field]: ['Your current password is incorrect.'] })
  await ticket.succeeded()
}

/** False for an account imported without a password (Django's `!…`, or empty): no password matches it. */
export function hasUsablePassword(user: UserRow): boolean {
  return hashFormat(user.password_hash) !== 'unusable'
}
