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

/** `refresh` is absent for the web page, which gets it as an HttpOnly cookie instead. */
export const SessionResponseSchema = Type.Object({
  access: Type.String(),
  refresh: Type.Optional(Type.String()),
  user: UserSchema,
})

export const RefreshResponseSchema = Type.Object({ access: Type.String(), refresh: Type.Optional(Type.String()) })
