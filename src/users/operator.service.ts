import type { ActivityLog } from '../activity/activity.service.js'
import { hashPassword, passwordProblems } from '../auth/passwords.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { Config } from '../config.js'
import type { Db } from '../db/database.js'
import { AppError, validationError } from '../errors.js'
import { comparable } from './field-rules.js'
import type { UsersRepository } from './users.repository.js'
import type { UserRow } from './users.table.js'

export interface OperatorServiceDeps {
  db: Db
  users: UsersRepository
  sessions: SessionsRepository
  config: Pick<Config, 'passwordHashCost'>
  /** Records `password_changed` ({by: 'operator'}) in the change's transaction. */
  activity: Pick<ActivityLog, 'record'>
}

// `id:42` names a user by id: neither a username nor an email may contain a colon (field-rules.ts).
const BY_ID = /^id:(\d{1,16})$/

/**
 * The user a USER argument names: a username or an email, compared as sign-in compares them (NFKC, lower
 * case, trimmed), or `id:N`. 404 when there is none; 400 when it is one user's username and another's email.
 */
export async function findUserByArgument(db: Db, users: UsersRepository, login: string): Promise<UserRow> {
  const byId = BY_ID.exec(login.trim())
  if (byId) {
    const user = await users.findById(db.kysely, Number(byId[1]))
    if (!user) throw new AppError('not_found', { detail: `no user has the id ${byId[1]}` })
    return user
  }
  const text = comparable(login.trim())
  const [byUsername, byEmail] = await Promise.all([users.findByLogin(db.kysely, 'username_lower', text), users.findByLogin(db.kysely, 'email_lower', text)])
  if (byUsername && byEmail && byUsername.id !== byEmail.id) {
    throw validationError(
      { user: [`${JSON.stringify(login)} is the username of user ${byUsername.id} and the email of user ${byEmail.id}: name one as id:${byUsername.id} or id:${byEmail.id}`] },
      'ambiguous user',
    )
  }
  const user = byUsername ?? byEmail
  if (!user) throw new AppError('not_found', { detail: `no user has the username or email ${JSON.stringify(login.trim())}` })
  return user
}

/**
 * What an operator does to an account from the command line (`portrait users …`), outside any request: no
 * actor and no policy, the operator holds the database. The same rules as the API otherwise: the password rules,
 * the comparable() spelling of a login, and sessions that end in the transaction of the change that ends them.
 */
export class OperatorService {
  constructor(private readonly deps: OperatorServiceDeps) {}

  /** The user a USER argument names (see findUserByArgument). */
  find(login: string): Promise<UserRow> {
    return findUserByArgument(this.deps.db, this.deps.users, login)
  }

  /**
   * A new password under every password rule (400 on `password`, every broken rule at once), stored as argon2id
   * (hashed before the transaction opens); every session of the user ends with it. Returns how many ended.
   */
  async setPassword(user: UserRow, password: string): Promise<{ sessionsEnded: number }> {
    const { db, users, sessions, config, activity } = this.deps
    const problems = passwordProblems(password, { username: user.username, email: user.email })
    if (problems.length) throw validationError({ password: problems })
    const hash = await hashPassword(password, config.passwordHashCost)
    return db.kysely.transaction().execute(async (trx) => {
      if (!(await users.update(trx, user.id, { password_hash: hash }))) throw new AppError('not_found', { detail: `user ${user.id} is gone` })
      await activity.record(trx, { userId: user.id, type: 'password_changed', details: { by: 'operator' } })
      return { sessionsEnded: await sessions.deleteAllOfUser(trx, user.id) }
    })
  }

  /**
   * Activates or deactivates the account. Deactivation ends every session at once (its access tokens stop at the
   * next request: the session query wants a live session of an active user). The last active superuser is kept
   * active unless `force`: nobody could act as one any more (a superuser can only be made by an operator).
   */
  async setActive(user: UserRow, active: boolean, options: { force?: boolean } = {}): Promise<{ changed: boolean; sessionsEnded: number }> {
    const { db, users, sessions } = this.deps
    return db.kysely.transaction().execute(async (trx) => {
      // The superusers are locked before the user's own row, in one order for every operator (no deadlock).
      if (!active && user.is_superuser && user.is_active && !options.force) {
        const others = (await users.activeSuperuserIds(trx)).filter((id) => id !== user.id)
        if (others.length === 0) {
          throw new AppError('forbidden', { detail: `${user.username} is the last active superuser; deactivating it leaves nobody to act as one (--force does it anyway)` })
        }
      }
      const before = await users.findByIdForUpdate(trx, user.id)
      if (!before) throw new AppError('not_found', { detail: `user ${user.id} is gone` })
      const changed = Boolean(before.is_active) !== active
      if (changed) await users.update(trx, user.id, { is_active: active ? 1 : 0 })
      // Sessions of an inactive account are refused already; ending them (even when it was inactive) also stops a refresh.
      return { changed, sessionsEnded: active ? 0 : await sessions.deleteAllOfUser(trx, user.id) }
    })
  }
}
