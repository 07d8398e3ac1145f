import { Type } from 'typebox'
import { AuthenticationCredentialSchema } from '../passkeys/passkeys.schemas.js'
import { fieldSchemas } from '../users/field-rules.js'
import { USER_EXAMPLE, UserSchema } from '../users/users.schemas.js'

const Password = Type.String({ maxLength: 1024 })

export const SignUpBodySchema = Type.Object(
  {
    username: Type.String(fieldSchemas.username),
    email: Type.String(fieldSchemas.email),
    password: Type.String({
      minLength: 8,
      maxLength: 128,
      description: 'Not expressible as a schema, and checked by the server: not all digits, not a common password, not similar to the username or email',
      example: 'correct-Horse-battery-9',
    }),
    first_name: Type.Optional(Type.String(fieldSchemas.first_name)),
    last_name: Type.Optional(Type.String(fieldSchemas.last_name)),
    number_phone: Type.Optional(Type.String(fieldSchemas.number_phone)),
  },
  { additionalProperties: false, description: 'Not expressible as a schema: the username and the email must not be taken' },
)

export const SignInBodySchema = Type.Object(
  {
    email: Type.Optional(Type.String({ maxLength: 254 })),
    username: Type.Optional(Type.String({ maxLength: 254 })),
    password: Password,
    device_token: Type.Optional(
      Type.String({ maxLength: 200, description: 'the device_token of an earlier sign-in: failures elsewhere cannot lock this client out' }),
    ),
  },
  { additionalProperties: false, description: 'Either email or username, plus password' },
)

export const RefreshBodySchema = Type.Object(
  // No length limit: any string that is not a live refresh token is a 401 (SPEC §3), not a validation error.
  { refresh: Type.Optional(Type.String({ description: 'the refresh token; omit when the web page sends its cookie' })) },
  { additionalProperties: false },
)

export const SignOutBodySchema = Type.Object(
  {
    refresh: Type.Optional(Type.String({ description: 'the refresh token of the session to end; an unknown one is ignored (204)' })),
    all: Type.Optional(Type.Boolean({ description: 'with an access token: end every session of the user' })),
  },
  { additionalProperties: false },
)

/** `refresh` and `device_token` are absent for the web page, which gets them as HttpOnly cookies instead. */
// From a real sign-in (tokens shortened).
const TOKENS_EXAMPLE = {
  access: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzaWQiOiI2aWY3ZXhRYSIsInR5cCI6ImFjY2VzcyIsInN1YiI6IjcifQ.Uzce1GUJwDeMtCdrBpp7XR9Cl',
  refresh: '6if7exQaLUtfzTNJO0nUMQ.q67UUSjrukg9F-esaQ3mTg',
}

export const SessionResponseSchema = Type.Object(
  {
    access: Type.String({ description: 'bearer token for the other operations (see ACCESS_TOKEN_TTL)' }),
    refresh: Type.Optional(Type.String({ description: 'for POST /api/auth/refresh; absent for the web page, which gets it as a cookie' })),
    device_token: Type.Optional(Type.String({ description: 'proof of this sign-in: store it and send it with later sign-ins' })),
    user: UserSchema,
  },
  { example: { ...TOKENS_EXAMPLE, device_token: '1.q9Vb2kP0sT4wXy7Z', user: USER_EXAMPLE } },
)

export const RefreshResponseSchema = Type.Object({ access: Type.String(), refresh: Type.Optional(Type.String()) }, { example: TOKENS_EXAMPLE })

export const MfaRequiredResponseSchema = Type.Object(
  {
    mfa_required: Type.Literal(true),
    challenge: Type.String({ description: 'send it to POST /api/auth/sign-in/mfa with a code; works once, for 5 minutes' }),
    methods: Type.Array(Type.String(), { description: 'how the sign-in can be completed: `totp`, `recovery_code`' }),
  },
  {
    description: 'The password was right and the account has a second factor: no session yet',
    example: { mfa_required: true, challenge: 'Zk3n2bq0c1yXw9pT4mVhL7aRsD6eUoJfGi8NtQ5HzCA', methods: ['totp', 'recovery_code'] },
  },
)

export const SignInMfaBodySchema = Type.Object(
  {
    challenge: Type.String({ maxLength: 100, description: 'from the sign-in answer (`mfa_required`)' }),
    code: Type.Optional(Type.String({ maxLength: 20, description: 'the 6 digits the authenticator app shows now' })),
    recovery_code: Type.Optional(Type.String({ maxLength: 40, description: 'one of the recovery codes (used up)' })),
    passkey: Type.Optional({
      ...AuthenticationCredentialSchema,
      description: 'the navigator.credentials.get response to the options of POST /api/auth/sign-in/mfa/passkey-options',
    }),
    device_token: Type.Optional(Type.String({ maxLength: 200, description: 'as for sign-in' })),
  },
  { additionalProperties: false, description: 'The challenge, plus one of code, recovery_code or passkey' },
)
