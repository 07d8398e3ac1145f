// A separate service verifying Portrait's access tokens exactly as the README tells one to: jose, the live
// JWKS URL, the issuer, the audience and the algorithm pinned. One token per stdin line, one JSON line back.
import { createInterface } from 'node:readline'
import { createRemoteJWKSet, jwtVerify } from 'jose'

const jwks = createRemoteJWKSet(new URL(process.env.JWKS_URL), {
  // Fetch again on an unknown kid at once (jose waits 30 s by default), and keep the keys CACHE_MAX_AGE_MS.
  cooldownDuration: 0,
  cacheMaxAge: Number(process.env.CACHE_MAX_AGE_MS ?? 600_000),
})

for await (const line of createInterface({ input: process.stdin })) {
  try {
    const { payload, protectedHeader } = await jwtVerify(line, jwks, {
      issuer: process.env.ISSUER,
      audience: process.env.AUDIENCE,
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
    })
    console.log(JSON.stringify({ ok: true, sub: payload.sub, sid: payload.sid, kid: protectedHeader.kid }))
  } catch (error) {
    console.log(JSON.stringify({ ok: false, code: error.code ?? String(error) }))
  }
}
