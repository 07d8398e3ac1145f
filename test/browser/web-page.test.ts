import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { type TestContext, test } from 'node:test'
import type { Page } from 'playwright-core'
import sharp from 'sharp'
import { buildApp } from '../../src/app.js'
import { GOOD_PASSWORD, testConfig, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'


const AVATAR_MAX_BYTES = 256 * 1024

interface Person {
  username: string
  email: string
  password: string
}

function newPerson(prefix = 'web'): Person {
  const username = uniqueName(prefix)
  return { username, email: `${username}@example.com`, password: GOOD_PASSWORD }
}

/** Everything the browser did that the last step checks: requests, uncaught errors, CSP reports. */
class Observations {
  readonly urls = new Set<string>()
  readonly pageErrors: string[] = []
  readonly cspViolations: string[] = []
}

async function jpeg(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 220, g: 120, b: 40 } } })
    .jpeg()
    .toBuffer()
}

/** Random pixels barely compress: a JPEG well over the avatar limit. */
async function largeJpeg(): Promise<Buffer> {
  const side = 700
  const pixels = Buffer.alloc(side * side * 3)
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7919) % 251
  const bytes = await sharp(pixels, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 100 }).toBuffer()
  assert.ok(bytes.length > AVATAR_MAX_BYTES, `${bytes.length} bytes is not over the limit`)
  return bytes
}

test('the web page, driven in headless Chromium', { skip: CHROMIUM_SKIP }, async (t) => {
  // A small avatar limit so that a too-large photo is quick to make.
  const app = await buildApp(await testConfig(t, 'sqlite', { avatarMaxBytes: AVATAR_MAX_BYTES }))
  deferCleanup(t, () => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const browser = await launchChromium(t)
  const seen = new Observations()

  /** A fresh browser profile (its own cookies) with the page open. */
  async function openPage(st: TestContext, viewport = { width: 1280, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport })
    deferCleanup(st, () => context.close())
    // Generous: CI machines run other suites beside this one.
    context.setDefaultTimeout(30_000)
    context.on('request', (request) => seen.urls.add(request.url()))
    context.on('page', (page) => {
      page.on('pageerror', (error) => seen.pageErrors.push(String(error)))
      page.on('console', (message) => {
        if (/content security policy|refused to/i.test(message.text())) seen.cspViolations.push(message.text())
      })
    })
    const page = await context.newPage()
    await page.goto(origin)
    await page.locator('#loading').waitFor({ state: 'hidden' })
    return page
  }

  async function signUp(page: Page, person: Person = newPerson()): Promise<Person> {
    await page.click('#tab-sign-up')
    await page.fill('#su-username', person.username)
    await page.fill('#su-email', person.email)
    await page.fill('#su-password', person.password)
    await page.click('#sign-up-form button[type=submit]')
    await page.locator('#profile-view').waitFor()
    return person
  }

  async function signIn(page: Page, login: string, password: string): Promise<void> {
    await page.fill('#si-login', login)
    await page.fill('#si-password', password)
    await page.click('#sign-in-form button[type=submit]')
  }

  async function reload(page: Page): Promise<void> {
    await page.reload()
    await page.locator('#loading').waitFor({ state: 'hidden' })
  }

  const inputOf = (page: Page, selector: string) => page.locator(selector).inputValue()
  const textOf = async (page: Page, selector: string) => (await page.locator(selector).textContent())?.trim()

  /** The error shown beside a field: visible, announced through aria-describedby, field marked invalid. */
  async function fieldError(page: Page, inputId: string): Promise<string> {
    const error = page.locator(`#${inputId}-error`)
    await error.waitFor()
    const input = page.locator(`#${inputId}`)
    assert.equal(await input.getAttribute('aria-invalid'), 'true')
    assert.ok((await input.getAttribute('aria-describedby'))?.split(' ').includes(`${inputId}-error`))
    return (await error.textContent()) ?? ''
  }

  await t.test('when the page is served, then its headers forbid inline code, remote origins, framing and sniffing', async () => {
    for (const path of ['/', '/app.js', '/styles.css']) {
      const response = await fetch(`${origin}${path}`)
      assert.equal(response.status, 200, path)
      const csp = response.headers.get('content-security-policy') ?? ''
      assert.match(csp, /default-src 'self'/, path)
      assert.match(csp, /frame-ancestors 'none'/, path)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/, path)
      assert.ok(response.headers.get('referrer-policy'), path)
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path)
    }
  })

  await t.test('when a person signs up, then the profile shows, survives a reload and no script can read a token', async (st) => {
    const page = await openPage(st)
    const person = await signUp(page)
    assert.equal(await inputOf(page, '#pf-username'), person.username)
    assert.equal(await inputOf(page, '#pf-email'), person.email)

    await reload(page)
    assert.ok(await page.locator('#profile-view').isVisible())
    assert.equal(await inputOf(page, '#pf-username'), person.username)

    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie])
    assert.deepEqual(stored, [0, 0, ''])
    // The refresh token, and the device proof that keeps this browser signing in while others lock the account.
    const cookies = (await page.context().cookies()).sort((a, b) => a.name.localeCompare(b.name))
    assert.deepEqual(
      cookies.map(({ name, httpOnly, sameSite, path }) => ({ name, httpOnly, sameSite, path })),
      [
        { name: 'portrait_device', httpOnly: true, sameSite: 'Strict', path: '/api/auth/sign-in' },
        { name: 'portrait_refresh', httpOnly: true, sameSite: 'Strict', path: '/api/auth' },
      ],
    )
  })

  await t.test('when several tabs load at once, then their refreshes take turns and nobody is signed out', async (st) => {
    const first = await openPage(st)
    await signUp(first)
    // Same browser profile, so one refresh cookie: parallel refreshes with it would look like token theft.
    const tabs = [first, await first.context().newPage(), await first.context().newPage()]
    for (let round = 0; round < 3; round++) {
      await Promise.all(tabs.map((tab) => tab.goto(origin)))
      await Promise.all(tabs.map((tab) => tab.locator('#loading').waitFor({ state: 'hidden' })))
      assert.deepEqual(await Promise.all(tabs.map((tab) => tab.locator('#profile-view').isVisible())), [true, true, true], `round ${round}`)
    }
  })

  await t.test('when every field is edited and saved, then the new values persist after a reload', async (st) => {
    const page = await openPage(st)
    await signUp(page)
    const renamed = newPerson('renamed')
    await page.fill('#pf-first-name', '  Ada  ')
    await page.fill('#pf-last-name', 'Lovelace')
    await page.fill('#pf-number-phone', '+441234567')
    await page.fill('#pf-username', renamed.username)
    await page.fill('#pf-email', renamed.email)
    await page.click('#profile-form button[type=submit]')
    await page.getByText('Profile saved.').waitFor()
    assert.equal(await inputOf(page, '#pf-first-name'), 'Ada', 'the server trimmed it and the page shows what was stored')

    await reload(page)
    await page.locator('#profile-view').waitFor()
    assert.deepEqual(
      await Promise.all(['#pf-first-name', '#pf-last-name', '#pf-number-phone', '#pf-username', '#pf-email'].map((id) => inputOf(page, id))),
      ['Ada', 'Lovelace', '+441234567', renamed.username, renamed.email],
    )
    assert.equal(await textOf(page, '#display-name'), 'Ada Lovelace')
  })

  await t.test('when two devices edit the profile, then other fields merge and the same field is never overwritten unseen', async (st) => {
    const laptop = await openPage(st)
    const person = await signUp(laptop)
    const phone = await openPage(st)
    await signIn(phone, person.username, person.password)
    await phone.locator('#profile-view').waitFor()

    // The phone's sign-in moved the profile's version on; the laptop's edit of another field still saves.
    await laptop.fill('#pf-first-name', 'Laptop')
    await laptop.click('#profile-form button[type=submit]')
    await laptop.getByText('Profile saved.').waitFor()

    await phone.fill('#pf-first-name', 'Phone')
    await phone.click('#profile-form button[type=submit]')
    await phone.getByText('changed somewhere else', { exact: false }).waitFor()
    assert.equal(await inputOf(phone, '#pf-first-name'), 'Laptop', 'the latest copy is shown, not silently replaced')

    await phone.fill('#pf-last-name', 'Phone')
    await phone.click('#profile-form button[type=submit]')
    await phone.getByText('Profile saved.').waitFor()
    await reload(laptop)
    assert.deepEqual([await inputOf(laptop, '#pf-first-name'), await inputOf(laptop, '#pf-last-name')], ['Laptop', 'Phone'])
  })

  await t.test('when a username is taken, then the server error shows beside the username field and nothing changes', async (st) => {
    const taken = newPerson('taken')
    const created = await fetch(`${origin}/api/auth/sign-up`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(taken),
    })
    assert.equal(created.status, 201)

    const page = await openPage(st)
    await page.click('#tab-sign-up')
    await page.fill('#su-username', taken.username.toUpperCase())
    await page.fill('#su-email', `other-${taken.email}`)
    await page.fill('#su-password', GOOD_PASSWORD)
    await page.click('#sign-up-form button[type=submit]')
    assert.match(await fieldError(page, 'su-username'), /already exists/)

    const person = await signUp(page, newPerson())
    await page.fill('#pf-username', taken.username)
    await page.fill('#pf-first-name', 'Grace')
    await page.click('#profile-form button[type=submit]')
    assert.match(await fieldError(page, 'pf-username'), /already exists/)
    assert.equal(await page.locator('#pf-first-name-error').isVisible(), false)

    await reload(page)
    assert.equal(await inputOf(page, '#pf-username'), person.username)
    assert.equal(await inputOf(page, '#pf-first-name'), '', 'a failed update changes nothing')
  })

  await t.test('when a photo is too large or not an image, then the error shows beside the photo and a retry works', async (st) => {
    const page = await openPage(st)
    await signUp(page)
    await page.fill('#pf-first-name', 'Unsaved')

    // Too large: refused on choosing it, before any upload, in the units of the hint.
    assert.match((await textOf(page, '#avatar-hint')) ?? '', /up to 256 KiB\./)
    const uploads: string[] = []
    page.on('request', (request) => {
      if (request.method() !== 'GET' && /\/api\/users\/\d+$/.test(request.url())) uploads.push(request.url())
    })
    await page.locator('#avatar-file').setInputFiles({ name: 'big.jpg', mimeType: 'image/jpeg', buffer: await largeJpeg() })
    await page.locator('#avatar-file-error').waitFor()
    assert.match((await textOf(page, '#avatar-file-error')) ?? '', /^This file is [\d.]+ KiB; the photo may be at most 256 KiB\.$/)
    assert.equal(await page.locator('#avatar-save').isVisible(), false)
    assert.deepEqual(uploads, [])

    // A file the browser cannot show is refused before any upload.
    await page.locator('#avatar-file').setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not an image') })
    await page.getByText('This file is not an image Portrait can use.', { exact: false }).waitFor()
    assert.equal(await page.locator('#avatar-save').isVisible(), false)

    // The refused upload's connection must not stall the next request.
    await page.locator('#avatar-file').setInputFiles({ name: 'photo.jpg', mimeType: 'image/jpeg', buffer: await jpeg(64, 64) })
    await page.click('#avatar-save')
    await page.getByText('Photo saved.').waitFor()
    assert.equal(await page.locator('#avatar-file-error').isVisible(), false)
    assert.equal(await page.evaluate(() => (document.getElementById('avatar-image') as HTMLImageElement).naturalWidth), 64)
    assert.equal(await inputOf(page, '#pf-first-name'), 'Unsaved', 'unsaved details survive a photo upload')
  })

  await t.test('when a JPEG is chosen and saved, then it is previewed, uploaded with progress, rendered, and can be removed', async (st) => {
    const page = await openPage(st)
    await signUp(page)
    const image = page.locator('#avatar-image')
    assert.equal(await image.isVisible(), false)

    await page.locator('#avatar-file').setInputFiles({ name: 'photo.jpg', mimeType: 'image/jpeg', buffer: await jpeg(800, 600) })
    await page.waitForFunction(() => {
      const img = document.getElementById('avatar-image') as HTMLImageElement
      return img.src.startsWith('blob:') && img.complete && img.naturalWidth === 800
    })
    // The status is announced 50 ms after the preview is set (forms.js announce), so wait for it.
    await page.waitForFunction(() => /Preview/.test(document.getElementById('avatar-status')?.textContent ?? ''))
    assert.match(await textOf(page, '#avatar-status') ?? '', /Preview/)

    // Record whether the progress state was ever shown, whatever the upload's speed.
    // (No named functions inside evaluate: tsx would wrap them in a helper the page lacks.)
    await page.evaluate(() => {
      const progress = document.getElementById('avatar-progress') as HTMLElement
      new MutationObserver(() => {
        if (!progress.hidden) document.body.dataset.sawProgress = 'yes'
      }).observe(progress, { attributes: true })
    })
    await page.click('#avatar-save')
    await page.getByText('Photo saved.').waitFor()
    assert.equal(await page.evaluate(() => document.body.dataset.sawProgress), 'yes')

    const rendered = () =>
      page.evaluate(() => {
        const img = document.getElementById('avatar-image') as HTMLImageElement
        return { src: img.getAttribute('src') ?? '', complete: img.complete, width: img.naturalWidth, height: img.naturalHeight }
      })
    await page.waitForFunction(() => (document.getElementById('avatar-image') as HTMLImageElement).complete)
    const saved = await rendered()
    assert.match(saved.src, /^\/media\/avatars\/[^/]+$/)
    assert.deepEqual([saved.complete, saved.width, saved.height], [true, 512, 384], 'fitted within 512×512 by the server')

    await reload(page)
    await page.waitForFunction(() => {
      const img = document.getElementById('avatar-image') as HTMLImageElement
      return !img.hidden && img.complete && img.naturalWidth > 0
    })
    assert.equal((await rendered()).src, saved.src)

    await page.click('#avatar-remove')
    await page.getByText('Photo removed.').waitFor()
    assert.equal(await image.isVisible(), false)
    assert.ok(await page.locator('#avatar-initials').isVisible())
    assert.equal((await fetch(`${origin}${saved.src}`)).status, 404, 'the old image is gone')
    await reload(page)
    assert.equal(await image.isVisible(), false)
  })

  await t.test('when the password is changed, then the new one signs in and the old one does not', async (st) => {
    const page = await openPage(st)
    const person = await signUp(page)
    const newPassword = 'another-Secret-phrase-7'

    await page.fill('#pw-current', 'not-my-password-1')
    await page.fill('#pw-new', newPassword)
    await page.fill('#pw-confirm', `${newPassword}x`)
    await page.click('#password-form button[type=submit]')
    assert.match(await fieldError(page, 'pw-confirm'), /differ/)

    await page.fill('#pw-confirm', newPassword)
    await page.click('#password-form button[type=submit]')
    assert.match(await fieldError(page, 'pw-current'), /incorrect/)

    await page.fill('#pw-current', person.password)
    await page.click('#password-form button[type=submit]')
    await page.getByText('Password changed.', { exact: false }).waitFor()
    assert.equal(await inputOf(page, '#pw-new'), '', 'the form is cleared')

    await page.click('#sign-out')
    await page.getByText('You have signed out.').waitFor()
    await signIn(page, person.username, person.password)
    await page.locator('#sign-in-form [data-form-error]').waitFor()
    assert.equal(await page.locator('#profile-view').isVisible(), false)

    await signIn(page, person.email, newPassword)
    await page.locator('#profile-view').waitFor()
    assert.equal(await inputOf(page, '#pf-username'), person.username)
  })

  await t.test('when a person signs out here or everywhere, then the sessions end', async (st) => {
    const here = await openPage(st)
    const person = await signUp(here)
    await here.click('#sign-out')
    await here.getByText('You have signed out.').waitFor()
    await reload(here)
    assert.ok(await here.locator('#auth-view').isVisible(), 'a reload does not bring the session back')

    const laptop = await openPage(st)
    const phone = await openPage(st)
    for (const page of [laptop, phone]) {
      await signIn(page, person.username, person.password)
      await page.locator('#profile-view').waitFor()
    }
    await laptop.click('#sign-out-everywhere')
    await laptop.getByText('You have been signed out on every device.').waitFor()

    await phone.fill('#pf-first-name', 'Late')
    await phone.click('#profile-form button[type=submit]')
    await phone.getByText('Your session has ended.', { exact: false }).waitFor()
    await reload(phone)
    assert.ok(await phone.locator('#auth-view').isVisible())
  })

  await t.test('when the account is deleted, then the password is asked for first and the account is gone', async (st) => {
    const page = await openPage(st)
    const person = await signUp(page)
    await page.click('#delete-open')
    const dialog = page.locator('#delete-dialog')
    await dialog.waitFor()
    await page.click('#delete-cancel')
    await dialog.waitFor({ state: 'hidden' })

    await page.click('#delete-open')
    await page.fill('#del-password', 'not-my-password-1')
    await page.click('#delete-form button[type=submit]')
    assert.match(await fieldError(page, 'del-password'), /incorrect/)

    await page.fill('#del-password', person.password)
    await page.click('#delete-form button[type=submit]')
    await page.getByText('Your account has been deleted.').waitFor()
    await signIn(page, person.username, person.password)
    await page.locator('#sign-in-form [data-form-error]').waitFor()
    assert.equal(await page.locator('#profile-view').isVisible(), false)
  })

  await t.test('when only the keyboard is used, then a person can create an account and focus stays visible', async (st) => {
    const page = await openPage(st)
    const focused = () => page.evaluate(() => document.activeElement?.id ?? '')
    for (let presses = 0; presses < 5 && (await focused()) !== 'tab-sign-in'; presses++) await page.keyboard.press('Tab')
    assert.equal(await focused(), 'tab-sign-in')
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement as Element).outlineStyle)
    assert.notEqual(outline, 'none', 'keyboard focus is visible')

    // A failed sign-in from the button leaves focus on the button, not lost on the page.
    for (const text of ['nobody@example.com', 'not-my-password-1']) {
      await page.keyboard.press('Tab')
      await page.keyboard.type(text)
    }
    await page.keyboard.press('Tab')
    await page.keyboard.press('Enter')
    await page.locator('#sign-in-form [data-form-error]').waitFor()
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Sign in')
    for (let presses = 0; presses < 3; presses++) await page.keyboard.press('Shift+Tab')
    assert.equal(await focused(), 'tab-sign-in')

    await page.keyboard.press('ArrowRight')
    assert.equal(await focused(), 'tab-sign-up')
    assert.equal(await page.locator('#tab-sign-up').getAttribute('aria-selected'), 'true')
    const person = newPerson('keys')
    for (const [id, value] of [
      ['su-username', person.username],
      ['su-email', person.email],
      ['su-password', person.password],
    ] as const) {
      await page.keyboard.press('Tab')
      assert.equal(await focused(), id)
      await page.keyboard.type(value)
    }
    await page.keyboard.press('Enter')
    await page.locator('#profile-view').waitFor()
    assert.equal(await focused(), 'profile-title', 'focus moves to the new screen')
  })

  await t.test('when nobody is signed in, then loading the page logs no error in the console', async (st) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    deferCleanup(st, () => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text())
    })
    await page.goto(origin)
    await page.locator('#loading').waitFor({ state: 'hidden' })
    assert.ok(await page.locator('#auth-view').isVisible())
    await page.reload()
    await page.locator('#loading').waitFor({ state: 'hidden' })
    assert.deepEqual(errors, [])
  })

  await t.test('when the tabs are switched at 1280 px, then the sign-in card stays where it is', async (st) => {
    const page = await openPage(st)
    const top = async () => (await page.locator('.auth__card').boundingBox())?.y
    const before = await top()
    await page.click('#tab-sign-up')
    assert.equal(await top(), before)
    await page.click('#tab-sign-in')
    assert.equal(await top(), before)
  })

  await t.test('when the username is long at 375 px, then "Sign out" stays on one line and the name is shortened, not cut', async (st) => {
    const page = await openPage(st, { width: 375, height: 812 })
    await signUp(page, newPerson('maximiliana_longername'))
    const button = await page.locator('#sign-out').boundingBox()
    const header = await page.locator('.site-header__inner').boundingBox()
    assert.ok(button && header)
    assert.ok(button.height < 40, `Sign out is ${button.height}px tall: it wrapped`)
    assert.ok(button.x + button.width <= header.x + header.width, 'Sign out fits in the header')
    const name = await page.locator('#header-username').evaluate((element: HTMLElement) => ({ title: element.title, text: element.textContent, clipped: element.scrollWidth > element.clientWidth, ellipsis: getComputedStyle(element).textOverflow }))
    assert.equal(name.title, name.text, 'the whole name is in the title')
    if (name.clipped) assert.equal(name.ellipsis, 'ellipsis')
  })

  await t.test('when a long email is shown at 1280 px, then it fits in its field', async (st) => {
    const page = await openPage(st)
    const person = newPerson('long')
    await signUp(page, { ...person, email: `${person.username}.firstname.lastname@department.example.com` })
    const fits = await page.locator('#pf-email').evaluate((input) => input.scrollWidth <= input.clientWidth)
    assert.equal(fits, true)
  })

  await t.test('when another action follows, then an old status message does not stay', async (st) => {
    const page = await openPage(st)
    await signUp(page)
    await page.click('#profile-form button[type=submit]')
    await page.getByText('No changes to save.').waitFor()
    // An unrelated action: the password form, submitted empty.
    await page.click('#password-form button[type=submit]')
    await page.locator('#pw-current-error').waitFor()
    assert.equal(await textOf(page, '#profile-status'), '')
    // Editing the form again clears its own message too.
    await page.click('#profile-form button[type=submit]')
    await page.getByText('No changes to save.').waitFor()
    await page.fill('#pf-first-name', 'Ada')
    assert.equal(await textOf(page, '#profile-status'), '')
  })

  await t.test('when a validation error shows on a small screen, then the field and its error are scrolled into view', async (st) => {
    const page = await openPage(st, { width: 375, height: 500 })
    await signUp(page)
    await page.fill('#pf-email', 'not-an-email')
    // The email input just at the bottom edge, so its error text would appear below the fold.
    await page.evaluate(() => {
      document.getElementById('pf-email')?.scrollIntoView({ block: 'end' })
      ;(document.getElementById('profile-form') as HTMLFormElement).requestSubmit()
    })
    const error = page.locator('#pf-email-error')
    await error.waitFor()
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'pf-email')
    const inView = await error.evaluate((element) => {
      const box = element.getBoundingClientRect()
      return box.top >= 0 && box.bottom <= window.innerHeight
    })
    assert.equal(inView, true)
  })

  await t.test('when the journey is over, then no page asked another origin and nothing broke the CSP', () => {
    assert.ok(seen.urls.size > 0)
    const foreign = [...seen.urls].filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith(`blob:${origin}/`))
    assert.deepEqual(foreign, [])
    assert.deepEqual(seen.cspViolations, [])
    assert.deepEqual(seen.pageErrors, [])
  })
})
