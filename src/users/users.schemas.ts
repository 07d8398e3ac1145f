import { type Static, Type } from 'typebox'
import { descriptions } from './field-rules.js'
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
  },
  { additionalProperties: false },
)
export type User = Static<typeof UserSchema>

export const UserListSchema = Type.Object({
  count: Type.Integer({
    description: 'How many users match, counted up to USERS_EXACT_COUNT_LIMIT (1,000 by default); above it, that limit (see count_exact).',
  }),
  count_exact: Type.Boolean({ description: 'false when there are more matches than `count` says (the count stopped at the limit).' }),
  next: NullableString(),
  previous: NullableString(),
  results: Type.Array(UserSchema),
})

/** Fields a client may write on a profile (SPEC §2). */
export const ProfileUpdateSchema = Type.Object(
  {
    username: Type.Optional(Type.String({ maxLength: 150, description: descriptions.username })),
    email: Type.Optional(Type.String({ maxLength: 200 })),
    first_name: Type.Optional(Type.String({ maxLength: 200, description: descriptions.name })),
    last_name: Type.Optional(Type.String({ maxLength: 200, description: descriptions.name })),
    number_phone: Type.Optional(Type.String({ maxLength: 10, pattern: '^(\\+?[0-9]+)?$' })),
    avatar: Type.Optional(
      Type.Union([Type.Null(), Type.String({ format: 'binary' })], {
        description: 'multipart: an image file (JPEG, PNG, WebP, GIF); JSON: null removes the avatar',
      }),
    ),
  },
  { description: 'JSON, multipart/form-data or application/x-www-form-urlencoded; every field optional' },
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
  }
}

/** Strong ETag of a profile version. */
export function etagOf(row: UserRow): string {
  return `"${row.id}.${row.version}"`
}
