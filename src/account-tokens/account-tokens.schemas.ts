import { Type } from 'typebox'

// A token is 43 characters; longer strings are still a 400 on `token` (the service's), not a schema error.
const Token = Type.String({ maxLength: 200, description: 'the value after `token=` in the link of the mail', example: 'Jm3q0G6n1xHkR2m9yQ1o8bV4sT7cW5zE0aL3dF6hJ9k' })

export const PasswordResetBodySchema = Type.Object(
  { email: Type.String({ maxLength: 254, description: 'the address of the account', example: 'zoe@example.com' }) },
  { additionalProperties: false },
)

export const PasswordResetConfirmBodySchema = Type.Object(
  {
    token: Token,
    new_password: Type.String({
      maxLength: 1024,
      description: 'The sign-up password rules (8–128 characters, not common, not all digits, not like the username or email)',
      example: 'another-Staple-kettle-42',
    }),
  },
  { additionalProperties: false },
)

export const VerifyEmailBodySchema = Type.Object({ token: Token }, { additionalProperties: false })

export const AcceptedSchema = Type.Object(
  { detail: Type.String() },
  { example: { detail: 'If an active account has this address, a link to reset its password is on its way to it.' } },
)
