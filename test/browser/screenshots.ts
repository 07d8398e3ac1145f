/**
 * Regenerates the README's screenshots of the profile screen at phone and desktop widths:
 *   node --import tsx test/browser/screenshots.ts [output-dir]   (default docs/screenshots)
 * Not a test; it runs the real app on a temporary data directory and needs /usr/bin/chromium.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Page } from 'playwright-core'
import sharp from 'sharp'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { CHEAP_HASH, GOOD_PASSWORD } from '../helpers/app.js'

const outputDir = process.argv[2] ?? 'docs/screenshots'
const SIZES = [
  { width: 375, height: 812, deviceScaleFactor: 2, fullPage: false },
  { width: 1280, height: 860, deviceScaleFactor: 1, fullPage: true },
]

// A drawn portrait, so the screenshot shows a real photo without shipping one.
const PORTRAIT_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600">
  <defs><linearGradient id="sky" x1="0" y1="0" x2="1" y2="1">
    <stop offset="0" stop-color="#c7d2fe"/><stop offset="1" stop-color="#818cf8"/></linearGradient></defs>
  <rect width="600" height="600" fill="url(#sky)"/>
  <circle cx="300" cy="215" r="118" fill="#3f2a1d"/>
  <rect x="182" y="215" width="236" height="150" fill="#3f2a1d"/>
  <circle cx="300" cy="245" r="92" fill="#f5d0b5"/>
  <path d="M208 215c10-55 50-90 92-90s82 35 92 90c-30-30-60-42-92-42s-62 12-92 42z" fill="#3f2a1d"/>
  <path d="M80 600c25-150 110-225 220-225s195 75 220 225z" fill="#312e81"/>
</svg>`

/** Signs Ada up and fills in every field and the photo, through the page as a person would. */
async function fillInProfile(page: Page, photo: Buffer): Promise<void> {
  await page.click('#tab-sign-up')
  await page.fill('#su-username', 'ada')
  await page.fill('#su-email', 'ada@example.com')
  await page.fill('#su-password', GOOD_PASSWORD)
  await page.click('#sign-up-form button[type=submit]')
  await page.locator('#profile-view').waitFor()
  await page.fill('#pf-first-name', 'Ada')
  await page.fill('#pf-last-name', 'Lovelace')
  await page.fill('#pf-number-phone', '+442079460')
  await page.click('#profile-form button[type=submit]')
  await page.getByText('Profile saved.').waitFor()
  await page.locator('#avatar-file').setInputFiles({ name: 'ada.jpg', mimeType: 'image/jpeg', buffer: photo })
  await page.click('#avatar-save')
  await page.getByText('Photo saved.').waitFor()
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portrait-screenshots-'))
  const app = await buildApp({
    ...loadConfig({}),
    dataDir,
    databaseUrl: `sqlite:${join(dataDir, 'portrait.db')}`,
    mediaRoot: join(dataDir, 'media'),
    passwordHashCost: CHEAP_HASH,
    logLevel: 'silent',
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] })
  const photo = await sharp(Buffer.from(PORTRAIT_SVG)).jpeg({ quality: 90 }).toBuffer()
  mkdirSync(outputDir, { recursive: true })

  try {
    for (const [index, size] of SIZES.entries()) {
      const context = await browser.newContext({ viewport: { width: size.width, height: size.height }, deviceScaleFactor: size.deviceScaleFactor })
      const page = await context.newPage()
      await page.goto(origin)
      if (index === 0) {
        await fillInProfile(page, photo)
      } else {
        await page.fill('#si-login', 'ada')
        await page.fill('#si-password', GOOD_PASSWORD)
        await page.click('#sign-in-form button[type=submit]')
        await page.locator('#profile-view').waitFor()
      }
      // A reload shows the screen as a person returning to it sees it: no transient messages.
      await page.reload()
      await page.waitForFunction(() => {
        const image = document.getElementById('avatar-image') as HTMLImageElement
        return !image.hidden && image.complete && image.naturalWidth > 0
      })
      await page.screenshot({ path: join(outputDir, `profile-${size.width}.png`), fullPage: size.fullPage })
      await context.close()
    }
  } finally {
    await browser.close()
    await app.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

await main()
