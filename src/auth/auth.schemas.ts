import { Type } from 'typebox'
import { descriptions } from '../users/field-rules.js'
import { UserSchema } from '../users/users.schemas.js'

const Password = Type.String({ maxLength: 1024 })

export const SignUpBodySchema = Type.Object(
  {
    username: Type.String({ maxLength: 150, description: descriptions.username }),
    email: Type.String({ maxLength: 200 }),
    password: Type.String({ minLength: 8, maxLength: 128 }),
    first_name: Type.Optional(Type.String({ maxLength: 200, description: descriptions.name })),
    last_name: Type.Optional(Type.String({ maxLength: 200, description: descriptions.name })),
    number_phone: Type.Optional(Type.String({ maxLength: 10 })),
  },
  { additionalProperties: false },
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
  { refresh: Type.Optional(Type.String({ maxLength: 200, description: 'omit when the web page sends its cookie' })) },
  { additionalProperties: false },
)

export const SignOutBodySchema = Type.Object(
  {
    refresh: Type.Optional(Type.String({ maxLength: 200 })),
    all: Type.Optional(Type.Boolean({ description: 'with an access token: end every session of the user' })),
  },
  { additionalProperties: false },
)

/** `refresh` and `device_token` are absent for the web page, which gets them as HttpOnly cookies instead. */
export const SessionResponseSchema = Type.Object({
  access: Type.String(),
  refresh: Type.Optional(Type.String()),
  device_token: Type.Optional(Type.String({ description: 'proof of this sign-in: store it and send it with later sign-ins' })),
  user: UserSchema,
})

export const RefreshResponseSchema = Type.Object({ access: Type.String(), refresh: Type.Optional(Type.String()) })
