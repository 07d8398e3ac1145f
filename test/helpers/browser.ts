import { existsSync } from 'node:fs'
import type { TestContext } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { deferCleanup } from './cleanup.js'

/** Debian's Chromium (.ci/run installs it); `npx playwright install` cannot work on these machines. */
const CHROMIUM = '/usr/bin/chromium'
// Without the background-networking flags Chromium's own connections are refused, many at a time, by the closed
// network these tests run in.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]

/** The `skip` of a browser test: a reason when Chromium is not installed. */
export const CHROMIUM_SKIP: string | false = existsSync(CHROMIUM) ? false : 'Chromium not installed'

/** Headless Chromium, closed when the test ends. */
export async function launchChromium(t: TestContext): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  deferCleanup(t, () => browser.close())
  return browser
}
