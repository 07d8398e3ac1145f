import type { Config } from './config.js'
import { isDatabaseUnavailable } from './db/unavailable.js'

type StartupConfig = Pick<Config, 'host' | 'port' | 'databaseUrl'>

interface ErrorFields {
  code?: unknown
  message?: unknown
  syscall?: unknown
  path?: unknown
}

/**
 * One line saying what is wrong and what to do, for an error that stops the server from starting (opening the
 * database, migrating, binding the socket); undefined for a fault of ours, which keeps its stack. Never
 * includes the database password.
 */
export function describeStartupError(error: unknown, config: StartupConfig): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const { code, message, syscall, path } = error as ErrorFields
  const text = typeof message === 'string' ? message.split('\n')[0] : ''
  if (syscall === 'listen' || syscall === 'getaddrinfo') return listenProblem(String(code), config)
  if (config.databaseUrl.startsWith('sqlite:')) {
    const file = config.databaseUrl.slice('sqlite:'.length)
    if (typeof code === 'string' && code.startsWith('SQLITE_')) {
      return `the SQLite file ${file} cannot be opened or written (${code}: ${text}); check that it is a writable file in a writable directory, or set DATABASE_URL=sqlite:<path>`
    }
    if (typeof path === 'string' && typeof syscall === 'string') {
      return `cannot create the directory for the SQLite file ${file} (${syscall} ${path}: ${code}); set DATABASE_URL=sqlite:<path> to a place that can be written`
    }
    return undefined
  }
  const target = postgresTarget(config.databaseUrl)
  if (code === '3D000') return `the PostgreSQL database ${target.database} does not exist (3D000); create it (createdb ${target.database}) or fix DATABASE_URL`
  if (code === '28000' || code === '28P01') {
    return `PostgreSQL refused the role ${target.user} (${code}: ${text}); check the user and password in DATABASE_URL and pg_hba.conf`
  }
  if (code === '42501') return `the role ${target.user} may not use the database ${target.database} (42501: ${text}); grant it the rights or fix DATABASE_URL`
  if (isDatabaseUnavailable(error)) {
    return `the database does not answer (${typeof code === 'string' ? code : text}); is PostgreSQL up at ${target.address} and DATABASE_URL right?`
  }
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && code.startsWith('3')) return `PostgreSQL refused the connection (${code}: ${text}); check DATABASE_URL`
  if (typeof path === 'string' && typeof syscall === 'string') return `cannot ${syscall} ${path} (${code}); check DATA_DIR and MEDIA_ROOT`
  return undefined
}

function listenProblem(code: string, { host, port }: StartupConfig): string {
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`
  switch (code) {
    case 'EADDRINUSE':
      return `${address} is already in use (EADDRINUSE); stop the other server or set PORT to a free port`
    case 'EADDRNOTAVAIL':
      return `HOST=${host} is not an address of this machine (EADDRNOTAVAIL); use 127.0.0.1, 0.0.0.0 or one of its addresses`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return `HOST=${host} does not resolve (${code}); use an address such as 127.0.0.1 or 0.0.0.0, or a name this machine resolves`
    case 'EACCES':
      return `${address} needs privileges this process lacks (EACCES); use a PORT above 1023`
    default:
      return `cannot listen on ${address} (${code}); check HOST and PORT`
  }
}

/** Who, where and which database, without the password. */
function postgresTarget(databaseUrl: string): { user: string; database: string; address: string } {
  try {
    const url = new URL(databaseUrl)
    return {
      user: JSON.stringify(decodeURIComponent(url.username) || process.env.PGUSER || 'postgres'),
      database: JSON.stringify(decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username) || 'postgres'),
      address: url.host || 'localhost',
    }
  } catch {
    return { user: 'in DATABASE_URL', database: 'in DATABASE_URL', address: 'DATABASE_URL' }
  }
}
