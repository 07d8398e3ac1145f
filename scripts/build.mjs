#!/usr/bin/env node
// Compiles src/ to plain JavaScript in dist/ (or the directory given as the first argument), for `npm start`.
// Running the sources through tsx instead costs a loader thread and its caches: about 37 MB more resident
// memory for the life of the server. esbuild only strips types (tsc checks them in `npm run lint`); it takes
// well under a second, so `prestart` rebuilds every time and dist/ can never be older than src/.
import { cpSync, readdirSync, rmSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const source = join(root, 'src')
const outdir = resolve(process.argv[2] ?? join(root, 'dist'))
const publicDir = join('web', 'public')

const entryPoints = readdirSync(source, { recursive: true, encoding: 'utf8' })
  .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.startsWith(publicDir))
  .map((file) => join(source, file))

rmSync(outdir, { recursive: true, force: true })
await build({ entryPoints, outdir, outbase: source, format: 'esm', platform: 'node', target: 'node20', logLevel: 'warning' })
// The web page is served from next to the compiled web routes, as it is from next to their source.
cpSync(join(source, publicDir), join(outdir, publicDir), { recursive: true })
console.log(`built ${entryPoints.length} modules into ${relative(process.cwd(), outdir) || '.'}`)
