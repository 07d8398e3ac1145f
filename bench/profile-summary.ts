import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most self time, the most
 * inclusive time, and self time grouped by where the code lives (a package, node internals, Portrait).
 * Usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top 25] [--skip 5]
 * --skip leaves out the first seconds (start-up: module loading, migrations, the argon2 warm-up).
 */
interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, skip: { type: 'string', default: '0' } } })
const file = positionals[0]
if (!file) {
  console.error('usage: bench/profile-summary.ts <file.cpuprofile> [--top N] [--skip seconds]')
  process.exit(2)
}
const top = Number(values.top)
const skipMicroseconds = Number(values.skip) * 1e6
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

function where(url: string): string {
  if (url === '') return '(native / V8)'
  const modules = url.lastIndexOf('node_modules/')
  if (modules >= 0) {
    const [scopeOrName, name] = url.slice(modules + 'node_modules/'.length).split('/')
    return scopeOrName?.startsWith('@') ? `${scopeOrName}/${name}` : (scopeOrName ?? url)
  }
  if (url.startsWith('node:')) return 'node core'
  const source = url.indexOf('/src/')
  return source >= 0 ? `portrait ${url.slice(source + 1)}` : url
}

function key(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame
  const file = url.replace(/^.*node_modules\//, '').replace(/^.*\/(src|bench)\//, '$1/')
  return `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim()
}

const self = new Map<string, number>()
const inclusive = new Map<string, number>()
const byPlace = new Map<string, number>()
let total = 0
let idle = 0
let elapsed = 0
for (let index = 0; index < profile.samples.length; index++) {
  const delta = profile.timeDeltas[index] ?? 0
  elapsed += delta
  if (elapsed < skipMicroseconds) continue
  const node = byId.get(profile.samples[index] as number)
  if (!node) continue
  total += delta
  if (node.callFrame.functionName === '(idle)') idle += delta
  const name = key(node)
  self.set(name, (self.get(name) ?? 0) + delta)
  const place = ['(garbage collector)', '(program)', '(idle)'].includes(node.callFrame.functionName) ? node.callFrame.functionName : where(node.callFrame.url)
  byPlace.set(place, (byPlace.get(place) ?? 0) + delta)
  // Each function once per sample, however deep it recurses.
  const seen = new Set<string>()
  for (let current: ProfileNode | undefined = node; current; current = byId.get(parent.get(current.id) ?? -1)) {
    const frame = key(current)
    if (seen.has(frame)) continue
    seen.add(frame)
    inclusive.set(frame, (inclusive.get(frame) ?? 0) + delta)
  }
}

const busy = total - idle
const share = (time: number) => `${((time / busy) * 100).toFixed(1).padStart(5)} %`
const list = (title: string, entries: Map<string, number>, count: number) => {
  console.log(`\n${title}`)
  for (const [name, time] of [...entries].filter(([name]) => !name.startsWith('(idle)') && !name.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, count)) {
    console.log(`  ${share(time)}  ${(time / 1000).toFixed(0).padStart(6)} ms  ${name}`)
  }
}

console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (shares below are of the busy time)`)
list('Self time by place', byPlace, 20)
list('Self time by function', self, top)
list('Inclusive time by function', inclusive, top)
