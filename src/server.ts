import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { describeStartupError } from './startup-errors.js'

// Node 20.12+: a .env file, if present, fills variables the environment does not set.
try {
  process.loadEnvFile()
} catch {}

let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (error) {
  if (!(error instanceof ConfigError)) throw error
  console.error(`portrait: ${error.message}`)
  process.exit(1)
}

// An operator's problem at start (the database, the address) is told in one line; a fault of ours keeps its stack.
function startupFailed(error: unknown): never {
  const problem = describeStartupError(error, config)
  if (problem === undefined) throw error
  console.error(`portrait: ${problem}`)
  process.exit(1)
}

const app = await buildApp(config).catch(startupFailed)
let closing = false
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, async () => {
    if (closing) return
    closing = true
    app.log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutting down: finishing in-flight requests')
    // A hung dependency must not hold the process past the orchestrator's grace period (SIGKILL, no log).
    setTimeout(() => {
      app.log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown deadline passed: exiting with requests unfinished')
      process.exit(1)
    }, config.shutdownTimeoutMs)
    // close() closes the connections idle at that moment; one that goes idle later (its last request answered)
    // would hold it for the keep-alive timeout, so those are closed as they go idle.
    setInterval(() => app.server.closeIdleConnections(), 100).unref()
    // close() stops accepting connections and resolves once in-flight requests have finished.
    await app.close()
    process.exit(0)
  })
}
await app.listen({ port: config.port, host: config.host }).catch(startupFailed)
