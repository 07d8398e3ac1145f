import { Type } from 'typebox'

const Base64Url = (maxLength: number, description?: string) =>
  Type.String({ maxLength, pattern: '^[A-Za-z0-9_-]*$', ...(description ? { description } : {}) })
// A credential id is at most 1023 bytes (WebAuthn L3 §5.1): 1364 base64url characters.
const CredentialId = Base64Url(1364)
// The browser's JSON gains members over time (WebAuthn L3 §5.1.8 toJSON); members we do not read are ignored.
const Open = { additionalProperties: true }
const ExtensionResults = Type.Optional(Type.Object({}, { ...Open, default: {}, description: 'getClientExtensionResults(); ignored' }))

const Name = Type.String({ minLength: 1, maxLength: 64, description: 'A name to tell your passkeys apart (trimmed; 1–64 characters)', example: 'Laptop' })

/** What navigator.credentials.create() resolved to, as PublicKeyCredential.toJSON() writes it. */
export const RegistrationCredentialSchema = Type.Object(
  {
    id: CredentialId,
    rawId: CredentialId,
    type: Type.Literal('public-key'),
    response: Type.Object(
      {
        clientDataJSON: Base64Url(8192),
        attestationObject: Base64Url(65536),
        transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 10 })),
      },
      Open,
    ),
    clientExtensionResults: ExtensionResults,
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { ...Open, description: 'RegistrationResponseJSON (WebAuthn L3): members not listed are ignored' },
)

/** What navigator.credentials.get() resolved to, as PublicKeyCredential.toJSON() writes it. */
export const AuthenticationCredentialSchema = Type.Object(
  {
    id: CredentialId,
    rawId: CredentialId,
    type: Type.Literal('public-key'),
    response: Type.Object(
      {
        clientDataJSON: Base64Url(8192),
        authenticatorData: Base64Url(8192),
        signature: Base64Url(1024),
        userHandle: Type.Optional(Base64Url(128)),
      },
      Open,
    ),
    clientExtensionResults: ExtensionResults,
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { ...Open, description: 'AuthenticationResponseJSON (WebAuthn L3): members not listed are ignored' },
)

export const CreatePasskeyBodySchema = Type.Object({ name: Name, response: RegistrationCredentialSchema }, { additionalProperties: false })
export const RenamePasskeyBodySchema = Type.Object({ name: Name }, { additionalProperties: false })
export const PasskeySignInBodySchema = Type.Object(
  {
    challenge_id: Type.String({ maxLength: 64, description: 'from POST /api/auth/passkey/options; works once, for five minutes' }),
    response: AuthenticationCredentialSchema,
  },
  { additionalProperties: false },
)

export const PasskeyVerifyBodySchema = Type.Object(
  { response: { ...AuthenticationCredentialSchema, description: 'the navigator.credentials.get response to POST …/passkeys/step-up-options' } },
  { additionalProperties: false },
)

export const MfaPasskeyOptionsBodySchema = Type.Object(
  { challenge: Type.String({ maxLength: 100, description: 'the sign-in answer\'s challenge (`mfa_required`)' }) },
  { additionalProperties: false },
)

export const PasskeyIdParamsSchema = Type.Object({ id: Type.String({ description: 'passkey id (integer)' }) })

const PASSKEY_EXAMPLE = {
  id: 3,
  name: 'Laptop',
  created_at: '2026-12-01T10:12:03.418Z',
  last_used_at: '2026-12-01T11:40:52.007Z',
  backed_up: false,
  transports: ['internal', 'hybrid'],
}

export const PasskeySchema = Type.Object(
  {
    id: Type.Integer(),
    name: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
    last_used_at: Type.Unsafe<string | null>({ type: ['string', 'null'], format: 'date-time', description: 'the last sign-in with it' }),
    backed_up: Type.Boolean({ description: 'the authenticator says the key is synced (a multi-device passkey)' }),
    transports: Type.Array(Type.String(), { description: 'how the browser reached the authenticator (usb, nfc, ble, internal, hybrid)' }),
  },
  { additionalProperties: false, example: PASSKEY_EXAMPLE },
)

export const PasskeyListSchema = Type.Object({ results: Type.Array(PasskeySchema) }, { additionalProperties: false })

const Loose = (description: string) => Type.Object({}, { ...Open, description })

/** PublicKeyCredentialCreationOptionsJSON: give it to navigator.credentials.create after decoding its base64url members. */
export const RegistrationOptionsSchema = Type.Object(
  {
    challenge: Type.String({ description: 'base64url; works once, for five minutes' }),
    rp: Type.Object({ id: Type.Optional(Type.String()), name: Type.String() }),
    user: Type.Object({ id: Type.String({ description: 'base64url user handle (random)' }), name: Type.String(), displayName: Type.String() }),
    pubKeyCredParams: Type.Array(Type.Object({ type: Type.String(), alg: Type.Integer() })),
    timeout: Type.Optional(Type.Integer()),
    excludeCredentials: Type.Optional(Type.Array(Loose('{id, type, transports}: your passkeys, so one authenticator registers once'))),
    authenticatorSelection: Type.Optional(Loose('residentKey and userVerification: required')),
    attestation: Type.Optional(Type.String()),
    extensions: Type.Optional(Loose('extensions')),
    hints: Type.Optional(Type.Array(Type.String())),
  },
  { ...Open, description: 'PublicKeyCredentialCreationOptionsJSON (WebAuthn L3 §5.4)' },
)

/** PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get. */
export const AuthenticationOptionsSchema = Type.Object(
  {
    challenge: Type.String({ description: 'base64url; works once, for five minutes' }),
    rpId: Type.Optional(Type.String()),
    timeout: Type.Optional(Type.Integer()),
    userVerification: Type.Optional(Type.String()),
    allowCredentials: Type.Optional(Type.Array(Loose('{id, type, transports}'))),
    extensions: Type.Optional(Loose('extensions')),
    hints: Type.Optional(Type.Array(Type.String())),
  },
  { ...Open, description: 'PublicKeyCredentialRequestOptionsJSON (WebAuthn L3 §5.5)' },
)

export const SignInOptionsSchema = Type.Object(
  {
    challenge_id: Type.String({ description: 'send it back with the assertion to POST /api/auth/sign-in/passkey' }),
    options: AuthenticationOptionsSchema,
  },
  { additionalProperties: false },
)

export const PasskeySupportSchema = Type.Object(
  {
    available: Type.Boolean({ description: 'whether passkeys work for a page on the origin this request came to' }),
    rp_id: Type.Unsafe<string | null>({ type: ['string', 'null'], description: 'the WebAuthn RP ID passkeys are made for' }),
    reason: Type.Unsafe<string | null>({ type: ['string', 'null'], description: 'when unavailable: what to configure (PUBLIC_URL)' }),
  },
  { additionalProperties: false },
)
