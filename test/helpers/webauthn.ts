import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto'

/**
 * A software authenticator for API tests: ES256 keys from node:crypto, attestation "none", CBOR written by
 * hand (the few types WebAuthn needs). It answers options as a browser plus a platform authenticator would,
 * and can be told to lie (another origin, no user verification, a counter that goes back).
 */

type Cbor = number | string | Uint8Array | Cbor[] | Map<number | string, Cbor>

function head(major: number, length: number): Buffer {
  if (length < 24) return Buffer.from([(major << 5) | length])
  if (length < 0x100) return Buffer.from([(major << 5) | 24, length])
  if (length < 0x10000) return Buffer.from([(major << 5) | 25, length >> 8, length & 0xff])
  const out = Buffer.alloc(5)
  out[0] = (major << 5) | 26
  out.writeUInt32BE(length, 1)
  return out
}

export function cbor(value: Cbor): Buffer {
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value)
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8')
    return Buffer.concat([head(3, bytes.length), bytes])
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value])
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)])
  return Buffer.concat([head(5, value.size), ...[...value].flatMap(([key, item]) => [cbor(key), cbor(item)])])
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest()
const b64 = (data: Uint8Array) => Buffer.from(data).toString('base64url')

const UP = 0x01
const UV = 0x04
const AT = 0x40

interface Credential {
  id: Buffer
  key: KeyObject
  publicKey: Buffer
  userHandle: string
  counter: number
}

export interface Lies {
  origin?: string
  rpId?: string
  userVerified?: boolean
  /** The counter to sign with instead of the next one. */
  counter?: number
  challenge?: string
  type?: string
}

/** Creation options as the API sends them (the members the authenticator reads). */
export interface CreationOptions {
  challenge: string
  rp: { id?: string }
  user: { id: string }
}

export interface RequestOptions {
  challenge: string
  rpId?: string
}

export class SoftAuthenticator {
  readonly credentials: Credential[] = []

  /** `counterStep` 0 makes an authenticator that keeps no counter (as synced passkeys do). */
  constructor(
    readonly origin: string,
    readonly counterStep = 1,
  ) {}

  /** navigator.credentials.create(), as PublicKeyCredential.toJSON() writes the result. */
  create(options: CreationOptions, lies: Lies = {}) {
    const rpId = lies.rpId ?? options.rp.id ?? new URL(this.origin).hostname
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = publicKey.export({ format: 'jwk' })
    const cose = cbor(
      new Map<number, Cbor>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x as string, 'base64url')],
        [-3, Buffer.from(jwk.y as string, 'base64url')],
      ]),
    )
    const id = randomBytes(32)
    const credential: Credential = { id, key: privateKey, publicKey: cose, userHandle: options.user.id, counter: 0 }
    const length = Buffer.from([id.length >> 8, id.length & 0xff])
    const attested = Buffer.concat([Buffer.alloc(16), length, id, cose])
    const authData = this.authData(rpId, AT | UP | (lies.userVerified === false ? 0 : UV), lies.counter ?? 0, attested)
    const clientDataJSON = this.clientData(lies.type ?? 'webauthn.create', lies.challenge ?? options.challenge, lies)
    this.credentials.push(credential)
    return {
      id: b64(id),
      rawId: b64(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64(clientDataJSON),
        attestationObject: b64(cbor(new Map<string, Cbor>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]))),
        transports: ['internal'],
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    }
  }

  /** navigator.credentials.get() with a discoverable credential (the newest unless `which` says). */
  get(options: RequestOptions, lies: Lies = {}, which = this.credentials.length - 1) {
    const credential = this.credentials[which]
    if (!credential) throw new Error('no credential on this authenticator')
    const rpId = lies.rpId ?? options.rpId ?? new URL(this.origin).hostname
    if (lies.counter === undefined) credential.counter += this.counterStep
    const authData = this.authData(rpId, UP | (lies.userVerified === false ? 0 : UV), lies.counter ?? credential.counter)
    const clientDataJSON = this.clientData(lies.type ?? 'webauthn.get', lies.challenge ?? options.challenge, lies)
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.key)
    return {
      id: b64(credential.id),
      rawId: b64(credential.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64(clientDataJSON),
        authenticatorData: b64(authData),
        signature: b64(signature),
        userHandle: credential.userHandle,
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    }
  }

  private authData(rpId: string, flags: number, counter: number, attested = Buffer.alloc(0)): Buffer {
    const count = Buffer.alloc(4)
    count.writeUInt32BE(counter)
    return Buffer.concat([sha256(rpId), Buffer.from([flags]), count, attested])
  }

  private clientData(type: string, challenge: string, lies: Lies): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: lies.origin ?? this.origin, crossOrigin: false }))
  }
}
