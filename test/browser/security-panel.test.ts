import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { buildApp } from '../../src/app.js'
import { GOOD_PASSWORD, testConfig, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'

// The "Sessions" list and "Recent security activity" of the signed-in page (security-panel.js), in Chromium.


test('the sessions and activity panels, driven in headless Chromium', { skip: CHROMIUM_SKIP }, async (t) => {
  const app = await buildApp(await testConfig(t, 'sqlite'))
  deferCleanup(t, () => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const browser = await launchChromium(t)
  const problems: string[] = []

  /** A browser profile of its own (its own cookies), with the page open. */
  async function openPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
    deferCleanup(t, () => context.close())
    context.setDefaultTimeout(30_000)
    const page = await context.newPage()
    page.on('pageerror', (error) => problems.push(String(error)))
    page.on('console', (message) => {
      if (/content security policy|refused to/i.test(message.text())) problems.push(message.text())
    })
    await page.goto(origin)
    await page.locator('#loading').waitFor({ state: 'hidden' })
    return page
  }

  const username = uniqueName('panels')
  const laptop = await openPage()
  await laptop.click('#tab-sign-up')
  await laptop.fill('#su-username', username)
  await laptop.fill('#su-email', `${username}@example.com`)
  await laptop.fill('#su-password', GOOD_PASSWORD)
  await laptop.click('#sign-up-form button[type=submit]')
  await laptop.locator('#profile-view').waitFor()

  const phone = await openPage()
  await phone.fill('#si-login', username)
  await phone.fill('#si-password', GOOD_PASSWORD)
  await phone.click('#sign-in-form button[type=submit]')
  await phone.locator('#profile-view').waitFor()

  await t.test('when signed in on two browsers, then each lists both with its own flagged as this device', async () => {
    await laptop.reload()
    await laptop.locator('#profile-view').waitFor()
    const items = laptop.locator('#session-list > li')
    await assert.doesNotReject(items.nth(1).waitFor())
    assert.equal(await items.count(), 2)
    const texts = await items.allTextContents()
    for (const text of texts) {
      assert.match(text, /Chrome \d+ on Linux/)
      assert.match(text, /127\.0\.0\.0\/24/)
      assert.match(text, /last used/)
    }
    assert.equal(await laptop.locator('#session-list > li:has-text("This device")').count(), 1)
    // "Sign out" beside the other session only, named for screen readers.
    const buttons = laptop.locator('#session-list button')
    assert.equal(await buttons.count(), 1)
    assert.match((await buttons.getAttribute('aria-label')) ?? '', /^Sign out Chrome \d+ on Linux, last used /)
    assert.match((await laptop.locator('#activity-list').textContent()) ?? '', /Signed in on a new device/)
    if (process.env.PANEL_SHOT) await laptop.locator('.profile__side').screenshot({ path: process.env.PANEL_SHOT })
  })

  await t.test('when the other session is signed out from the keyboard, then it ends there and the lists say so', async () => {
    await laptop.locator('#session-list button').focus()
    await laptop.keyboard.press('Enter')
    await laptop.locator('#session-list-status', { hasText: 'was signed out' }).waitFor()
    assert.equal(await laptop.locator('#session-list > li').count(), 1)
    assert.match((await laptop.locator('#activity-list > li').first().textContent()) ?? '', /A session was ended/)
    // The phone's next request finds its session gone: the page goes back to signing in.
    await phone.reload()
    await phone.locator('#auth-view').waitFor()
    assert.ok(await phone.locator('#auth-view').isVisible())
  })

  await t.test('when the page ran, then no script error or CSP violation happened', () => {
    assert.deepEqual(problems, [])
  })
})
