/** One signing key; `private_jwk` never leaves the database except into the memory of an instance. */
export interface SigningKeysTable {
  kid: string
  alg: string
  /** The public JWK (JSON), as the JWKS serves it. */
  public_jwk: string
  /** The private JWK (JSON, with `d`). */
  private_jwk: string
  created_at: string | Date
  /** Set when a rotation superseded the key: it verifies until then (the last token it signed has expired). */
  retires_at: string | Date | null
  /** Set by `portrait keys revoke`: its tokens stop at once on every instance. */
  revoked_at: string | Date | null
}

/** The single row (id 1): the current signing key and the server secret for the HMAC derivations. */
export interface KeysetTable {
  id: number
  current_kid: string
  server_secret: string
  updated_at: string | Date
}

export interface ServiceKeysTable {
  name: string
  /** SHA-256 (hex) of the secret; the secret is printed once and never stored. */
  secret_hash: string
  created_at: string | Date
  revoked_at: string | Date | null
}
