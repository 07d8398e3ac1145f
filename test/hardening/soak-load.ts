/**
 * The soak's load generator, run as its own process so the server under test shares no event loop with it:
 *   node --import tsx test/hardening/soak-load.ts <base url> <seconds>
 * Prints one JSON line `{"event":"warm"}` after the warm-up, and one `{"event":"done",…}` summary at the end.
 */
import { GOOD_PASSWORD } from '../helpers/app.js'
import { Api, multipart, type Session } from './client.js'
import { pngBytes } from './images.js'

const PROFILE_WORKERS = 4
const SIGN_IN_WORKERS = 3
const WARM_UP_ROUNDS = 5

const [url, secondsArg] = process.argv.slice(2)
if (!url || !secondsArg) throw new Error('usage: soak-load.ts <url> <seconds>')
const api = new Api(url)

const byStatus: Record<string, number> = {}
const byOperation: Record<string, number> = {}
let requests = 0
let networkErrors = 0
let meDuringStorm = 0
let stormRunning = false

async function counted<T extends { status: number }>(operation: string, send: () => Promise<T>): Promise<T | undefined> {
  requests++
  byOperation[operation] = (byOperation[operation] ?? 0) + 1
  try {
    const reply = await send()
    byStatus[reply.status] = (byStatus[reply.status] ?? 0) + 1
    return reply
  } catch {
    networkErrors++
    return undefined
  }
}

/** GET /me, PATCH, and now and then an avatar upload, remembering the last PATCH the server acknowledged. */
class ProfileWorker {
  lastAcked?: string
  private step = 0

  constructor(
    readonly name: string,
    readonly session: Session,
  ) {}

  async round(): Promise<void> {
    const { access, user } = this.session
    this.step++
    const me = await counted('me', () => api.me(access))
    if (me?.status === 200 && stormRunning) meDuringStorm++
    const value = `${this.name}-${this.step}`
    const patch = await counted('patch', () => api.call(`/api/users/${user.id}`, { method: 'PATCH', token: access, json: { first_name: value } }))
    if (patch?.status === 200) this.lastAcked = value
    if (this.step % 5 === 0) {
      const image = await pngBytes(32 + (this.step % 64), 32)
      await counted('upload', () => api.call(`/api/users/${user.id}`, { method: 'PUT', token: access, ...multipart([{ name: 'avatar', filename: 'a.png', content: image }]) }))
    }
  }
}

async function signInRound(username: string): Promise<void> {
  await counted('sign-in', () => api.call('/api/auth/sign-in', { method: 'POST', json: { username, password: GOOD_PASSWORD } }))
}

async function main(): Promise<void> {
  const workers: ProfileWorker[] = []
  for (let n = 0; n < PROFILE_WORKERS; n++) workers.push(new ProfileWorker(`p${n}`, await api.signUp(`soak${n}`)))
  await api.signUp('stormer')
  for (let round = 0; round < WARM_UP_ROUNDS; round++) await Promise.all([...workers.map((worker) => worker.round()), signInRound('stormer')])
  console.log(JSON.stringify({ event: 'warm' }))

  const deadline = Date.now() + Number(secondsArg) * 1000
  const until = async (work: () => Promise<void>) => {
    while (Date.now() < deadline) await work()
  }
  stormRunning = true
  await Promise.all([
    ...workers.map((worker) => until(() => worker.round())),
    ...Array.from({ length: SIGN_IN_WORKERS }, () => until(() => signInRound('stormer'))),
  ])
  stormRunning = false

  let lostWrites = 0
  for (const worker of workers) {
    const me = await api.me(worker.session.access)
    if (me.json?.first_name !== worker.lastAcked) lostWrites++
  }
  const fiveXx = Object.entries(byStatus).reduce((sum, [status, count]) => sum + (Number(status) >= 500 ? count : 0), 0)
  console.log(JSON.stringify({ event: 'done', requests, byOperation, byStatus, fiveXx, networkErrors, lostWrites, meDuringStorm, concurrency: PROFILE_WORKERS + SIGN_IN_WORKERS }))
}

await main()
