import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import type { ParsedMail } from 'mailparser'
import type { Page } from 'playwright-core'
import { GOOD_PASSWORD, uniqueName } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'
import { startServer } from '../helpers/processes.js'
import { recipients, type SmtpSink, startSmtp } from '../helpers/smtp.js'

const NEW_PASSWORD = 'another-Battery-staple-7'
// Set to a directory to keep a screenshot of each recovery screen, to look at (they are not committed).
const SCREENSHOTS = process.env.RECOVERY_SCREENSHOTS

interface Person {
  username: string
  email: string
  password: string
}

function newPerson(prefix = 'rec'): Person {
  const username = uniqueName(prefix)
  return { username, email: `${username}@example.com`, password: GOOD_PASSWORD }
}

/** The messages of a real SMTP server, each link handed out once. */
class Inbox {
  private readonly taken = new Set<ParsedMail>()
  constructor(
    private readonly smtp: SmtpSink,
    private readonly origin: string,
  ) {}

  /**
   * The link to `path` (e.g. /reset-password) in the next message for `address` not looked at yet; waits for it
   * (the sender delivers in the background). The link must point at this server.
   */
  async link(address: string, path: '/reset-password' | '/verify-email'): Promise<string> {
    const pattern = new RegExp(`(https?://[^\\s"<>/]+)(${path}#token=[A-Za-z0-9_-]+)`)
    const mail = await this.smtp.waitFor(
      (each) => !this.taken.has(each) && recipients(each).includes(address) && pattern.test(each.text ?? ''),
      30_000,
    )
    this.taken.add(mail)
    const [, origin, link] = pattern.exec(mail.text ?? '') as RegExpExecArray
    assert.equal(origin, this.origin, 'the link points at the server that sent it')
    return link as string
  }
}

test('account recovery in the web page, with mail through a real SMTP server', { skip: CHROMIUM_SKIP }, async (t) => {
  const smtp = await startSmtp(t)
  // Three mails per address per window (MAIL_REQUEST_WINDOW, 1 h), so that the limit is quick to reach.
  const env = { SMTP_URL: smtp.url, MAIL_FROM: 'Portrait <portrait@example.com>', MAIL_REQUESTS_PER_EMAIL: '3' }
  const server = await startServer(t, { env })
  const origin = server.url
  const inbox = new Inbox(smtp, origin)
  if (SCREENSHOTS) mkdirSync(SCREENSHOTS, { recursive: true })

  const browser = await launchChromium(t)
  const urls = new Set<string>()
  const pageErrors: string[] = []
  const cspViolations: string[] = []

  async function openPage(st: TestContext, path = '/', viewport = { width: 1280, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport })
    deferCleanup(st, () => context.close())
    context.setDefaultTimeout(30_000)
    context.on('request', (request) => urls.add(request.url()))
    context.on('page', (page) => {
      page.on('pageerror', (error) => pageErrors.push(String(error)))
      page.on('console', (message) => {
        if (/content security policy|refused to/i.test(message.text())) cspViolations.push(message.text())
      })
    })
    const page = await context.newPage()
    await visit(page, path)
    return page
  }

  async function visit(page: Page, path: string): Promise<void> {
    await page.goto(`${origin}${path}`)
    await page.locator('#loading').waitFor({ state: 'hidden' })
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
  }

  async function signUpByApi(person: Person = newPerson()): Promise<Person> {
    const response = await fetch(`${origin}/api/auth/sign-up`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(person),
    })
    assert.equal(response.status, 201, await response.text())
    return person
  }

  async function signIn(page: Page, login: string, password: string): Promise<void> {
    await page.fill('#si-login', login)
    await page.fill('#si-password', password)
    await page.click('#sign-in-form button[type=submit]')
  }

  const activeId = (page: Page) => page.evaluate(() => document.activeElement?.id ?? '')
  const textOf = async (page: Page, selector: string) => ((await page.locator(selector).textContent()) ?? '').trim()

  /** Presses Tab until `id` has focus; fails if it is not reached (not in the tab order, or hidden). */
  async function tabTo(page: Page, id: string): Promise<void> {
    for (let presses = 0; presses < 30; presses++) {
      if ((await activeId(page)) === id) return
      await page.keyboard.press('Tab')
    }
    assert.fail(`#${id} was not reached with Tab`)
  }

  /** The error shown beside a field: visible, announced through aria-describedby, field marked invalid. */
  async function fieldError(page: Page, inputId: string): Promise<string> {
    const error = page.locator(`#${inputId}-error`)
    await error.waitFor()
    const input = page.locator(`#${inputId}`)
    assert.equal(await input.getAttribute('aria-invalid'), 'true')
    assert.ok((await input.getAttribute('aria-describedby'))?.split(' ').includes(`${inputId}-error`))
    return (await error.textContent()) ?? ''
  }

  await t.test('when the reset and verification pages are served, then they are the page with its strict headers', async () => {
    for (const path of ['/reset-password', '/verify-email']) {
      const response = await fetch(`${origin}${path}`)
      assert.equal(response.status, 200, path)
      assert.match(await response.text(), /id="recovery-view"/, path)
      const csp = response.headers.get('content-security-policy') ?? ''
      assert.match(csp, /default-src 'self'/, path)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, path)
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path)
    }
  })

  await t.test('when a person forgets the password, then, with the keyboard only, the mailed link sets a new one and they sign in with it', async (st) => {
    const person = await signUpByApi()
    // Signed in on another device, which the reset must sign out.
    const otherDevice = await openPage(st)
    await signIn(otherDevice, person.username, person.password)
    await otherDevice.locator('#profile-view').waitFor()

    const page = await openPage(st)
    await screenshot(page, '1-sign-in')
    await tabTo(page, 'si-login')
    await page.keyboard.type(person.email)
    await tabTo(page, 'forgot-open')
    await page.keyboard.press('Enter')
    await page.locator('#forgot-panel').waitFor()
    assert.equal(await activeId(page), 'forgot-title', 'focus moves to the new heading')
    assert.equal(await page.locator('#fp-email').inputValue(), person.email, 'the address typed to sign in is kept')
    assert.equal(await page.title(), 'Reset your password · Portrait')
    await screenshot(page, '2-forgot')
    await tabTo(page, 'fp-email')
    await page.keyboard.press('Enter')

    await page.locator('#forgot-sent-panel').waitFor()
    assert.equal(await activeId(page), 'forgot-sent-title')
    assert.equal(await textOf(page, '#forgot-sent-email'), person.email)
    await screenshot(page, '3-check-your-mail')

    // The person opens the link from the mail.
    const link = await inbox.link(person.email, '/reset-password')
    await visit(page, link)
    await page.locator('#reset-panel').waitFor()
    assert.equal(new URL(page.url()).hash, '', 'the token has left the address bar')
    assert.equal(new URL(page.url()).pathname, '/reset-password')
    assert.equal(await page.evaluate(() => history.length >= 1 && !location.href.includes('token')), true)

    // A password the server refuses: its message beside the field, and the form still usable.
    await tabTo(page, 'rp-new')
    await page.keyboard.type('12345678')
    await tabTo(page, 'rp-confirm')
    await page.keyboard.type('12345678')
    await page.keyboard.press('Enter')
    assert.ok((await fieldError(page, 'rp-new')).length > 0)
    assert.equal(await activeId(page), 'rp-new', 'focus goes to the field to fix')
    await screenshot(page, '4-reset-field-error')

    await page.keyboard.press('ControlOrMeta+a')
    await page.keyboard.type(NEW_PASSWORD)
    await tabTo(page, 'rp-confirm')
    await page.keyboard.press('ControlOrMeta+a')
    await page.keyboard.type(NEW_PASSWORD)
    await page.keyboard.press('Enter')

    await page.locator('#auth-view').waitFor()
    // The notice is announced a moment after the screen shows (forms.js announce): wait for its words.
    await page.locator('#auth-notice', { hasText: /password has been changed/ }).waitFor()
    assert.equal(new URL(page.url()).pathname, '/')
    assert.equal(await activeId(page), 'auth-title')
    await screenshot(page, '5-password-changed')

    // Signed in with the new password, by keyboard; the old one no longer works.
    await tabTo(page, 'si-login')
    await page.keyboard.type(person.username)
    await tabTo(page, 'si-password')
    await page.keyboard.type(NEW_PASSWORD)
    await page.keyboard.press('Enter')
    await page.locator('#profile-view').waitFor()

    // The other device was signed out: its next page load finds no session.
    await visit(otherDevice, '/')
    assert.ok(await otherDevice.locator('#auth-view').isVisible())
    const old = await fetch(`${origin}/api/auth/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: person.username, password: person.password }),
    })
    assert.equal(old.status, 401)

    // The same link a second time: refused, with a clear way to a new one.
    await visit(page, link)
    await page.fill('#rp-new', `${NEW_PASSWORD}-again`)
    await page.fill('#rp-confirm', `${NEW_PASSWORD}-again`)
    await page.click('#reset-form button[type=submit]')
    const alert = page.locator('#reset-form [data-form-error]')
    await alert.waitFor()
    assert.match((await alert.textContent()) ?? '', /expired or has already been used/)
    assert.equal(await activeId(page), 'reset-request-new')
    await screenshot(page, '6-reset-link-used')
    await page.keyboard.press('Enter')
    await page.locator('#forgot-panel').waitFor()
    assert.equal(await activeId(page), 'forgot-title')
  })

  await t.test('when an address has no account, then the page says exactly what it says for one that has', async (st) => {
    const person = await signUpByApi()
    const unknown = `${uniqueName('nobody')}@example.com`
    const page = await openPage(st)
    const answers: string[] = []
    for (const email of [person.email, unknown]) {
      await page.click('#forgot-open')
      await page.fill('#fp-email', email)
      await page.click('#forgot-form button[type=submit]')
      await page.locator('#forgot-sent-panel').waitFor()
      answers.push((await textOf(page, '#forgot-sent-panel')).replace(email, '<email>'))
      await page.click('#forgot-sent-panel [data-recovery-back]')
      await page.locator('#auth-view').waitFor()
    }
    assert.equal(answers[0], answers[1])
    // The known address did get its link.
    assert.match(await inbox.link(person.email, '/reset-password'), /^\/reset-password#token=/)
  })

  await t.test('when resets are asked for too often, then the form says so and how long to wait', async (st) => {
    const email = `${uniqueName('often')}@example.com`
    const page = await openPage(st)
    await page.click('#forgot-open')
    const alert = page.locator('#forgot-form [data-form-error]')
    for (let request = 1; request <= 4; request++) {
      await page.fill('#fp-email', email)
      await page.click('#forgot-form button[type=submit]')
      if (request === 4) break
      await page.locator('#forgot-sent-panel').waitFor()
      await page.click('#forgot-again')
    }
    await alert.waitFor()
    assert.match(await textOf(page, '#forgot-form [data-form-error]'), /^Too many reset requests just now\. Please try again in (\d+ minutes?|1 hour)\.$/)
    assert.equal(await page.locator('#forgot-panel').isVisible(), true, 'the form stays, with the address, for a later try')
    assert.equal(await page.locator('#fp-email').inputValue(), email)
    await screenshot(page, '10-forgot-too-many')
  })

  await t.test('when the email is missing or malformed, then the error shows beside the field and nothing is sent', async (st) => {
    const page = await openPage(st)
    const sent: string[] = []
    page.on('request', (request) => {
      if (request.url().endsWith('/api/auth/password-reset')) sent.push(request.url())
    })
    await page.click('#forgot-open')
    await page.click('#forgot-form button[type=submit]')
    assert.match(await fieldError(page, 'fp-email'), /required/)
    // The server answers 202 to any string (it reveals nothing), so the page catches the typo.
    await page.fill('#fp-email', 'ada.example.com')
    await page.click('#forgot-form button[type=submit]')
    assert.equal(await fieldError(page, 'fp-email'), 'Enter a valid email address.')
    assert.equal(await activeId(page), 'fp-email')
    assert.deepEqual(sent, [])
  })

  await t.test('when a reset link lost its token, then the page says so and offers to send a new one', async (st) => {
    const page = await openPage(st, '/reset-password')
    await page.locator('#forgot-panel').waitFor()
    assert.match(await textOf(page, '#forgot-form [data-form-error]'), /incomplete/)
  })

  await t.test('when a new account is unverified, then the banner sends the link again and the link verifies it', async (st) => {
    const page = await openPage(st)
    const person = newPerson()
    await page.click('#tab-sign-up')
    await page.fill('#su-username', person.username)
    await page.fill('#su-email', person.email)
    await page.fill('#su-password', person.password)
    await page.click('#sign-up-form button[type=submit]')
    await page.locator('#profile-view').waitFor()

    const banner = page.locator('#verify-banner')
    await banner.waitFor()
    assert.equal(await textOf(page, '#verify-banner-email'), person.email)
    // The link of the sign-up mail, then the one sent again.
    await inbox.link(person.email, '/verify-email')
    await tabTo(page, 'verify-resend')
    await page.keyboard.press('Enter')
    await page.getByText(`A new verification link is on its way to ${person.email}.`).waitFor()
    await screenshot(page, '7-verify-banner')
    const link = await inbox.link(person.email, '/verify-email')
    // Another tab of the same browser, still showing the banner after the address is verified.
    const otherTab = await page.context().newPage()
    await visit(otherTab, '/')
    await otherTab.locator('#verify-banner').waitFor()

    await visit(page, link)
    await page.getByRole('heading', { name: 'Email address verified' }).waitFor()
    assert.equal(new URL(page.url()).hash, '', 'the token has left the address bar')
    await screenshot(page, '8-verified')
    await page.click('#verify-continue')
    await page.locator('#profile-view').waitFor()
    assert.equal(await banner.isVisible(), false, 'no banner once verified')
    assert.equal(new URL(page.url()).pathname, '/')
    await otherTab.click('#verify-resend')
    await otherTab.getByText('The address is verified already; no mail was sent.').waitFor()

    // The same link again: it says so clearly.
    await visit(page, link)
    await page.getByRole('heading', { name: 'This link cannot be used' }).waitFor()
    assert.match(await textOf(page, '#verify-text'), /expired or has already been used/)
    await screenshot(page, '9-verify-link-used')

    // A new address is unverified again: the banner is back at once, for the new address.
    await page.click('#verify-continue')
    await page.locator('#profile-view').waitFor()
    const renamed = `${uniqueName('moved')}@example.com`
    await page.fill('#pf-email', renamed)
    await page.click('#profile-form button[type=submit]')
    await page.getByText('Profile saved.').waitFor()
    await banner.waitFor()
    assert.equal(await textOf(page, '#verify-banner-email'), renamed)
  })

  await t.test('when "Send again" is pressed too often, then the banner says how long to wait', async (st) => {
    const page = await openPage(st)
    const person = newPerson()
    await page.click('#tab-sign-up')
    await page.fill('#su-username', person.username)
    await page.fill('#su-email', person.email)
    await page.fill('#su-password', person.password)
    await page.click('#sign-up-form button[type=submit]')
    await page.locator('#verify-banner').waitFor()
    const error = page.locator('#verify-banner-error')
    for (let press = 1; press <= 4 && !(await error.isVisible()); press++) {
      await page.click('#verify-resend')
      await page.locator('#verify-banner-status:not(:empty), #verify-banner-error:not([hidden])').waitFor()
    }
    assert.match(await textOf(page, '#verify-banner-error'), /^Too many verification emails just now\. Please try again in (\d+ minutes?|1 hour)\.$/)
    assert.equal(await textOf(page, '#verify-banner-status'), '', 'no "Sent" beside the refusal')
    await screenshot(page, '11-banner-too-many')
  })

  await t.test('when the verification link is opened in a tab already on the verification page, then it is still used', async (st) => {
    const person = await signUpByApi()
    const link = await inbox.link(person.email, '/verify-email')
    const page = await openPage(st, '/verify-email#token=not-a-real-token')
    await page.getByRole('heading', { name: 'This link cannot be used' }).waitFor()
    // Only the hash changes: no reload, so the page must notice by itself.
    await page.goto(`${origin}${link}`)
    await page.getByRole('heading', { name: 'Email address verified' }).waitFor()
    assert.equal(await activeId(page), 'verify-title')
  })

  await t.test('when the journey is over, then no page asked another origin and nothing broke the CSP', () => {
    assert.ok(urls.size > 0)
    assert.deepEqual([...urls].filter((url) => !url.startsWith(`${origin}/`)), [])
    assert.deepEqual(cspViolations, [])
    assert.deepEqual(pageErrors, [])
  })
})
