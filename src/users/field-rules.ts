/**
 * The field rules of SPEC §2, shared by sign-up and profile updates.
 * Each rule takes the trimmed value and returns an error message or undefined.
 */
import { codePointName, invisibleCharacter, isModeratelyRestrictive, markProblem } from './lookalikes.js'

export type FieldRule = (value: string) => string | undefined

// Django's username rule, with Unicode letters (and their combining marks) and digits.
const USERNAME_PATTERN = '^[\\p{L}\\p{M}\\p{Nd}@.+_-]+$'
const EMAIL_LOCAL = "[\\p{L}\\p{N}!#$%&'*+/=?^_`{|}~-]+(?:\\.[\\p{L}\\p{N}!#$%&'*+/=?^_`{|}~-]+)*"
const EMAIL_DOMAIN = '(?:[\\p{L}\\p{N}](?:[\\p{L}\\p{N}-]{0,61}[\\p{L}\\p{N}])?\\.)+\\p{L}{2,63}'
// The local part is at most 64 characters (the lookahead), the domain ends in a label of letters.
const EMAIL_PATTERN = `^(?=[^@]{1,64}@)${EMAIL_LOCAL}@${EMAIL_DOMAIN}$`
const PHONE_PATTERN = '^(?:\\+?[0-9]+)?$'
// A name shown to others: no control, format or default-ignorable character, no lone surrogate and no line or
// paragraph separator, except a joiner or variation selector right after a visible character (lookalikes.ts
// invisibleCharacter with allowShaping, as a pattern).
const HIDDEN = '\\p{Cc}\\p{Cs}\\p{Cf}\\p{Zl}\\p{Zp}\\p{Default_Ignorable_Code_Point}'
const NAME_PATTERN = `^(?:[^${HIDDEN}]|(?<=[^\\s${HIDDEN}])[\\u200c\\u200d\\p{Variation_Selector}])*$`
const LIMITS = { username: 150, email: 200, first_name: 200, last_name: 200, number_phone: 10 } as const
// Patterns are written for JSON Schema (ECMA-262 with the `u` flag, as Ajv and Redocly read them) and
// compiled here with that flag, so the document's pattern is the server's check.
const USERNAME = new RegExp(USERNAME_PATTERN, 'u')
const EMAIL = new RegExp(EMAIL_PATTERN, 'u')
const PHONE = new RegExp(PHONE_PATTERN, 'u')
const NAME = new RegExp(NAME_PATTERN, 'u')
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
    // The pattern the document shows decides; the walk below only names the character for the message.
    if (NAME.test(value)) return undefined
    // Joiners and variation selectors after a letter or emoji are kept: Persian, Indic scripts and emoji need them.
    const found = invisibleCharacter(value, { allowShaping: true })
    if (found?.bidi) return `Text-direction control characters (${codePointName(found.char)}) are not allowed.`
    if (found) return `Invisible characters (${codePointName(found.char)}) are not allowed.`
    // What the walk does not name (a control character, a lone surrogate, a line separator) is refused all the same.
    return 'Control characters and line breaks are not allowed.'
  }
}

export const rules = {
  username(value) {
    if (value === '') return 'This field may not be blank.'
    const tooLong = maxLength(LIMITS.username)(value)
    if (tooLong) return tooLong
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
    const tooLong = maxLength(LIMITS.email)(value)
    if (tooLong) return tooLong
    if (!EMAIL.test(value)) return 'Enter a valid email address.'
  },
  first_name: displayName(LIMITS.first_name),
  last_name: displayName(LIMITS.last_name),
  number_phone(value) {
    const tooLong = maxLength(LIMITS.number_phone)(value)
    if (tooLong) return tooLong
    if (!PHONE.test(value)) return 'Enter digits only, with an optional leading +.'
  },
} satisfies Record<string, FieldRule>

/** The rules above in words, for the OpenAPI document (sign-up and profile update bodies). */
export const descriptions = {
  username:
    '1–150 letters, digits and @ . + - _ (the pattern; surrounding white space is trimmed first). Not expressible as a schema, and checked by the server: the letters of one script (Latin may go with one other, such as Han and kana or Hangul, not with Cyrillic or Greek); no invisible characters, overlays or stacked accents; unique ignoring case and not confusable with another user\'s (Unicode TS #39 skeleton)',
  email: 'At most 200 characters, local part at most 64; Unicode letters are allowed (the pattern). Not expressible as a schema: unique ignoring case',
  name: 'At most 200 characters, surrounding white space trimmed, may be empty; no control characters, text-direction controls or invisible characters (joiners and variation selectors after a letter or emoji are kept)',
  number_phone: 'At most 10 characters: digits with an optional leading +, or empty',
}

/**
 * Each text field's rule as JSON Schema, from the same constants the checks above use: the route schemas
 * (TypeBox) and so the OpenAPI document take them from here. Lengths count code points, as Ajv's do.
 */
export const fieldSchemas = {
  username: { minLength: 1, maxLength: LIMITS.username, pattern: USERNAME_PATTERN, description: descriptions.username, example: 'zoe_martin' },
  email: { minLength: 1, maxLength: LIMITS.email, format: 'email', pattern: EMAIL_PATTERN, description: descriptions.email, example: 'zoe@example.com' },
  first_name: { maxLength: LIMITS.first_name, pattern: NAME_PATTERN, description: descriptions.name, example: 'Zoë' },
  last_name: { maxLength: LIMITS.last_name, pattern: NAME_PATTERN, description: descriptions.name, example: 'Martin' },
  number_phone: { maxLength: LIMITS.number_phone, pattern: PHONE_PATTERN, description: descriptions.number_phone, example: '+331234567' },
} as const

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
