import { type ChildProcess, spawn, spawnSync, type StdioOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

/** CPU pinning: the server side on one core, the load generator on another, when the machine allows it. */
export const CPU = { server: '0', load: '1' } as const

const canPin = availableParallelism() >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0

export function pinningDescription(): string {
  return canPin ? `server on CPU ${CPU.server}, load generator on CPU ${CPU.load} (taskset)` : 'not pinned (taskset or a second CPU missing)'
}

/**
 * Every child the benchmark starts, so that an error, Ctrl-C or a normal exit stops all of them.
 * taskset execs its command, so the pid we keep is the pinned process itself.
 */
export class Processes {
  private readonly children = new Set<ChildProcess>()

  constructor() {
    // Last resort: whatever is still running when this process exits is killed.
    process.on('exit', () => this.killAllNow())
  }

  start(command: string, args: string[], options: { cpu?: string; env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {}): ChildProcess {
    const [file, argv] = options.cpu !== undefined && canPin ? ['taskset', ['-c', options.cpu, command, ...args]] : [command, args]
    const child = spawn(file, argv, { env: options.env ?? process.env, stdio: options.stdio ?? ['ignore', 'pipe', 'inherit'] })
    this.children.add(child)
    child.once('exit', () => this.children.delete(child))
    return child
  }

  /** SIGTERM (graceful: the server finishes in-flight requests and writes its CPU profile), SIGKILL after a grace period. */
  async stop(child: ChildProcess, graceMs = 5000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((child) => this.stop(child)))
  }

  private killAllNow(): void {
    for (const child of this.children) child.kill('SIGKILL')
  }
}

/** Resident set size of a process in MB, from /proc (undefined where there is no /proc). */
export function rssMegabytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/**
 * CPU time (user + system, every thread) a process has used so far, in seconds. Unlike requests/s it
 * barely moves when neighbours share the machine, so CPU per request is the steadier comparison.
 */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

// USER_HZ: 100 on every Linux architecture Node supports.
const CLOCK_TICKS_PER_SECOND = 100

/** The whole stdout of a child, parsed as JSON once it exits successfully. */
export function jsonOutput<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    let text = ''
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk
    })
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`${what} failed (${signal ?? `exit code ${code}`})`))
      try {
        resolve(JSON.parse(text) as T)
      } catch (error) {
        reject(new Error(`${what} printed no JSON result`, { cause: error }))
      }
    })
  })
}
