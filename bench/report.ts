import type { LoadResult } from './load.js'

/** One line of the table: a scenario at one connection count, in one pass. */
export interface Row {
  pass: number
  scenario: string
  /** What the row is compared with: the ceiling row of the same pass and connection count. */
  kind: 'ceiling' | 'me' | 'patch' | 'upload' | 'sign-in' | 'me-during-sign-in' | 'sign-in-background' | 'sharp'
  connections: number
  result: LoadResult
  ofCeiling?: number
  /** The same ratio from server CPU time per request: steadier when other processes share the machine. */
  ofCeilingByCpu?: number
  rssStartMb?: number
  rssEndMb?: number
  note?: string
}

export interface TargetCheck {
  target: string
  measured: string
  met: boolean
}

const fixed = (value: number | undefined, digits: number) => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(digits))
const percent = (value: number | undefined) => (value === undefined ? '—' : `${(value * 100).toFixed(1)} %`)

/** Ratios to the ceiling of the same pass and connection count, and each row's remark. */
export function annotate(rows: Row[]): void {
  for (const row of rows) {
    const ceiling = rows.find((other) => other.kind === 'ceiling' && other.pass === row.pass && other.connections === row.connections)
    if (ceiling && row.kind !== 'ceiling' && row.kind !== 'sharp') row.ofCeiling = row.result.requestsPerSecond / ceiling.result.requestsPerSecond
    if (row.kind === 'ceiling') row.ofCeiling = 1
    const ceilingCpu = ceiling?.result.cpuUsPerRequest
    if (ceilingCpu !== undefined && row.result.cpuUsPerRequest !== undefined && row.kind !== 'sharp') row.ofCeilingByCpu = ceilingCpu / row.result.cpuUsPerRequest
    const refused = Object.entries(row.result.statusCodes)
      .filter(([code]) => !code.startsWith('2'))
      .map(([code, count]) => `${code}×${count}`)
    if (row.result.errors > 0) refused.push(`socket errors×${row.result.errors}`)
    if (refused.length > 0) row.note = [row.note, refused.join(' ')].filter(Boolean).join('; ')
  }
  for (const row of rows.filter((candidate) => candidate.kind === 'upload')) {
    const sharp = rows.find((other) => other.kind === 'sharp' && other.pass === row.pass)
    if (sharp) {
      const share = row.result.requestsPerSecond / sharp.result.requestsPerSecond
      const uploadCpu = row.result.cpuUsPerRequest
      const sharpCpu = sharp.result.cpuUsPerRequest
      const byCpu = uploadCpu && sharpCpu ? ` (by CPU: ${((sharpCpu / uploadCpu) * 100).toFixed(1)} %)` : ''
      row.note = [`${(share * 100).toFixed(1)} % of the bare sharp pipeline${byCpu}`, row.note].filter(Boolean).join('; ')
    }
  }
}

export function formatTable(rows: Row[]): string {
  const passes = new Set(rows.map((row) => row.pass)).size
  const header = ['scenario', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'of ceiling', 'CPU µs/req', 'by CPU', 'RSS MB start→end', 'note']
  const lines = rows.map((row) => [
    passes > 1 ? `[${row.pass}] ${row.scenario}` : row.scenario,
    String(row.connections),
    fixed(row.result.requestsPerSecond, 0),
    fixed(row.result.p50Ms, 2),
    fixed(row.result.p99Ms, 2),
    String(row.result.non2xx),
    percent(row.ofCeiling),
    fixed(row.result.cpuUsPerRequest, 0),
    percent(row.ofCeilingByCpu),
    row.rssStartMb === undefined ? '—' : `${fixed(row.rssStartMb, 0)}→${fixed(row.rssEndMb, 0)}`,
    row.note ?? '',
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => (line[column] as string).length)))
  const render = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column] as number)).join(' | ')} |`
  return [render(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...lines.map(render)].join('\n')
}

/** The targets, judged on the last pass (and on the RSS of every pass). */
export function checkTargets(rows: Row[], options: { database: 'sqlite' | 'postgres'; serverRssEndMb: number[] }): TargetCheck[] {
  const last = Math.max(...rows.map((row) => row.pass))
  const find = (kind: Row['kind'], connections = 32) => rows.find((row) => row.pass === last && row.kind === kind && row.connections === connections)
  const checks: TargetCheck[] = []
  const me = find('me')
  if (me?.ofCeiling !== undefined) {
    const threshold = options.database === 'sqlite' ? 0.4 : 0.15
    checks.push({
      target: `GET /api/users/me, ${options.database}: ≥ ${threshold * 100} % of the ceiling`,
      measured: `${percent(me.ofCeiling)} (by CPU time: ${percent(me.ofCeilingByCpu)})`,
      met: me.ofCeiling >= threshold,
    })
  }
  const patch = find('patch')
  if (patch?.ofCeiling !== undefined && options.database === 'sqlite') {
    checks.push({ target: 'JSON PATCH, sqlite: ≥ 15 % of the ceiling', measured: `${percent(patch.ofCeiling)} (by CPU time: ${percent(patch.ofCeilingByCpu)})`, met: patch.ofCeiling >= 0.15 })
  }
  const upload = find('upload')
  const sharp = rows.find((row) => row.pass === last && row.kind === 'sharp')
  if (upload) {
    const perSecond = upload.result.requestsPerSecond
    checks.push({ target: 'avatar upload: ≥ 80 per second on one core', measured: `${fixed(perSecond, 1)}/s`, met: perSecond >= 80 })
    if (sharp) {
      const share = perSecond / sharp.result.requestsPerSecond
      const uploadCpu = upload.result.cpuUsPerRequest
      const sharpCpu = sharp.result.cpuUsPerRequest
      const byCpu = uploadCpu && sharpCpu ? ` (by CPU time: ${percent(sharpCpu / uploadCpu)})` : ''
      checks.push({ target: 'avatar upload: ≥ 85 % of the bare sharp pipeline', measured: `${percent(share)}${byCpu}`, met: share >= 0.85 })
    }
  }
  const signIn = find('sign-in')
  if (signIn) {
    const perSecond = signIn.result.requestsPerSecond
    checks.push({ target: 'sign-in (argon2id, OWASP): ≥ 30 per second on one core', measured: `${fixed(perSecond, 1)}/s`, met: perSecond >= 30 })
  }
  const meDuringSignIn = find('me-during-sign-in')
  if (meDuringSignIn) {
    const p99 = meDuringSignIn.result.p99Ms
    checks.push({ target: 'GET /me during flat-out sign-ins: p99 < 20 ms', measured: `${fixed(p99, 2)} ms`, met: p99 < 20 })
  }
  const rss = options.serverRssEndMb
  if (rss.length > 0) {
    const end = rss[rss.length - 1] as number
    checks.push({ target: 'server RSS after the whole run ≤ 200 MB', measured: `${fixed(end, 0)} MB`, met: end <= 200 })
  }
  if (rss.length > 1) {
    const growth = (rss[rss.length - 1] as number) - (rss[rss.length - 2] as number)
    // Allocator noise is a few MB; a leak grows with the request count (hundreds of thousands per pass).
    checks.push({ target: 'no RSS growth between two identical passes (≤ 5 MB)', measured: `${growth >= 0 ? '+' : ''}${fixed(growth, 1)} MB`, met: growth <= 5 })
  }
  return checks
}

export function formatTargets(checks: TargetCheck[]): string {
  return checks.map((check) => `${check.met ? 'met   ' : 'MISSED'}  ${check.target}: ${check.measured}`).join('\n')
}
