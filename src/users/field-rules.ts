/**
 * The field rules of SPEC §2, shared by sign-up and profile updates.
 * Each rule takes the trimmed value and returns an error message or undefined.
 */
import { codePointName, invisibleCharacter, isModeratelyRestrictive, markProblem } from './lookalikes.js'

export type FieldRule = (value: string) => string | undefined

// Django's username rule, with Unicode letters (and their combining marks) and digits.
const USERNAME = /^[\p{L}\p{M}\p{Nd}@.+_-]+$/u
const EMAIL_LOCAL = /^[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+(\.[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+)*$/u
const EMAIL_DOMAIN = /^([\p{L}\p{N}]([\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?\.)+[\p{L}]{2,63}$/u
const PHONE = /^\+?[0-9]+$/
const CONTROL = /\p{Cc}/u

export const codePoints = (value: string): number => [...value].length

/**
 * The form a username or email is compared in: NFKC (as Django normalises usernames, so a composed and a
 * decomposed "Zoë" are one name) and lower case. The value itself is stored as typed.
 */
export const comparable = (value: string): string => value.normalize('NFKC').toLowerCase()

function maxLength(limit: number): FieldRule {
  return (value) => (codePoints(value) > limit ? `Ensure this field has no more than ${limit} characters.` : undefined)
}

/** A name shown to others: no text-direction controls and no invisible characters beyond joiners. */
function displayName(limit: number): FieldRule {
  const length = maxLength(limit)
  return (value) => {
    const tooLong = length(value)
    if (tooLong) return tooLong
    // Joiners and variation selectors after a letter or emoji are kept: Persian, Indic scripts and emoji need them.
    const found = invisibleCharacter(value, { allowShaping: true })
    if (found?.bidi) return `Text-direction control characters (${codePointName(found.char)}) are not allowed.`
    if (found) return `Invisible characters (${codePointName(found.char)}) are not allowed.`
  }
}

export const rules = {
  username(value) {
    if (value === '') return 'This field may not be blank.'
    if (codePoints(value) > 150) return 'Ensure this field has no more than 150 characters.'
    // Checked before the alphabet because \p{M} lets invisible variation selectors and joiners through.
    const invisible = invisibleCharacter(value)
    if (invisible) {
      const kind = invisible.bidi ? 'a text-direction control character' : 'an invisible character'
      return `Enter a valid username: it contains ${kind} (${codePointName(invisible.char)}).`
    }
    if (!USERNAME.test(value)) return 'Enter a valid username: letters, digits and @ . + - _ only.'
    const marks = markProblem(value)
    if (marks) return `Enter a valid username: ${marks}.`
    if (!isModeratelyRestrictive(value)) {
      return 'Enter a valid username: use the letters of one script (Latin may be mixed with one other, such as Han and kana or Hangul, but not with Cyrillic or Greek).'
    }
  },
  email(value) {
    if (value === '') return 'This field may not be blank.'
    if (codePoints(value) > 200) return 'Ensure this field has no more than 200 characters.'
    const at = value.lastIndexOf('@')
    const local = value.slice(0, at)
    if (at < 1 || local.length > 64 || !EMAIL_LOCAL.test(local) || !EMAIL_DOMAIN.test(value.slice(at + 1))) {
      return 'Enter a valid email address.'
    }
  },
  first_name: displayName(200),
  last_name: displayName(200),
  number_phone(value) {
    if (codePoints(value) > 10) return 'Ensure this field has no more than 10 characters.'
    if (value !== '' && !PHONE.test(value)) return 'Enter digits only, with an optional leading +.'
  },
} satisfies Record<string, FieldRule>

/** The rules above in words, for the OpenAPI document (sign-up and profile update bodies). */
export const descriptions = {
  username:
    'Letters, digits and @ . + - _; the letters of one script (Latin may go with one other, such as Han and kana or Hangul, not with Cyrillic or Greek); no invisible characters, overlays or stacked accents; unique ignoring case and not confusable with another user\'s (Unicode TS #39 skeleton)',
  name: 'No text-direction controls or invisible characters (joiners and variation selectors after a letter or emoji are kept)',
}

export type TextField = keyof typeof rules
export const TEXT_FIELDS = Object.keys(rules) as TextField[]

/**
 * Trims and checks one text value. Returns the clean value or an error message.
 * Control characters and lone surrogates are refused everywhere: no database should store them.
 */
export function cleanText(field: TextField, raw: unknown): { value: string } | { error: string } {
  if (typeof raw !== 'string') return { error: 'Not a valid string.' }
  const value = raw.trim()
  if (CONTROL.test(value) || !value.isWellFormed()) return { error: 'Control characters are not allowed.' }
  const error = rules[field](value)
  return error === undefined ? { value } : { error }
}
