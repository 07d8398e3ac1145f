import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { buildApp } from '../../src/app.js'
import { GOOD_PASSWORD, testConfig, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'
import { awayFromStepEdge, codeAt } from '../helpers/mfa.js'


test('two-step sign-in on the web page, driven in headless Chromium', { skip: CHROMIUM_SKIP }, async (t) => {
  const app = await buildApp(await testConfig(t, 'sqlite'))
  deferCleanup(t, () => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const browser = await launchChromium(t)
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  context.setDefaultTimeout(30_000)
  const problems: string[] = []
  const remote: string[] = []
  context.on('request', (request) => {
    if (!request.url().startsWith(origin) && !request.url().startsWith('data:')) remote.push(request.url())
  })
  const page: Page = await context.newPage()
  page.on('pageerror', (error) => problems.push(String(error)))
  page.on('console', (message) => {
    if (/content security policy|refused to/i.test(message.text())) problems.push(message.text())
  })
  await page.goto(origin)
  await page.locator('#loading').waitFor({ state: 'hidden' })
  await awayFromStepEdge()

  const username = uniqueName('twostep')
  await page.click('#tab-sign-up')
  await page.fill('#su-username', username)
  await page.fill('#su-email', `${username}@example.com`)
  await page.fill('#su-password', GOOD_PASSWORD)
  await page.click('#sign-up-form button[type=submit]')
  await page.locator('#profile-view').waitFor()

  // Enrol: the QR code is an image made by the server, shown from a data: URL; the key is there to type.
  await page.getByRole('button', { name: 'Set up two-step sign-in' }).click()
  await page.locator('#mfa-qr').waitFor()
  assert.match((await page.locator('#mfa-qr').getAttribute('src')) ?? '', /^data:image\/svg\+xml/)
  assert.ok(await page.locator('#mfa-qr').evaluate((image: HTMLImageElement) => image.complete && image.naturalWidth > 0), 'the QR code renders')
  const secret = ((await page.locator('#mfa-secret').textContent()) ?? '').trim()
  assert.match(secret, /^[A-Z2-7]{32}$/)
  // A wrong code is refused beside its field.
  await page.getByLabel('Code from your app').fill('000000' === codeAt(secret, -1) ? '111111' : '000000')
  await page.getByRole('button', { name: 'Turn on' }).click()
  await page.locator('#mfa-confirm-code-error').waitFor()
  assert.equal(await page.locator('#mfa-confirm-code').getAttribute('aria-invalid'), 'true')
  await page.getByLabel('Code from your app').fill(codeAt(secret, -1))
  await page.getByRole('button', { name: 'Turn on' }).click()

  // The recovery codes, once (shown when the confirmation's answer is in); "Done" only after "I saved these codes".
  await page.locator('#mfa-recovery-codes li').first().waitFor()
  const codes = (await page.locator('#mfa-recovery-codes li').allTextContents()).map((code) => code.trim())
  assert.equal(codes.length, 10)
  assert.equal(await page.locator('#mfa-done').isDisabled(), true)
  await page.getByLabel('I saved these codes').check()
  await page.locator('#mfa-done').click()
  await page.locator('#mfa-state').waitFor()
  assert.match((await page.locator('#mfa-state').textContent()) ?? '', /on\. 10 recovery codes left/)

  // Sign out, then sign in: the password alone leads to the second step, a code from the app completes it.
  await page.click('#sign-out')
  await page.locator('#auth-view').waitFor()
  await page.fill('#si-login', username)
  await page.fill('#si-password', GOOD_PASSWORD)
  await page.click('#sign-in-form button[type=submit]')
  await page.locator('#mfa-step').waitFor()
  assert.equal(await page.locator('#sign-in-form').isHidden(), true)
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'mfa-step-code')
  await page.keyboard.type(codeAt(secret))
  await page.keyboard.press('Enter')
  await page.locator('#profile-view').waitFor()
  assert.equal(await page.locator('#pf-username').inputValue(), username)

  // And with a recovery code instead, after which one fewer is left.
  await page.click('#sign-out')
  await page.locator('#auth-view').waitFor()
  await page.fill('#si-login', username)
  await page.fill('#si-password', GOOD_PASSWORD)
  await page.click('#sign-in-form button[type=submit]')
  await page.locator('#mfa-step').waitFor()
  await page.getByRole('button', { name: 'Use a recovery code instead' }).click()
  await page.getByLabel('Recovery code', { exact: true }).fill(codes[0] as string)
  await page.locator('#mfa-step button[type=submit]').click()
  await page.locator('#mfa-state').waitFor()
  assert.match((await page.locator('#mfa-state').textContent()) ?? '', /9 recovery codes left/)

  assert.deepEqual(problems, [])
  assert.deepEqual(remote, [])
})
