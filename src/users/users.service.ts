import type { ActivityLog } from '../activity/activity.service.js'
import type { ClientInfo } from '../activity/client.js'
import { checkPassword } from '../auth/password-check.js'
import { hashPassword, passwordProblems } from '../auth/passwords.js'
import type { SessionsRepository } from '../auth/sessions.repository.js'
import type { SignInLimiter } from '../auth/sign-in-limiter.js'
import { InvalidImageError, processAvatar } from '../avatars/image.js'
import { type AvatarStorage, newAvatarName } from '../avatars/storage.js'
import type { ConcurrencyLimit } from '../concurrency.js'
import type { Config } from '../config.js'
import { violatedUniqueIndex } from '../db/constraints.js'
import type { Db } from '../db/database.js'
import { AppError, FieldErrorList, validationError } from '../errors.js'
import type { StepUp, StepUpProof } from '../mfa/step-up.js'
import { type ProfileUpdateInput, parseProfileUpdate } from './profile-update.js'
import type { SearchReader } from './search-reader.js'
import { usersPolicy } from './users.policy.js'
import type { UserChanges, UsersRepository } from './users.repository.js'
import { etagOf, toUser } from './users.schemas.js'
import type { UserRow } from './users.table.js'

type Rule = (actor: UserRow, target: UserRow) => boolean
/** Records mail about an update in its transaction, given the row before and after. */
type MailHook = (executor: Db['kysely'], before: UserRow, after: UserRow) => Promise<void>

const USER_ID = /^\d{1,16}$/

/** Maps a unique index to the field whose value collided. */
const UNIQUE_FIELDS: Record<string, string> = {
  users_username_lower_key: 'username',
  users_username_skeleton_key: 'username',
  users_email_lower_key: 'email',
}

export function uniqueViolationError(error: unknown): AppError | undefined {
  const index = violatedUniqueIndex(error)
  if (index === undefined) return undefined
  const field = UNIQUE_FIELDS[index] ?? 'non_field_errors'
  return validationError({ [field]: [`A user with that ${field} already exists.`] })
}

type Executor = Db['kysely']

/** The mail the users' stories record inside their own transactions (account-tokens/account-mail.service.ts). */
export interface AccountNotices {
  /** Counts the mails an email change will send against the new address's limit (429 when used up). */
  reserveEmailChange(newEmail: string): Promise<void>
  /** A verification link to the new address, a notice to the old one. */
  emailChanged(executor: Executor, before: UserRow, after: UserRow): Promise<void>
  passwordChanged(executor: Executor, user: UserRow): Promise<void>
  /** After the commit: deliver now. */
  committed(): void
}

export interface UsersServiceDeps {
  db: Db
  users: UsersRepository
  sessions: SessionsRepository
  storage: AvatarStorage
  imageLimit: ConcurrencyLimit
  /** The same per-account limit sign-in uses: every check of a password counts against it. */
  limiter: SignInLimiter
  /** Asks a caller with a second factor for a recent one before a password, email or deletion (src/mfa/step-up.ts). */
  stepUp: StepUp
  /** Runs the staff list's statements (off the event loop on SQLite). */
  searchReader: SearchReader
  /** Security activity: password and email changes. */
  activity: ActivityLog
  notices: AccountNotices
  config: Pick<Config, 'avatarSize' | 'passwordHashCost' | 'publicUrl' | 'usersExactCountLimit'>
}

/** The stories of /api/users: who the target is, what may change, and the transaction around it. */
export class UsersService {
  readonly mediaBaseUrl: string

  constructor(private readonly deps: UsersServiceDeps) {
    this.mediaBaseUrl = deps.config.publicUrl ?? ''
  }

  /** The user named by the path, checked in SPEC §3's order: 404 (no such id, or not an integer), then 403. */
  async resolveTarget(actor: UserRow, idParam: string, allowed: Rule): Promise<UserRow> {
    const id = USER_ID.test(idParam) ? Number(idParam) : Number.NaN
    if (!Number.isSafeInteger(id)) throw new AppError('not_found', { detail: 'No user has this id.' })
    const target = id === actor.id ? actor : await this.deps.users.findById(this.deps.db.kysely, id)
    if (!target) throw new AppError('not_found', { detail: 'No user has this id.' })
    if (!allowed(actor, target)) throw new AppError('forbidden', { detail: 'You may not do this to this user.' })
    return target
  }

  present(row: UserRow) {
    return toUser(row, this.mediaBaseUrl)
  }

  /**
   * Partial update of a profile from any content type; nothing changes when anything fails. A new email
   * needs the step-up (`caller`: the session and address the request came from).
   *
   * What an email change needs (step-up, a verification mail) is judged on the row as read. Two changes racing
   * (a stale token sending the old address in new letter case while the owner moves to a new one) must not let
   * the second land on a row the first changed: the write is conditional on that row's version, and a write
   * that finds it changed is judged again on the fresh row (a few times, then 503).
   */
  async update(
    actor: UserRow,
    target: UserRow,
    input: ProfileUpdateInput,
    ifMatch: string | undefined,
    caller: { sessionId: string } & ClientInfo,
  ): Promise<UserRow> {
    let current = target
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.updateOnce(actor, current, input, ifMatch, caller)
      } catch (error) {
        if (!(error instanceof ChangedMeanwhile)) throw error
        if (attempt === MAX_UPDATE_ATTEMPTS) {
          throw new AppError('service_unavailable', { detail: 'This profile is being changed by other requests right now. Try again.', headers: { 'retry-after': '1' } })
        }
        const fresh = await this.deps.users.findById(this.deps.db.kysely, target.id)
        if (!fresh) throw new AppError('not_found')
        current = fresh
      }
    }
  }

  private async updateOnce(
    actor: UserRow,
    target: UserRow,
    input: ProfileUpdateInput,
    ifMatch: string | undefined,
    caller: { sessionId: string } & ClientInfo,
  ): Promise<UserRow> {
    const { db, users, imageLimit, config } = this.deps
    const errors = new FieldErrorList()
    const changes = parseProfileUpdate(
      input,
      {
        currentAvatarUrl: this.present(target).avatar,
        currentUsername: target.username,
        writableFlags: usersPolicy.writableFlags(actor, target),
      },
      errors,
    )
    const changedFlags = Object.entries(changes.flags).filter(([flag, value]) => value !== Boolean(target[flag as keyof typeof changes.flags]))
    if (changedFlags.length > 0 && !usersPolicy.canChangeFlags(actor, target)) {
      throw new AppError('forbidden', {
        detail: `Another superuser's ${changedFlags.map(([flag]) => flag).join(', ')} cannot be changed through the API, only by an operator.`,
      })
    }
    const { username, email } = changes.text
    if (username !== undefined || email !== undefined) {
      const taken = await users.takenBy(db.kysely, { username, email }, target.id)
      if (taken.username) errors.add('username', 'A user with that username already exists.')
      if (taken.email) errors.add('email', 'A user with that email already exists.')
    }
    let image: Buffer | undefined
    if (changes.avatar.kind === 'upload' && errors.isEmpty) {
      const bytes = changes.avatar.bytes
      try {
        image = await imageLimit.run(() => processAvatar(bytes, config.avatarSize))
      } catch (error) {
        if (!(error instanceof InvalidImageError)) throw error
        errors.add('avatar', error.message)
      }
    }
    errors.throwIfAny()
    const stepUp = { actor, target, sessionId: caller.sessionId, proof: changes.stepUp, client: { address: caller.address } }
    if (changedFlags.length > 0) await this.deps.stepUp.require('change_privileges', stepUp)
    if (email !== undefined && isNewAddress(email, target)) {
      await this.deps.stepUp.require('change_email', stepUp)
    }

    const row: UserChanges = { ...changes.text }
    for (const [flag, value] of Object.entries(changes.flags)) row[flag as keyof typeof changes.flags] = value ? 1 : 0
    // Without If-Match, an email in the change still pins the version it was judged on (see update).
    const pinned = ifMatch === undefined && email !== undefined
    const expectedVersion = pinned ? target.version : parseIfMatch(ifMatch, target)
    // A new address (anything but a change of letter case) is unproved: it is mailed a link, the old one a
    // notice, both in the update's transaction.
    const emailChanged = changes.text.email !== undefined && isNewAddress(changes.text.email, target)
    if (emailChanged) row.email_verified = 0
    // …and recorded in the account's activity, with who changed it when it was not the owner.
    const withMail = emailChanged
      ? async (trx: Executor, before: UserRow, after: UserRow) => {
          // Each change mails the new address: flipping an email to someone else's and back must not mail them
          // without end. Counted once the write succeeded (a refused change counts nothing), inside its
          // transaction, so a 429 undoes the change.
          await this.deps.notices.reserveEmailChange(after.email)
          await this.deps.notices.emailChanged(trx, before, after)
          await this.deps.activity.record(trx, { userId: target.id, type: 'email_changed', client: { address: caller.address, userAgent: caller.userAgent }, details: actor.id === target.id ? {} : { by: actor.id } })
        }
      : undefined

    let updated: UserRow
    try {
      if (changes.avatar.kind === 'keep') {
        if (Object.keys(row).length === 0) return expectedVersion === undefined ? target : await this.reread(target.id, expectedVersion)
        updated = await this.write(target, row, expectedVersion, withMail)
      } else {
        const newName = image ? newAvatarName() : null
        row.avatar = newName
        updated = await this.replaceAvatar(target.id, row, newName, image, expectedVersion, withMail)
      }
    } catch (error) {
      throw pinned && error instanceof AppError && error.code === 'precondition_failed' ? new ChangedMeanwhile() : error
    }
    if (withMail) this.deps.notices.committed()
    return updated
  }

  private async reread(id: number, expectedVersion: number): Promise<UserRow> {
    const row = await this.deps.users.findById(this.deps.db.kysely, id)
    if (!row) throw new AppError('not_found')
    if (row.version !== expectedVersion) throw preconditionFailed()
    return row
  }

  /** A write that touches no image: one UPDATE … RETURNING, in a transaction only when mail goes with it. */
  private async write(target: UserRow, row: UserChanges, expectedVersion?: number, withMail?: MailHook): Promise<UserRow> {
    const { db, users } = this.deps
    const apply = async (executor: Executor) => {
      const updated = await users.update(executor, target.id, row, expectedVersion)
      if (!updated) throw expectedVersion === undefined ? new AppError('not_found') : preconditionFailed()
      if (withMail) await withMail(executor, target, updated)
      return updated
    }
    try {
      return await (withMail ? db.kysely.transaction().execute(apply) : apply(db.kysely))
    } catch (error) {
      throw uniqueViolationError(error) ?? error
    }
  }

  /**
   * New image stored before the row commits (removed again if it does not), old image removed after
   * the commit: no crash or race leaves a profile pointing at a missing file; the sweep takes leftovers.
   */
  private async replaceAvatar(
    id: number,
    row: UserChanges,
    newName: string | null,
    image: Buffer | undefined,
    expectedVersion?: number,
    withMail?: MailHook,
  ): Promise<UserRow> {
    const { db, users, storage } = this.deps
    // A full or read-only disk fails here with a 503 (avatarStorageUnavailable) before anything is written.
    if (newName && image && !storage.transactional) await storage.put(newName, image, db.kysely)
    let oldName: string | null = null
    try {
      const updated = await db.kysely.transaction().execute(async (trx) => {
        const current = await users.findByIdForUpdate(trx, id)
        if (!current) throw new AppError('not_found')
        if (expectedVersion !== undefined && current.version !== expectedVersion) throw preconditionFailed()
        oldName = current.avatar
        if (newName && image && storage.transactional) await storage.put(newName, image, trx)
        const result = (await users.update(trx, id, row)) as UserRow
        if (withMail) await withMail(trx, current, result)
        if (oldName && storage.transactional) await storage.remove(oldName, trx)
        return result
      })
      if (oldName && !storage.transactional) await this.discardFile(oldName)
      return updated
    } catch (error) {
      if (newName && !storage.transactional) await this.discardFile(newName)
      throw uniqueViolationError(error) ?? error
    }
  }

  /**
   * Removes an image file no profile references (fs driver, outside any transaction). The change it follows
   * is decided already, so a disk that refuses the removal (read-only, say) must not turn it into an error:
   * the file stays for the start-up sweep or `portrait media gc`.
   */
  private async discardFile(name: string): Promise<void> {
    try {
      await this.deps.storage.remove(name, this.deps.db.kysely)
    } catch {}
  }

  /**
   * Changes the password after checking the current one; every other session of the user ends.
   * The current password is checked last, once everything else is valid, so the answer never tells a right
   * guess from a wrong one; the check counts against the account's sign-in limit (429 without a hash when used up).
   */
  async changePassword(
    target: UserRow,
    currentSessionId: string,
    body: { current_password: string; new_password: string } & StepUpProof,
    client: ClientInfo,
  ): Promise<void> {
    const { db, users, sessions, config, activity } = this.deps
    const errors = new FieldErrorList()
    for (const problem of passwordProblems(body.new_password, { username: target.username, email: target.email })) {
      errors.add('new_password', problem)
    }
    errors.throwIfAny()
    // Before the password is judged, so a stolen access token cannot learn whether a guess was right.
    const proof = { otp_code: body.otp_code?.trim(), recovery_code: body.recovery_code }
    await this.deps.stepUp.require('change_password', { actor: target, target, sessionId: currentSessionId, proof, client: { address: client.address } })
    await this.checkCurrentPassword(target, body.current_password, client.address)
    const hash = await hashPassword(body.new_password, config.passwordHashCost)
    await db.kysely.transaction().execute(async (trx) => {
      await users.update(trx, target.id, { password_hash: hash })
      await sessions.deleteAllOfUser(trx, target.id, currentSessionId)
      await this.deps.notices.passwordChanged(trx, target)
      await activity.record(trx, { userId: target.id, type: 'password_changed', client })
    })
    this.deps.notices.committed()
  }

  /** POST /api/users/me/reauthenticate: the password proven in this session now (see StepUp). */
  reauthenticate(actor: UserRow, sessionId: string, password: string, address: string): Promise<void> {
    return this.deps.stepUp.reauthenticate(actor, sessionId, password, { address })
  }

  /** 400 on current_password when it is wrong; the attempt is reserved against the account's limit first. */
  private checkCurrentPassword(target: UserRow, password: string, address: string): Promise<void> {
    return checkPassword(this.deps.limiter, target, password, address)
  }

  /** Deletes the account, its sessions (by cascade) and its avatar; a stale If-Match deletes nothing. */
  async delete(
    actor: UserRow,
    target: UserRow,
    body: { current_password?: string } & StepUpProof,
    ifMatch: string | undefined,
    caller: { sessionId: string; address: string },
  ): Promise<void> {
    const { db, users, storage } = this.deps
    const { address } = caller
    const currentPassword = body.current_password
    // Judged before the password, so a 412 says nothing about the guess.
    const expectedVersion = parseIfMatch(ifMatch, target)
    if (usersPolicy.deleteNeedsPassword(actor, target)) {
      if (typeof currentPassword !== 'string' || currentPassword === '') {
        throw validationError({ current_password: ['Your current password is required to delete the account.'] })
      }
      const proof = { otp_code: body.otp_code?.trim(), recovery_code: body.recovery_code }
      await this.deps.stepUp.require('delete_account', { actor, target, sessionId: caller.sessionId, proof, client: { address } })
      await this.checkCurrentPassword(target, currentPassword, address)
    } else if (actor.id !== target.id) {
      const proof = { otp_code: body.otp_code?.trim(), recovery_code: body.recovery_code, current_password: currentPassword }
      await this.deps.stepUp.require('delete_other_account', { actor, target, sessionId: caller.sessionId, proof, client: { address } })
    }
    let avatar: string | null = null
    await db.kysely.transaction().execute(async (trx) => {
      const current = await users.findByIdForUpdate(trx, target.id)
      if (!current) throw new AppError('not_found')
      if (expectedVersion !== undefined && current.version !== expectedVersion) throw preconditionFailed()
      avatar = current.avatar
      if (avatar && storage.transactional) await storage.remove(avatar, trx)
      await users.delete(trx, target.id)
    })
    if (avatar && !storage.transactional) await this.discardFile(avatar)
  }

  /** One page of the staff list: by page number (offset), or after an id (keyset) when `after` is given. */
  async list(search: string, page: number, pageSize: number, after?: number) {
    const { db, users, searchReader, config } = this.deps
    const found = await users.search(db.kysely, searchReader, {
      search,
      limit: pageSize,
      offset: (page - 1) * pageSize,
      after,
      exactCountLimit: config.usersExactCountLimit,
    })
    return { count: found.count, countExact: found.countExact, more: found.more, results: found.rows.map((row) => this.present(row)) }
  }
}

/**
 * Whether `email` is another address than the account's: any change but one of letter case. Not the NFKC and
 * case-folded `email_lower` the unique index compares: a fullwidth letter or a ligature makes a string that
 * folds to the same key yet is another mailbox to a mail server, so it must be stepped up to, proved and
 * noticed like any new address.
 */
export function isNewAddress(email: string, target: Pick<UserRow, 'email'>): boolean {
  // ASCII letters only: JavaScript's toLowerCase maps the Kelvin sign to k and the Ångström sign to å, which
  // mail servers need not do, so a change to such a twin is a new address.
  return asciiLower(email) !== asciiLower(target.email)
}

const asciiLower = (text: string) => text.replace(/[A-Z]/g, (letter) => letter.toLowerCase())

/** How often an update whose row changed while it was judged is judged again (see UsersService.update). */
const MAX_UPDATE_ATTEMPTS = 3

/** The row an update was judged on changed before its write (no If-Match was sent): judge it again. */
class ChangedMeanwhile extends Error {}

function preconditionFailed(): AppError {
  return new AppError('precondition_failed', { detail: 'The profile changed since you read it (If-Match does not match its ETag).' })
}

/** The version an If-Match header demands, or undefined when any version will do. */
function parseIfMatch(ifMatch: string | undefined, target: UserRow): number | undefined {
  if (ifMatch === undefined || ifMatch.trim() === '*') return undefined
  const current = etagOf(target)
  const tags = ifMatch.split(',').map((tag) => tag.trim())
  // The target row was read moments ago; demanding its version makes the write conditional on it.
  if (tags.includes(current)) return target.version
  throw preconditionFailed()
}
