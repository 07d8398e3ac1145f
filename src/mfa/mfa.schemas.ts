import { Type } from 'typebox'

const Code = Type.String({ maxLength: 20, description: 'the 6 digits the authenticator app shows now' })
const RecoveryCode = Type.String({ maxLength: 40, description: 'one of the recovery codes (`xxxxx-xxxxx`; case, spaces and hyphens do not matter); used up' })

/** Longest otp_code / recovery_code a body may carry (a recovery code with spaces fits; anything longer is no code). */
export const STEP_UP_CODE_MAX_LENGTH = 40

/**
 * The step-up fields a sensitive operation's body may carry (see src/mfa/step-up.ts): `otp_code` and
 * `recovery_code`, never profile fields. `purpose` opens their descriptions ("for a new email").
 */
export function stepUpFieldsFor(purpose?: string) {
  const opening = purpose ? `Not a profile field. Step-up ${purpose}` : 'Step-up'
  return {
    otp_code: Type.Optional(
      Type.String({
        maxLength: STEP_UP_CODE_MAX_LENGTH,
        description: `${opening}: a current TOTP code, needed by an account with a second factor unless this session proved one within 5 minutes`,
      }),
    ),
    recovery_code: Type.Optional(
      Type.String({ maxLength: STEP_UP_CODE_MAX_LENGTH, description: `${opening}: a recovery code instead of otp_code (used up)` }),
    ),
  }
}

export const stepUpFields = stepUpFieldsFor()

/** Longest password a body may carry (as sign-in and the password change accept). */
export const PASSWORD_FIELD_MAX_LENGTH = 1024

/**
 * The field that proves the password for a sensitive operation's step-up on an account without a second
 * factor (src/mfa/step-up.ts); not a profile field. `purpose` opens its description ("for a new email").
 */
export function reauthenticationFieldFor(purpose: string) {
  return {
    current_password: Type.Optional(
      Type.String({
        maxLength: PASSWORD_FIELD_MAX_LENGTH,
        description: `Not a profile field. Re-authentication ${purpose}: your password, needed by an account without a second factor unless this session signed in or confirmed its password within 5 minutes; a wrong one counts against the sign-in limit`,
      }),
    ),
  }
}

const RECOVERY_CODES_EXAMPLE = ['k7pqa-m3xwz', 'r2hfn-c8tve', '9bdsy-u4gjk', 'w6znq-e5rma', 'h3xpt-y7ckd', 'f8ujb-s2nwq', 'a4mvr-z9teh', 'p5dky-g3xcn', 'c2wsf-j7qbu', 'n9eht-v4rpm']

export const MfaStatusSchema = Type.Object(
  {
    totp: Type.Boolean({ description: 'an authenticator app is set up and confirmed' }),
    recovery_codes_left: Type.Integer({ description: 'unused recovery codes' }),
    methods: Type.Array(Type.String(), { description: 'what a sign-in can be completed with: `totp`, `recovery_code`' }),
  },
  { example: { totp: true, recovery_codes_left: 9, methods: ['totp', 'recovery_code'] } },
)

export const TotpEnrolmentSchema = Type.Object(
  {
    secret: Type.String({ description: 'the base32 secret, for typing into the app by hand' }),
    otpauth_uri: Type.String({ description: 'otpauth://totp/… (RFC 6238: SHA-1, 30 s, 6 digits)' }),
    qr_svg: Type.String({ description: 'the URI as a QR code, an SVG document made by the server (no third party sees the secret)' }),
  },
  {
    description: 'Pending until confirmed with a first code',
    example: {
      secret: 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP',
      otpauth_uri: 'otpauth://totp/Portrait:zoe_martin?issuer=Portrait&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&algorithm=SHA1&digits=6&period=30',
      qr_svg: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 37 37">…</svg>',
    },
  },
)

export const RecoveryCodesSchema = Type.Object(
  { recovery_codes: Type.Array(Type.String(), { description: 'ten single-use codes, shown this once: only their hashes are kept' }) },
  { example: { recovery_codes: RECOVERY_CODES_EXAMPLE } },
)

export const ConfirmBodySchema = Type.Object({ code: Code }, { additionalProperties: false })

export const VerifyBodySchema = Type.Object(
  { code: Type.Optional(Code), recovery_code: Type.Optional(RecoveryCode) },
  { additionalProperties: false, description: 'Either code or recovery_code' },
)

export const DisableBodySchema = Type.Object(
  {
    password: Type.String({ maxLength: 1024 }),
    code: Type.Optional(Code),
    recovery_code: Type.Optional(RecoveryCode),
  },
  { additionalProperties: false, description: 'The password, plus code or recovery_code (not needed within 5 minutes of a verified code in this session)' },
)

export const StepUpBodySchema = Type.Object(stepUpFields, { additionalProperties: false })
