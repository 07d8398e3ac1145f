import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { TestContext } from 'node:test'
import { promisify } from 'node:util'
import { TEST_JWT_SECRET } from '../helpers/app.js'
import { deferCleanup, removeWhenDone } from '../helpers/cleanup.js'

// Why not test/helpers/processes.ts: the hardening suite restarts a server on the SAME data directory
// (crash safety), runs the CLI against it before the server starts, and reads the server's RSS, so the
// data directory must outlive one process. Same model otherwise: PORT=0, address from the log line.

export const ROOT = resolve(import.meta.dirname, '../..')
const LISTENING = /Server listening at (http:\/\/[^\s"]+)/

/** A data directory (SQLite file, media, JWT secret) that outlives server restarts; removed when the test ends. */
export interface DataDir {
  dir: string
  mediaRoot: string
  avatarsDir: string
  env: Record<string, string>
}

export function dataDir(t: TestContext): DataDir {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-hardening-'))
  removeWhenDone(t, dir)
  const mediaRoot = join(dir, 'media')
  return {
    dir,
    mediaRoot,
    avatarsDir: join(mediaRoot, 'avatars'),
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? dir,
      DATA_DIR: dir,
      DATABASE_URL: `sqlite:${join(dir, 'portrait.db')}`,
      MEDIA_ROOT: mediaRoot,
      JWT_SECRET: TEST_JWT_SECRET,
    },
  }
}

export interface Server {
  url: string
  pid: number
  child: ChildProcess
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>
  output(): string
  /** SIGTERM and wait for the exit (SIGKILL after 15 s). */
  stop(): Promise<number | string>
  /** SIGKILL: a crash. */
  kill(): Promise<number | string>
  /** Resident set size in bytes, from /proc. */
  rssBytes(): number
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** Starts `node --import tsx src/server.ts` on `data` (a fresh one by default), on a free port; stopped when the test ends. */
export async function startServer(t: TestContext, options: { data?: DataDir; env?: Record<string, string> } = {}): Promise<Server> {
  const data = options.data ?? dataDir(t)
  const env = { ...data.env, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...options.env }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  let output = ''
  const keep = (chunk: Buffer) => {
    // Only the tail: a soak writes a log line per request.
    output = (output + chunk.toString()).slice(-256 * 1024)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = once(child, 'exit').then(([code, signal]) => {
    running.delete(child)
    return (code ?? signal) as number | string
  })
  const signalAndWait = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const result = await exited
    clearTimeout(timer)
    return result
  }
  deferCleanup(t, () => signalAndWait('SIGKILL'))

  const url = await new Promise<string>((resolveUrl, reject) => {
    const deadline = Date.now() + 60_000
    const timer = setInterval(() => {
      const match = LISTENING.exec(output)
      const fail = (why: string) => {
        clearInterval(timer)
        reject(new Error(`${why}:\n${output}`))
      }
      if (match) {
        clearInterval(timer)
        resolveUrl(match[1] as string)
      } else if (child.exitCode !== null || child.signalCode !== null) fail('the server exited before listening')
      else if (Date.now() > deadline) fail('the server did not start within 60 s')
    }, 25)
  })
  return {
    url,
    pid: child.pid as number,
    child,
    exited,
    output: () => output,
    stop: () => signalAndWait('SIGTERM'),
    kill: () => signalAndWait('SIGKILL'),
    rssBytes: () => rssOf(child.pid as number),
  }
}

/** VmRSS of a process in bytes. */
export function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!match) throw new Error(`no VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

/** `portrait create-superuser` against the data directory, before (or while) a server runs on it. */
export async function createSuperuser(data: DataDir, username: string, password: string): Promise<void> {
  await promisify(execFile)(process.execPath, ['bin/portrait.js', 'create-superuser', '--username', username, '--email', `${username}@example.com`], {
    cwd: ROOT,
    env: { ...data.env, PORTRAIT_PASSWORD: password },
  })
}

/** Everything in MEDIA_ROOT/avatars, sorted (temporary files included). */
export function avatarFiles(data: DataDir): string[] {
  try {
    return readdirSync(data.avatarsDir).sort()
  } catch {
    return []
  }
}

/** Every file anywhere under the data directory, as relative paths. */
export function allFiles(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name).slice(root.length + 1))
    .sort()
}
