#!/usr/bin/env node
// Compiles src/ to plain JavaScript for `npm start`. Running the sources through tsx instead costs a loader
// thread and its caches: about 37 MB more resident memory for the life of the server. esbuild only strips
// types (tsc checks them in `npm run lint`).
//
// `npm start` runs this before every start, and other servers may be running from the same checkout, so a
// build never touches files a server may be using: each build goes into dist/builds/<hash of its inputs>/
// (made under a temporary name and renamed into place, so it is complete or absent), and dist/current, the
// symlink `npm start` runs through, is switched to it by renaming a new symlink over it (atomic). Node
// resolves the symlink when a server starts, so a running server keeps reading its own build. Unchanged
// sources reuse their build; the few most recently used builds are kept, older ones removed.
//
// With a directory as the first argument it builds into that directory instead (replacing it), as tests do.
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, version } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const source = join(root, 'src')
const publicDir = join('web', 'public')
// Builds kept besides the current one, so that servers started from recent sources keep their files.
const KEEP_BUILDS = 5
const COMPLETE = '.complete'

const files = readdirSync(source, { recursive: true, encoding: 'utf8' }).sort()
const entryPoints = files
  .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.startsWith(publicDir))
  .map((file) => join(source, file))

async function compile(outdir) {
  await build({ entryPoints, outdir, outbase: source, format: 'esm', platform: 'node', target: 'node20', logLevel: 'warning' })
  // The web page is served from next to the compiled web routes, as it is from next to their source.
  cpSync(join(source, publicDir), join(outdir, publicDir), { recursive: true })
}

if (process.argv[2] !== undefined) {
  const outdir = resolve(process.argv[2])
  rmSync(outdir, { recursive: true, force: true })
  await compile(outdir)
  console.log(`built ${entryPoints.length} modules into ${relative(process.cwd(), outdir) || '.'}`)
  process.exit(0)
}

const dist = join(root, 'dist')
const builds = join(dist, 'builds')
mkdirSync(builds, { recursive: true })

// Everything the output depends on: the sources, this script and the compiler's version.
const hash = createHash('sha256').update(version).update(readFileSync(fileURLToPath(import.meta.url)))
for (const file of files) {
  const path = join(source, file)
  if (statSync(path).isFile()) hash.update(file).update('\0').update(readFileSync(path)).update('\0')
}
const id = hash.digest('hex').slice(0, 16)
const target = join(builds, id)

let built = false
if (!existsSync(join(target, COMPLETE))) {
  const temporary = join(builds, `.tmp-${process.pid}-${Date.now()}`)
  await compile(temporary)
  writeFileSync(join(temporary, COMPLETE), '')
  try {
    renameSync(temporary, target)
    built = true
  } catch (error) {
    // Another start built the same sources at the same time: use theirs.
    rmSync(temporary, { recursive: true, force: true })
    if (!existsSync(join(target, COMPLETE))) throw error
  }
}
const now = new Date()
utimesSync(target, now, now)

// rename(2) replaces the old symlink in one step: a start at any moment finds either build, never none.
const link = join(dist, `.current-${process.pid}-${Date.now()}`)
symlinkSync(join('builds', id), link)
renameSync(link, join(dist, 'current'))

// Older builds, least recently used first past the newest few; temporary ones left by a crashed build.
const hour = 60 * 60 * 1000
const entries = readdirSync(builds).map((name) => ({ name, mtime: statSync(join(builds, name)).mtimeMs }))
const stale = [
  ...entries.filter((entry) => entry.name.startsWith('.tmp-') && now.getTime() - entry.mtime > hour),
  ...entries
    .filter((entry) => !entry.name.startsWith('.') && entry.name !== id)
    .sort((a, b) => b.mtime - a.mtime)
    .slice(KEEP_BUILDS),
]
for (const entry of stale) rmSync(join(builds, entry.name), { recursive: true, force: true })

console.log(`${built ? 'built' : 'unchanged:'} ${entryPoints.length} modules in ${relative(process.cwd(), target) || '.'} (dist/current)`)
