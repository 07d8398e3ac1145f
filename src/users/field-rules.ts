/**
 * The field rules of SPEC §2, shared by sign-up and profile updates.
 * Each rule takes the trimmed value and returns an error message or undefined.
 */
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

export const rules = {
  username(value) {
    if (value === '') return 'This field may not be blank.'
    if (codePoints(value) > 150) return 'Ensure this field has no more than 150 characters.'
    if (!USERNAME.test(value)) return 'Enter a valid username: letters, digits and @ . + - _ only.'
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
  first_name: maxLength(200),
  last_name: maxLength(200),
  number_phone(value) {
    if (codePoints(value) > 10) return 'Ensure this field has no more than 10 characters.'
    if (value !== '' && !PHONE.test(value)) return 'Enter digits only, with an optional leading +.'
  },
} satisfies Record<string, FieldRule>

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
