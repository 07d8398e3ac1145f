import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { TestContext } from 'node:test'
import { TEST_JWT_SECRET } from './app.js'
import { deferCleanup } from './cleanup.js'

const ROOT = resolve(import.meta.dirname, '../..')
const LISTENING = /Server listening at (http:\/\/[^\s"]+)/

export interface ServerProcess {
  /** Base URL of the bound socket, e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string
  /** SIGTERM (graceful shutdown), then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>
  /** SIGKILL at once: a crash. */
  kill(): Promise<void>
  /** Everything the process wrote so far, for failure messages. */
  output(): string
  child: ChildProcess
}

export interface StartServerOptions {
  /** Environment on top of the defaults (PORT=0, a temp SQLite file and media dir, the test JWT secret, cheap logs). */
  env?: Record<string, string>
  /** Wait until GET /api/health answers 200 (default); false returns once the socket is bound. */
  waitForHealthy?: boolean
  timeoutMs?: number
  /** What node runs; default the TypeScript sources through tsx. */
  nodeArgs?: string[]
}

const running = new Set<ChildProcess>()
// A test run that dies must not leave servers behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * Starts `node --import tsx src/server.ts` (or `options.nodeArgs`) as its own process on a free port (PORT=0; the bound address is
 * read from the "Server listening at" log line) and stops it when the test ends.
 */
export async function startServer(t: TestContext, options: StartServerOptions = {}): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-proc-'))
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? dir,
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dir,
    DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`,
    MEDIA_ROOT: join(dir, 'media'),
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: 'info',
    ...options.env,
  }
  const child = spawn(process.execPath, options.nodeArgs ?? ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let output = ''
  const exited = once(child, 'exit')
  const onData = (chunk: Buffer) => {
    // Keep the tail only: a long test must not grow memory without bound.
    output = (output + chunk.toString()).slice(-64 * 1024)
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)

  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  const stop = () => stopWith('SIGTERM')
  const kill = () => stopWith('SIGKILL')
  deferCleanup(t, async () => {
    await stop()
    running.delete(child)
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
  })

  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  const url = await new Promise<string>((resolveUrl, reject) => {
    const check = () => {
      const match = LISTENING.exec(output)
      if (match) return finish(() => resolveUrl(match[1] as string))
      if (child.exitCode !== null || child.signalCode !== null) return finish(() => reject(new Error(`server exited early:\n${output}`)))
      if (Date.now() > deadline) return finish(() => reject(new Error(`server did not start in time:\n${output}`)))
    }
    const timer = setInterval(check, 50)
    const finish = (settle: () => void) => {
      clearInterval(timer)
      settle()
    }
  })
  if (options.waitForHealthy !== false) await waitForHealth(url, 200, deadline, () => output)
  return { url, stop, kill, output: () => output, child }
}

/** Polls /api/health until it answers `status`; fails with the last answer after the deadline. */
export async function waitForHealth(url: string, status: number, deadline: number, output = () => ''): Promise<unknown> {
  let last = ''
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(5000) })
      const body = await response.json()
      if (response.status === status) return body
      last = `${response.status} ${JSON.stringify(body)}`
    } catch (error) {
      last = String(error)
    }
    await new Promise((wait) => setTimeout(wait, 100))
  }
  throw new Error(`/api/health never answered ${status} (last: ${last})\n${output()}`)
}

/** One JSON request to a server process; the timeout only turns a hang into a failure, nothing asserts on speed. */
export async function callServer(server: ServerProcess, method: string, path: string, body?: unknown, access?: string) {
  const headers: Record<string, string> = access ? { authorization: `Bearer ${access}` } : {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  })
  return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, any> }
}
