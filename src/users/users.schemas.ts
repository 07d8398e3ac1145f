import { type Static, Type } from 'typebox'
import { reauthenticationFieldFor, stepUpFieldsFor } from '../mfa/mfa.schemas.js'
import { fieldSchemas } from './field-rules.js'
import type { UserRow } from './users.table.js'

const DateTime = Type.String({ format: 'date-time' })

/**
 * A string or null, written as `type: ['string', 'null']` rather than a union: fast-json-stringify
 * serialises a union by running Ajv on every value to pick its branch (formats included), which was a
 * measurable share of each response; a type list is a plain null check. OpenAPI 3.0 output still
 * says `nullable: true` (@fastify/swagger converts it).
 */
function NullableString(options: { format?: string; description?: string } = {}) {
  return Type.Unsafe<string | null>({ type: ['string', 'null'], ...options })
}

// From a real exchange (PUT /api/users/7 with an avatar), for the document.
export const USER_EXAMPLE = {
  id: 7,
  username: 'zoe_martin',
  email: 'zoe@example.com',
  first_name: 'Zoë',
  last_name: 'Martin',
  number_phone: '+331234567',
  avatar: '/media/avatars/3q2Zx0vYb5lKcJ8e.webp',
  date_joined: '2026-12-01T10:12:03.418Z',
  last_login: '2026-12-01T10:12:03.418Z',
  is_active: true,
  is_staff: false,
  is_superuser: false,
  email_verified: true,
}

/** The only shape a user ever leaves the service in: an allowlist, so a hash can never be serialised. */
export const UserSchema = Type.Object(
  {
    id: Type.Integer(),
    username: Type.String(),
    email: Type.String(),
    first_name: Type.String(),
    last_name: Type.String(),
    number_phone: Type.String(),
    avatar: NullableString({ description: 'URL path of the avatar image' }),
    date_joined: DateTime,
    last_login: NullableString({ format: 'date-time' }),
    is_active: Type.Boolean(),
    is_staff: Type.Boolean(),
    is_superuser: Type.Boolean(),
    email_verified: Type.Boolean({
      description: 'Read-only: the address was confirmed by a verification link since it was last set (a change of address sets it false)',
    }),
  },
  { additionalProperties: false, example: USER_EXAMPLE },
)
export type User = Static<typeof UserSchema>

export const UserListSchema = Type.Object(
  {
    count: Type.Integer({
      description: 'How many users match, counted up to USERS_EXACT_COUNT_LIMIT (1,000 by default); above it, that limit (see count_exact).',
    }),
    count_exact: Type.Boolean({ description: 'false when there are more matches than `count` says (the count stopped at the limit).' }),
    next: NullableString(),
    previous: NullableString(),
    results: Type.Array(UserSchema),
  },
  { example: { count: 41, count_exact: true, next: '/api/users?page=2&page_size=20', previous: null, results: [USER_EXAMPLE] } },
)

const FLAG_RULE =
  'Writable only by a superuser on another user who is not a superuser; from anyone else, or unchanged, it is accepted and ignored'
const IGNORED = 'Read-only: accepted and ignored, so a client can send back what it read'
// How a form spells a boolean (any case): profile-update.ts FORM_BOOLEANS.
const FORM_BOOLEAN = { enum: ['true', 'false', '1', '0', 'on', 'off'] }

/** The text fields a client may write (SPEC §2), each with its rule from field-rules.ts. */
const textFields = {
  username: Type.Optional(Type.String(fieldSchemas.username)),
  email: Type.Optional(Type.String(fieldSchemas.email)),
  first_name: Type.Optional(Type.String(fieldSchemas.first_name)),
  last_name: Type.Optional(Type.String(fieldSchemas.last_name)),
  number_phone: Type.Optional(Type.String(fieldSchemas.number_phone)),
}

/**
 * Not profile fields: a second factor for the step-up a new email needs (src/mfa/step-up.ts), or the password
 * from an account without one.
 */
const stepUpFields = { ...stepUpFieldsFor('for a new email on an account with a second factor'), ...reauthenticationFieldFor('for a new email') }

/** A profile update as JSON (SPEC §4): every field optional, unknown fields refused. */
export const ProfileUpdateJsonSchema = Type.Object(
  {
    ...textFields,
    ...stepUpFields,
    avatar: Type.Optional(
      NullableString({
        description:
          'null removes the avatar; the current avatar URL (as read) is accepted and changes nothing; any other string is refused (upload a file as multipart/form-data instead)',
      }),
    ),
    is_active: Type.Optional(Type.Boolean({ description: FLAG_RULE })),
    is_staff: Type.Optional(Type.Boolean({ description: FLAG_RULE })),
    is_superuser: Type.Optional(Type.Boolean({ description: FLAG_RULE })),
    id: Type.Optional(Type.Integer({ description: IGNORED })),
    date_joined: Type.Optional(Type.String({ description: IGNORED })),
    last_login: Type.Optional(NullableString({ description: IGNORED })),
    email_verified: Type.Optional(Type.Boolean({ description: IGNORED })),
  },
  { additionalProperties: false, description: 'Every field optional; only the fields sent change. An empty body changes nothing.' },
)

const formFields = {
  ...textFields,
  ...stepUpFields,
  is_active: Type.Optional(Type.String({ ...FORM_BOOLEAN, description: FLAG_RULE })),
  is_staff: Type.Optional(Type.String({ ...FORM_BOOLEAN, description: FLAG_RULE })),
  is_superuser: Type.Optional(Type.String({ ...FORM_BOOLEAN, description: FLAG_RULE })),
  id: Type.Optional(Type.String({ description: IGNORED })),
  date_joined: Type.Optional(Type.String({ description: IGNORED })),
  last_login: Type.Optional(Type.String({ description: IGNORED })),
  email_verified: Type.Optional(Type.String({ description: IGNORED })),
}

/** The same update as a multipart form: the avatar is a file part. Each field at most once. */
export const ProfileUpdateMultipartSchema = Type.Object(
  {
    ...formFields,
    avatar: Type.Optional(
      Type.String({
        format: 'binary',
        description:
          'An image file (JPEG, PNG, WebP or GIF by content, at most AVATAR_MAX_BYTES, 40 megapixels); stored re-encoded as WebP. An empty text field removes the avatar; an empty file part changes nothing',
      }),
    ),
  },
  { additionalProperties: false },
)

/** The same update as an urlencoded form: an empty avatar removes it. */
export const ProfileUpdateFormSchema = Type.Object(
  { ...formFields, avatar: Type.Optional(Type.Literal('', { description: 'empty: remove the avatar' })) },
  { additionalProperties: false },
)

export const IdParamsSchema = Type.Object({ id: Type.String({ description: 'user id (integer)' }) })

export function toIso(value: string | Date | null): string | null {
  if (value === null) return null
  return typeof value === 'string' ? value : value.toISOString()
}

/** The API view of a stored user. */
export function toUser(row: UserRow, mediaBaseUrl: string): User {
  return {
    id: row.id,
    username: row.username,
    email: row.email,
    first_name: row.first_name,
    last_name: row.last_name,
    number_phone: row.number_phone,
    avatar: row.avatar === null ? null : `${mediaBaseUrl}/media/avatars/${row.avatar}`,
    date_joined: toIso(row.date_joined) as string,
    last_login: toIso(row.last_login),
    is_active: Boolean(row.is_active),
    is_staff: Boolean(row.is_staff),
    is_superuser: Boolean(row.is_superuser),
    email_verified: Boolean(row.email_verified),
  }
}

/** Strong ETag of a profile version. */
export function etagOf(row: UserRow): string {
  return `"${row.id}.${row.version}"`
}
