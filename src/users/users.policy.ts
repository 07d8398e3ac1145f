import type { UserRow } from './users.table.js'

/** Who may do what to whom. Every authorization rule about users is decided here and nowhere else. */
export const usersPolicy = {
  canRead: (actor: UserRow, target: UserRow): boolean => actor.id === target.id || isStaff(actor),
  canUpdate: (actor: UserRow, target: UserRow): boolean => actor.id === target.id || Boolean(actor.is_superuser),
  canChangePassword: (actor: UserRow, target: UserRow): boolean => actor.id === target.id,
  canDelete: (actor: UserRow, target: UserRow): boolean =>
    actor.id === target.id || (Boolean(actor.is_superuser) && !target.is_superuser),
  canList: (actor: UserRow): boolean => isStaff(actor),
  /**
   * Security activity, as the profile itself: your own, or anyone's for staff (who handle account support;
   * the addresses shown are masked for everyone).
   */
  canReadActivity: (actor: UserRow, target: UserRow): boolean => actor.id === target.id || isStaff(actor),
  /** A new verification link goes to your own address only. */
  canRequestVerification: (actor: UserRow, target: UserRow): boolean => actor.id === target.id,
  /** A superuser may send another user a reset link (the user's own way is POST /api/auth/password-reset). */
  canSendPasswordReset: (actor: UserRow, target: UserRow): boolean => Boolean(actor.is_superuser) && actor.id !== target.id,
  /** Deleting yourself needs your password; a superuser removing someone else does not. */
  deleteNeedsPassword: (actor: UserRow, target: UserRow): boolean => actor.id === target.id,
  /**
   * Account flags a caller may write on a target. Only a superuser, and only on someone else's
   * profile (a superuser cannot lock themselves out by accident).
   */
  writableFlags: (actor: UserRow, target: UserRow): readonly AccountFlag[] =>
    actor.is_superuser && actor.id !== target.id ? ACCOUNT_FLAGS : [],
  /**
   * Whether those flags may take new values on this target: not on another superuser, whom a demotion
   * would first make deletable or lock out. Sending their current values stays harmless (a PUT of what
   * was read); changing a superuser's flags is an operator's job, outside the API.
   */
  canChangeFlags: (_actor: UserRow, target: UserRow): boolean => !target.is_superuser,
}

export const ACCOUNT_FLAGS = ['is_active', 'is_staff', 'is_superuser'] as const
export type AccountFlag = (typeof ACCOUNT_FLAGS)[number]

function isStaff(user: UserRow): boolean {
  return Boolean(user.is_staff || user.is_superuser)
}
