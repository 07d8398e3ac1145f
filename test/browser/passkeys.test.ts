import assert from 'node:assert/strict'
import { type AddressInfo, createServer } from 'node:net'
import { test } from 'node:test'
import { buildApp } from '../../src/app.js'
import { GOOD_PASSWORD, testConfig, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'
import { awayFromStepEdge, codeAt, sideDb } from '../helpers/mfa.js'


/** A port nobody listens on now, so that PUBLIC_URL can name it before the app is built. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

test('passkeys on the web page, with Chromium\'s virtual authenticator', { skip: CHROMIUM_SKIP }, async (t) => {
  const port = await freePort()
  // http://localhost is the one plain-http origin browsers offer WebAuthn on; PUBLIC_URL makes it the RP.
  const origin = `http://localhost:${port}`
  const config = await testConfig(t, 'sqlite', { publicUrl: origin })
  const app = await buildApp(config)
  deferCleanup(t, () => app.close())
  await app.listen({ port, host: '127.0.0.1' })

  const username = uniqueName('pk')
  const signUp = await fetch(`${origin}/api/auth/sign-up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, email: `${username}@example.com`, password: GOOD_PASSWORD }),
  })
  assert.equal(signUp.status, 201)

  const browser = await launchChromium(t)
  const context = await browser.newContext()
  context.setDefaultTimeout(30_000)
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (error) => pageErrors.push(String(error)))

  const cdp = await context.newCDPSession(page)
  await cdp.send('WebAuthn.enable')
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  })
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials

  await page.goto(origin)
  await page.locator('#loading').waitFor({ state: 'hidden' })
  const passkeyButton = page.getByRole('button', { name: 'Sign in with a passkey' })
  await passkeyButton.waitFor()

  await t.test('when a person adds a passkey, then the authenticator holds a discoverable credential and the list shows it', async () => {
    await page.fill('#si-login', username)
    await page.fill('#si-password', GOOD_PASSWORD)
    await page.click('#sign-in-form button[type=submit]')
    await page.locator('#passkeys-card').waitFor()
    assert.ok(await page.locator('#passkey-empty').isVisible())
    await page.getByLabel('Name for a new passkey').fill('Laptop')
    await page.getByRole('button', { name: 'Add a passkey' }).click()
    await page.locator('#passkey-list .passkey__name', { hasText: 'Laptop' }).waitFor()
    // Announced a moment later (forms.js announce), so that a repeated message is still read out.
    await page.locator('#passkey-status', { hasText: 'added' }).waitFor()
    const held = await credentials()
    assert.equal(held.length, 1)
    assert.equal(held[0]?.isResidentCredential, true)
    assert.equal(held[0]?.rpId, 'localhost')
  })

  await t.test('when they sign out and choose "Sign in with a passkey", then they are signed in without a password', async () => {
    await page.click('#sign-out')
    await passkeyButton.waitFor()
    assert.equal(await page.locator('#si-password').inputValue(), '')
    await passkeyButton.click()
    await page.locator('#profile-view').waitFor()
    await page.locator('#passkey-list .passkey__meta', { hasText: 'last used' }).waitFor()
    assert.equal((await credentials())[0]?.signCount, 2)
  })

  await t.test('when they rename and then delete the passkey, then it is gone and no longer signs them in', async () => {
    await page.getByRole('button', { name: 'Rename passkey Laptop' }).click()
    await page.getByLabel('New name for Laptop').fill('Work laptop')
    await page.getByRole('button', { name: 'Save name' }).click()
    await page.locator('#passkey-list .passkey__name', { hasText: 'Work laptop' }).waitFor()

    page.once('dialog', (dialog) => dialog.accept())
    await page.getByRole('button', { name: 'Delete passkey Work laptop' }).click()
    await page.locator('#passkey-empty').waitFor()
    assert.equal(await page.locator('#passkey-list li').count(), 0)

    await page.click('#sign-out')
    await passkeyButton.click()
    const error = page.locator('#sign-in-form [data-form-error]')
    await error.waitFor()
    assert.match((await error.textContent()) ?? '', /not accepted/)
    assert.ok(await page.locator('#auth-view').isVisible())
  })

  let secret = ''
  await t.test('when the account has a second factor, then a passkey completes the password sign-in', async () => {
    await awayFromStepEdge()
    const session = await (
      await fetch(`${origin}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: GOOD_PASSWORD }) })
    ).json()
    const auth = { authorization: `Bearer ${session.access}`, 'content-type': 'application/json' }
    ;({ secret } = await (await fetch(`${origin}/api/users/me/mfa/totp`, { method: 'POST', headers: { authorization: auth.authorization } })).json())
    const confirmed = await fetch(`${origin}/api/users/me/mfa/totp/confirm`, { method: 'POST', headers: auth, body: JSON.stringify({ code: codeAt(secret, -1) }) })
    assert.equal(confirmed.status, 200)
    await page.fill('#si-login', username)
    await page.fill('#si-password', GOOD_PASSWORD)
    await page.click('#sign-in-form button[type=submit]')
    // The passkey deleted above is gone: register one again from the profile after this sign-in.
    await page.locator('#mfa-step-code').waitFor()
    assert.equal(await page.locator('#mfa-step-passkey').count(), 0, 'no passkey, no passkey button')
    await page.fill('#mfa-step-code', codeAt(secret))
    await page.click('#mfa-step button[type=submit]')
    await page.locator('#passkeys-card').waitFor()
    await page.getByLabel('Name for a new passkey').fill('Phone')
    await page.getByRole('button', { name: 'Add a passkey' }).click()
    await page.locator('#passkey-list .passkey__name', { hasText: 'Phone' }).waitFor()

    await page.click('#sign-out')
    await page.fill('#si-login', username)
    await page.fill('#si-password', GOOD_PASSWORD)
    await page.click('#sign-in-form button[type=submit]')
    await page.getByRole('button', { name: 'Use a passkey instead' }).click()
    await page.locator('#profile-view').waitFor()
  })

  await t.test('when the second factor was proven long ago, then deleting a passkey asks for one and adding one asks for a code first', async () => {
    const ageSessions = () => sideDb(t, config).updateTable('sessions').set({ second_factor_at: new Date(Date.now() - 3600_000).toISOString() }).execute()
    await ageSessions()
    const signCounts = async () => (await credentials()).map((credential) => credential.signCount).reduce((sum, count) => sum + count, 0)
    const signedBefore = await signCounts()
    page.once('dialog', (dialog) => dialog.accept())
    await page.getByRole('button', { name: 'Delete passkey Phone' }).click()
    // The page steps up with the passkey itself (the virtual authenticator answers), then deletes it.
    await page.locator('#passkey-empty').waitFor()
    assert.equal(await signCounts(), signedBefore + 1, 'the passkey signed the step-up')

    await ageSessions()
    await page.getByLabel('Name for a new passkey').fill('Tablet')
    await page.getByRole('button', { name: 'Add a passkey' }).click()
    const error = page.locator('#passkey-form [data-form-error]')
    await error.waitFor()
    assert.match((await error.textContent()) ?? '', /code under “Two-step sign-in”/)
    await page.fill('#mfa-verify-code', codeAt(secret, 1))
    await page.click('#mfa-verify-form button[type=submit]')
    await page.locator('#mfa-verify-form [data-form-status]', { hasText: 'Confirmed' }).waitFor()
    await page.getByRole('button', { name: 'Add a passkey' }).click()
    await page.locator('#passkey-list .passkey__name', { hasText: 'Tablet' }).waitFor()
  })

  assert.deepEqual(pageErrors, [])
})
