import { Type } from 'typebox'
import { ACTIVITY_TYPES, type ActivityType } from './activity.service.js'

const DateTime = Type.String({ format: 'date-time' })
// A type list, not a union: fast-json-stringify then serialises with a null check (see users.schemas.ts).
const NullableString = (description: string) => Type.Unsafe<string | null>({ type: ['string', 'null'], description })
const Address = NullableString('The client address masked for display: an IPv4 address by its /24 (203.0.113.0/24), IPv6 by its /64')
const Device = Type.String({ description: 'From the User-Agent, e.g. "Firefox 131 on macOS"; "Unknown device" without one' })

export const SessionSchema = Type.Object(
  {
    id: Type.String({ description: 'An opaque id of this session (not its refresh token\'s first half); DELETE it to end the session' }),
    current: Type.Boolean({ description: 'The session of the access token this request was made with' }),
    device: Device,
    address: Address,
    created_at: DateTime,
    last_used_at: Type.Unsafe<string | null>({
      type: ['string', 'null'],
      format: 'date-time',
      description: 'The last sign-in or token refresh (not every request: stale by at most the access-token lifetime)',
    }),
    amr: Type.Array(Type.String(), { description: 'How it was signed in (RFC 8176 methods: pwd, otp, hwk, …)' }),
  },
  { additionalProperties: false },
)

export const SessionListSchema = Type.Object({ results: Type.Array(SessionSchema) }, { additionalProperties: false })

export const SessionParamsSchema = Type.Object({ id: Type.String({ maxLength: 64, description: 'A session id from GET /api/users/me/sessions' }) })

export const ActivitySchema = Type.Object(
  {
    id: Type.Integer({ description: 'Increasing; page with ?before=<id>' }),
    type: Type.Unsafe<ActivityType>({ type: 'string', enum: [...ACTIVITY_TYPES], description: 'What happened' }),
    at: DateTime,
    address: Address,
    device: Device,
    details: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), {
      description: 'A few facts about the event, e.g. {"new_device": true} on a sign-in from a device not seen before',
    }),
  },
  { additionalProperties: false },
)

export const ActivityPageSchema = Type.Object(
  {
    results: Type.Array(ActivitySchema),
    next: NullableString('The next (older) page, or null on the last'),
  },
  { additionalProperties: false },
)

export const ActivityQuerySchema = Type.Object({
  before: Type.Optional(Type.Integer({ minimum: 1, description: 'keyset paging: the entries older than this id' })),
  limit: Type.Optional(Type.Integer({ default: 20, minimum: 1, maximum: 100, description: 'entries per page, 1 to 100' })),
})
