// Prints the OpenAPI document the app serves at /api/openapi.json, built from the sources with a throwaway
// data directory: `node --import tsx scripts/openapi.mts [out.json]`. `--lint` also runs Redocly on it
// (redocly.yaml says which rules are off and why); this is part of `npm run lint`.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'

const args = process.argv.slice(2)
const lint = args.includes('--lint')
const out = args.find((arg) => !arg.startsWith('--'))
const dir = mkdtempSync(join(tmpdir(), 'portrait-openapi-'))
let status = 0
try {
  const config = { ...loadConfig({}), dataDir: dir, databaseUrl: `sqlite:${join(dir, 'portrait.db')}`, mediaRoot: join(dir, 'media'), logLevel: 'silent' as const }
  const app = await buildApp(config)
  await app.ready()
  const document = JSON.stringify(app.swagger(), null, 2)
  await app.close()
  const file = out ?? join(dir, 'openapi.json')
  writeFileSync(file, document)
  if (lint) {
    const redocly = join(import.meta.dirname, '../node_modules/.bin/redocly')
    const result = spawnSync(redocly, ['lint', '--config', join(import.meta.dirname, '../redocly.yaml'), '--format', 'stylish', file], { stdio: 'inherit', env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } })
    status = result.status ?? 1
  } else if (!out) {
    process.stdout.write(`${document}\n`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
process.exit(status)
