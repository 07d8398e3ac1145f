import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { deferCleanup } from './cleanup.js'

// Servers of the test's own, on ports of its own: stopping them never touches the machine's shared ones.

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, command))) return join(dir, command)
  return undefined
}

function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  for (const version of versions) if (existsSync(join(root, version, 'bin', 'initdb'))) return join(root, version, 'bin')
  const initdb = which('initdb')
  return initdb && which('pg_ctl') ? join(initdb, '..') : undefined
}

const REDIS_SERVER = which('redis-server')
const PG_BIN = postgresBinDir()
export const THROWAWAY_REDIS_SKIP: string | false = REDIS_SERVER ? false : 'redis-server is not installed'
export const THROWAWAY_POSTGRES_SKIP: string | false = PG_BIN ? false : 'PostgreSQL server binaries (initdb, pg_ctl) are not installed'

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface ThrowawayServer {
  url: string
  start(): Promise<void>
  stop(): Promise<void>
}

/** A redis-server on a free port that keeps nothing on disk; stopped when the test ends. */
export async function throwawayRedis(t: TestContext): Promise<ThrowawayServer> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    await exited
  }
  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
    child = spawn(REDIS_SERVER as string, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const deadline = Date.now() + 10_000
    while (!output.includes('Ready to accept connections')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${output}`)
      await new Promise((wait) => setTimeout(wait, 20))
    }
  }
  deferCleanup(t, stop)
  await start()
  return { url: `redis://127.0.0.1:${port}`, start, stop }
}

/** A PostgreSQL cluster of its own (initdb in a temp dir, trust auth) on a free port; removed when the test ends. */
export async function throwawayPostgres(t: TestContext): Promise<ThrowawayServer> {
  const dir = mkdtempSync(join(tmpdir(), 'portrait-pg-'))
  const data = join(dir, 'data')
  const port = await freePort()
  // initdb refuses to run as root: run the cluster as the postgres user then.
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres']).toString().trim()))
    chownSync(dir, uid as number, gid as number)
  }
  const run = (command: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN as string, command), ...args]] : [join(PG_BIN as string, command), args]
    execFileSync(file as string, argv as string[], { stdio: 'pipe', cwd: dir })
  }
  deferCleanup(t, () => {
    try {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
    } catch {}
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 })
  })
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`
  const start = async () => run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start'])
  const stop = async () => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
  await start()
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, start, stop }
}
