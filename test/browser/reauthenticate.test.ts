import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { buildApp } from '../../src/app.js'
import { GOOD_PASSWORD, testConfig, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'
import { sideDb } from '../helpers/mfa.js'


// An account without two-step sign-in whose session is older than the step-up window: a new email (or an
// authenticator app) asks for the password once, in a dialog (reauthenticate.js), then goes through.
test('re-authentication on the web page, driven in headless Chromium', { skip: CHROMIUM_SKIP }, async (t) => {
  const config = await testConfig(t, 'sqlite')
  const app = await buildApp(config)
  deferCleanup(t, () => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const browser = await launchChromium(t)
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  context.setDefaultTimeout(30_000)
  const problems: string[] = []
  const page: Page = await context.newPage()
  page.on('pageerror', (error) => problems.push(String(error)))
  page.on('console', (message) => {
    if (/content security policy|refused to/i.test(message.text())) problems.push(message.text())
  })
  await page.goto(origin)
  await page.locator('#loading').waitFor({ state: 'hidden' })

  const username = uniqueName('reauth')
  await page.click('#tab-sign-up')
  await page.fill('#su-username', username)
  await page.fill('#su-email', `${username}@example.com`)
  await page.fill('#su-password', GOOD_PASSWORD)
  await page.click('#sign-up-form button[type=submit]')
  await page.locator('#profile-view').waitFor()
  // The sign-up was an hour ago, as far as the server knows.
  const ageSessions = () => sideDb(t, config).updateTable('sessions').set({ created_at: new Date(Date.now() - 3600_000).toISOString(), reauthenticated_at: null }).execute()
  await ageSessions()
  const dialog = page.getByRole('dialog', { name: 'Confirm it’s you' })
  const save = page.locator('#profile-form button[type=submit]')

  // Escape cancels: nothing is saved, and the form says why.
  await page.fill('#pf-email', `new-${username}@example.com`)
  await save.click()
  await dialog.waitFor()
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'reauth-password', 'focus moves to the password')
  assert.equal(await dialog.getByLabel('Your password', { exact: true }).getAttribute('autocomplete'), 'current-password')
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden' })
  await page.locator('#profile-form [data-form-error]').getByText('confirm your password').waitFor()
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Save changes', 'focus is back on the button')

  // A wrong password is refused beside the field, in the dialog; the right one saves the change.
  await save.click()
  await dialog.waitFor()
  await dialog.getByLabel('Your password', { exact: true }).fill('not-my-password-1')
  await page.keyboard.press('Enter')
  await page.locator('#reauth-password-error').waitFor()
  assert.equal(await page.locator('#reauth-password').getAttribute('aria-invalid'), 'true')
  await dialog.getByLabel('Your password', { exact: true }).fill(GOOD_PASSWORD)
  await dialog.getByRole('button', { name: 'Confirm' }).click()
  await dialog.waitFor({ state: 'hidden' })
  await page.locator('#profile-status').getByText('Profile saved.').waitFor()
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Save changes')
  const stored = await sideDb(t, config).selectFrom('users').select(['email', 'email_verified']).where('username', '=', username).executeTakeFirstOrThrow()
  assert.deepEqual(stored, { email: `new-${username}@example.com`, email_verified: 0 })

  // Setting up an authenticator app asks the same way, once the confirmation is old too.
  await ageSessions()
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click()
  await dialog.waitFor()
  await dialog.getByLabel('Your password', { exact: true }).fill(GOOD_PASSWORD)
  await page.keyboard.press('Enter')
  await page.locator('#mfa-qr').waitFor()
  assert.equal(await dialog.isHidden(), true)

  assert.deepEqual(problems, [])
})
