import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { TEST_JWT_SECRET } from './helpers/app.js'
import { deferCleanup, removeWhenDone } from './helpers/cleanup.js'
import { startServer } from './helpers/processes.js'
import { freePort } from './helpers/throwaway-servers.js'

const ROOT = join(import.meta.dirname, '..')

test('when the sources are built as npm start builds them, then the compiled server serves the API and the web page', async (t) => {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.equal(scripts.prestart, 'node scripts/build.mjs')
  assert.match(scripts.start ?? '', /\bnode\b.* dist\/current\/server\.js$/)

  // Inside the repository, so that the compiled modules resolve node_modules as dist/ does.
  mkdirSync(join(ROOT, 'node_modules', '.cache'), { recursive: true })
  const out = mkdtempSync(join(ROOT, 'node_modules', '.cache', 'portrait-build-'))
  removeWhenDone(t, out)
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), out], { encoding: 'utf8' })
  assert.equal(built.status, 0, built.stderr)

  // As a fresh `npm start` runs: no JWT_SECRET.
  const { url } = await startServer(t, { nodeArgs: [join(out, 'server.js')], env: { JWT_SECRET: '' } })
  const page = await fetch(`${url}/`)
  assert.equal(page.status, 200)
  assert.match(await page.text(), /<script type="module" src="\/?app\.js"/)
  const script = await fetch(`${url}/app.js`)
  assert.equal(script.status, 200)
  assert.match(script.headers.get('content-type') ?? '', /javascript/)
  const docs = await fetch(`${url}/api/openapi.json`)
  assert.equal(docs.status, 200)
  // Its tokens are EdDSA, under the key the JWKS publishes.
  const signUp = await fetch(`${url}/api/auth/sign-up`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'builder', email: 'builder@example.com', password: 'correct-Horse-battery-9' }),
  })
  assert.equal(signUp.status, 201)
  const { access } = (await signUp.json()) as { access: string }
  const header = JSON.parse(Buffer.from(access.split('.')[0] as string, 'base64url').toString())
  assert.equal(header.alg, 'EdDSA')
  const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }
  assert.deepEqual(jwks.keys.map((key) => key.kid), [header.kid])
})

/** `npm start` in `cwd` as its own process group (npm → sh → node), stopped with the group when the test ends. */
function npmStart(t: TestContext, cwd: string, env: Record<string, string>) {
  const child = spawn('npm', ['start'], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? cwd, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk })
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)))
  deferCleanup(t, async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(-(child.pid as number), 'SIGTERM')
      const timer = setTimeout(() => process.kill(-(child.pid as number), 'SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
  })
  const listening = async (deadline = Date.now() + 60_000): Promise<string> => {
    while (Date.now() < deadline) {
      const match = /Server listening at (http:\/\/[^\s"]+)/.exec(output)
      if (match) return match[1] as string
      if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}):\n${output}`)
      await new Promise((wait) => setTimeout(wait, 50))
    }
    throw new Error(`npm start did not come up:\n${output}`)
  }
  return { listening, exited, output: () => output }
}

async function servesThePage(url: string): Promise<void> {
  for (const path of ['/', '/app.js', '/styles.css']) {
    const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) })
    assert.equal(response.status, 200, `${url}${path}`)
    await response.arrayBuffer()
  }
}

test('when two npm start run at once in one checkout and a third exits at once, then both servers come up and keep serving the page', { timeout: 180_000 }, async (t) => {
  // A copy of the checkout (what npm start reads), with the installed packages linked in.
  const copy = mkdtempSync(join(tmpdir(), 'portrait-checkout-'))
  removeWhenDone(t, copy)
  for (const entry of ['package.json', 'scripts', 'src']) cpSync(join(ROOT, entry), join(copy, entry), { recursive: true })
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'))
  const instance = (name: string, port: string) => ({
    PORT: port,
    HOST: '127.0.0.1',
    DATA_DIR: join(copy, name),
    DATABASE_URL: `sqlite:${join(copy, name, 'portrait.db')}`,
    MEDIA_ROOT: join(copy, name, 'media'),
    JWT_SECRET: TEST_JWT_SECRET,
  })
  const [portA, portB] = await Promise.all([freePort(), freePort()])
  const first = npmStart(t, copy, instance('a', String(portA)))
  const second = npmStart(t, copy, instance('b', String(portB)))
  const urls = await Promise.all([first.listening(), second.listening()])
  for (const url of urls) await servesThePage(url)

  // A start that fails at once (after its build), with the sources unchanged and then changed.
  const failing = npmStart(t, copy, instance('c', 'abc'))
  assert.notEqual(await failing.exited, 0)
  assert.match(failing.output(), /PORT="abc" is invalid/)
  for (const url of urls) await servesThePage(url)
  writeFileSync(join(copy, 'src/web/public/styles.css'), `${readFileSync(join(copy, 'src/web/public/styles.css'), 'utf8')}\n/* changed */\n`)
  const rebuilt = npmStart(t, copy, instance('d', 'abc'))
  assert.notEqual(await rebuilt.exited, 0)
  for (const url of urls) await servesThePage(url)
  const styles = await fetch(`${urls[0]}/styles.css`)
  assert.doesNotMatch(await styles.text(), /changed/, 'a running server keeps its own build')
})
