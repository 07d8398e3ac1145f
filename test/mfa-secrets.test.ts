import assert from 'node:assert/strict'
import { test } from 'node:test'
import { newRecoveryCodes, recoveryCodeHash } from '../src/mfa/recovery-codes.js'
import { matchingStep, newTotpSecret, TotpSecretBox } from '../src/mfa/totp.js'
import { codeAt } from './helpers/mfa.js'

test('when a TOTP secret is sealed, then only the same server secret and the same user open it, and any change to it fails', () => {
  const box = new TotpSecretBox('server-secret-one-0123456789abcdef')
  const secret = newTotpSecret()
  const sealed = box.seal(secret, 7)
  assert.ok(!sealed.includes(secret))
  assert.notEqual(box.seal(secret, 7), sealed, 'a new IV each time')
  assert.equal(box.open(sealed, 7), secret)
  assert.equal(box.open(sealed, 8), undefined, 'moved to another user')
  assert.equal(new TotpSecretBox('server-secret-two-0123456789abcdef').open(sealed, 7), undefined)
  const bytes = Buffer.from(sealed.slice(3), 'base64url')
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1
  assert.equal(box.open(`v1.${bytes.toString('base64url')}`, 7), undefined, 'tampered')
  assert.equal(box.open('v2.abc', 7), undefined)
})

test('when a code is checked, then the step it belongs to comes back for now and one step either side only', () => {
  const secret = newTotpSecret()
  const now = Date.now()
  const step = Math.floor(now / 30_000)
  const at = (steps: number) => codeAt(secret, steps - (Date.now() - now) / 30_000)
  for (const offset of [-1, 0, 1]) assert.equal(matchingStep(secret, at(offset), now), step + offset)
  for (const offset of [-2, 2]) {
    const code = at(offset)
    // A code of a far step may by chance equal one inside the window (1 in 10^6 per step): only judge distinct ones.
    if (![-1, 0, 1].some((near) => at(near) === code)) assert.equal(matchingStep(secret, code, now), undefined)
  }
  assert.equal(matchingStep(secret, '12345', now), undefined)
  assert.equal(matchingStep(secret, '１２３４５６', now), undefined)
})

test('when recovery codes are made, then they are ten distinct unambiguous codes whose hash ignores case, spaces and hyphens', () => {
  const codes = newRecoveryCodes()
  assert.equal(new Set(codes).size, 10)
  for (const code of codes) assert.match(code, /^[2-9a-hjkmnp-z]{5}-[2-9a-hjkmnp-z]{5}$/)
  const first = codes[0] as string
  assert.equal(recoveryCodeHash(first.toUpperCase().replace('-', ' ')), recoveryCodeHash(first))
  assert.match(recoveryCodeHash(first) as string, /^[0-9a-f]{64}$/)
  assert.equal(recoveryCodeHash('short'), undefined)
  assert.equal(recoveryCodeHash('0000000000'), undefined, 'not in the alphabet')
})
