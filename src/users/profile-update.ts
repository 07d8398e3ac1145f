import type { FieldErrorList } from '../errors.js'
import { PASSWORD_FIELD_MAX_LENGTH, STEP_UP_CODE_MAX_LENGTH } from '../mfa/mfa.schemas.js'
import { cleanText, TEXT_FIELDS, type TextField } from './field-rules.js'
import { ACCOUNT_FLAGS, type AccountFlag } from './users.policy.js'

/** A profile update as it arrived, whatever the content type. */
export interface ProfileUpdateInput {
  /** The JSON object, or the form's text fields (a repeated form field arrives as an array). */
  fields: Record<string, unknown>
  source: 'json' | 'form'
  /** Bytes of the `avatar` file part, when one was uploaded. */
  upload?: Buffer
}

export type AvatarChange = { kind: 'keep' } | { kind: 'remove' } | { kind: 'upload'; bytes: Buffer }

export interface ProfileChanges {
  text: Partial<Record<TextField, string>>
  flags: Partial<Record<AccountFlag, boolean>>
  avatar: AvatarChange
  /**
   * `otp_code` / `recovery_code`: a second factor for the step-up an email change may need; `current_password`:
   * the password an account without one proves instead. Not profile fields.
   */
  stepUp: { otp_code?: string; recovery_code?: string; current_password?: string }
}

const STEP_UP_FIELDS = new Set(['otp_code', 'recovery_code', 'current_password'])

const READ_ONLY = new Set(['id', 'date_joined', 'last_login', 'email_verified', ...ACCOUNT_FLAGS])
const WRITABLE_TEXT = new Set<string>(TEXT_FIELDS)
const FORM_BOOLEANS: Record<string, boolean> = { true: true, false: false, '1': true, '0': false, on: true, off: false }

/**
 * Checks every field at once (SPEC §4) and returns what to change, or records every problem in `errors`.
 * `currentAvatar` lets a client PUT back the avatar URL it got; `writableFlags` is the policy's answer.
 * `currentUsername` sent back unchanged is no change: a name from before the username rules tightened (or
 * one that already looked like an older account's, migration 0004) is not judged again on every PUT.
 */
export function parseProfileUpdate(
  input: ProfileUpdateInput,
  context: { currentAvatarUrl: string | null; writableFlags: readonly AccountFlag[]; currentUsername?: string },
  errors: FieldErrorList,
): ProfileChanges {
  const changes: ProfileChanges = {
    text: {},
    flags: {},
    avatar: input.upload ? { kind: 'upload', bytes: input.upload } : { kind: 'keep' },
    stepUp: {},
  }
  for (const [field, raw] of Object.entries(input.fields)) {
    if (input.source === 'form' && Array.isArray(raw)) {
      errors.add(field, 'Send this field only once.')
    } else if (field === 'username' && typeof raw === 'string' && raw.trim() === context.currentUsername) {
      // Unchanged (see above).
    } else if (WRITABLE_TEXT.has(field)) {
      const result = cleanText(field as TextField, raw)
      if ('error' in result) errors.add(field, result.error)
      else changes.text[field as TextField] = result.value
    } else if (field === 'current_password') {
      // Never trimmed: a password may begin or end with a space.
      if (typeof raw === 'string' && raw.length <= PASSWORD_FIELD_MAX_LENGTH) changes.stepUp.current_password = raw
      else errors.add(field, 'Not a valid password.')
    } else if (STEP_UP_FIELDS.has(field)) {
      if (typeof raw === 'string' && raw.length <= STEP_UP_CODE_MAX_LENGTH) changes.stepUp[field as 'otp_code' | 'recovery_code'] = raw.trim()
      else errors.add(field, 'Not a valid code.')
    } else if (field === 'avatar') {
      parseAvatarField(raw, input, context.currentAvatarUrl, changes, errors)
    } else if (context.writableFlags.includes(field as AccountFlag)) {
      const value = input.source === 'json' ? raw : FORM_BOOLEANS[String(raw).toLowerCase()]
      if (typeof value === 'boolean') changes.flags[field as AccountFlag] = value
      else errors.add(field, 'Must be a boolean.')
    } else if (READ_ONLY.has(field)) {
      // Accepted and ignored, so a client can send back what it read.
    } else if (field === 'password') {
      errors.add(field, 'The password cannot be changed here; use POST /api/users/{id}/password.')
    } else {
      errors.add(field, 'Unknown field.')
    }
  }
  return changes
}

function parseAvatarField(
  raw: unknown,
  input: ProfileUpdateInput,
  currentAvatarUrl: string | null,
  changes: ProfileChanges,
  errors: FieldErrorList,
): void {
  if (input.upload) {
    errors.add('avatar', 'Send the avatar either as a file or as a text field, not both.')
  } else if (raw === null || (input.source === 'form' && raw === '')) {
    changes.avatar = { kind: 'remove' }
  } else if (typeof raw === 'string' && raw === currentAvatarUrl) {
    // The URL the client read: unchanged.
  } else {
    errors.add('avatar', 'To change the avatar upload an image file as multipart/form-data; send null to remove it.')
  }
}
