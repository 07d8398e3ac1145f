import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { buildApp } from '../../src/app.js'
import { testConfig } from '../helpers/app.js'
import { CHROMIUM_SKIP, launchChromium } from '../helpers/browser.js'
import { deferCleanup } from '../helpers/cleanup.js'

// /api/docs under its Content-Security-Policy: the page must still render and work, with nothing blocked.


test('the API docs page, in headless Chromium under its CSP', { skip: CHROMIUM_SKIP }, async (t) => {
  const app = await buildApp(await testConfig(t))
  deferCleanup(t, () => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const browser = await launchChromium(t)
  const context = await browser.newContext()
  context.setDefaultTimeout(30_000)
  const requested: string[] = []
  const problems: string[] = []
  context.on('request', (request) => requested.push(request.url()))
  const page = await context.newPage()
  page.on('pageerror', (error) => problems.push(`page error: ${error}`))
  page.on('console', (message) => {
    if (message.type() === 'error' || /content security policy|refused to/i.test(message.text())) problems.push(`console: ${message.text()}`)
  })
  // Violations of every kind (script, style, img, connect, inline attributes), as the page itself sees them.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`)
    })
  })

  const response = await page.goto(`${origin}/api/docs`)
  assert.equal(response?.status(), 200)
  assert.match(response?.headers()['content-security-policy'] ?? '', /frame-ancestors 'none'/)
  // Swagger UI rendered the document: its title and an operation of ours.
  await page.locator('.swagger-ui .info .title').filter({ hasText: 'Portrait' }).waitFor()
  // Portrait's page (issue 13 item 7): its name, how to get a token and use Authorize, its own mark, and the
  // document it shows is /api/openapi.json.
  assert.equal(await page.title(), 'Portrait API')
  await page.locator('.swagger-ui .info .description', { hasText: 'Authorize' }).waitFor()
  assert.match(await page.locator('.swagger-ui .info .description').textContent() ?? '', /sign-in[\s\S]*access[\s\S]*Authorize/)
  const logo = page.locator('.topbar-wrapper a.link img')
  await logo.waitFor()
  assert.match(String(await logo.getAttribute('src')), /^data:image\/svg\+xml;base64,/)
  assert.equal(await page.locator('.topbar-wrapper a.link svg').count(), 0, 'no Swagger or Fastify logo')
  assert.match(await page.locator('.topbar').textContent() ?? '', /\/api\/openapi\.json/)
  assert.ok(requested.includes(`${origin}/api/openapi.json`), requested.join(' '))
  assert.ok(!requested.some((url) => url.endsWith('/api/docs/json')), 'the UI reads /api/openapi.json, not its own copy')
  const health = page.locator('.opblock-summary-path', { hasText: '/api/health' }).first()
  await health.waitFor()

  // Try it out: Swagger UI calls the API from the page (connect-src).
  await health.click()
  await page.locator('.try-out__btn').first().click()
  await page.locator('.execute').first().click()
  await page.locator('.live-responses-table .response-col_status').filter({ hasText: '200' }).first().waitFor()

  assert.deepEqual(problems, [], 'nothing blocked, no errors')
  const foreign = requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith('data:'))
  assert.deepEqual(foreign, [], 'every request stays on this origin')
})
