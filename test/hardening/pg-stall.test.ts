import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { test } from 'node:test'
import { sql } from 'kysely'
import { loadConfig } from '../../src/config.js'
import { createDb } from '../../src/db/database.js'
import { GOOD_PASSWORD, problemOf, testApp } from '../helpers/app.js'
import { deferCleanup } from '../helpers/cleanup.js'
import { freshSchema, POSTGRES_SKIP, queryPostgres } from '../helpers/postgres.js'
import { type StallProxy, stallProxy } from '../helpers/stall-proxy.js'
import { suite } from '../helpers/suite.js'
import { Api, assertProblem, call } from './client.js'
import { startServer } from './server.js'

// A PostgreSQL that stops answering (a TCP proxy of the test's own holds every byte, as a SIGSTOPped or
// partitioned server would): no acknowledged write is lost, no connection is left inside a transaction,
// requests fail fast with 503, /api/health says so, the outage is logged once, and SIGTERM has a deadline.
// The machine's own PostgreSQL is never paused or signalled; only the proxy in front of it is.

const URL_ = process.env.TEST_DATABASE_URL as string
/** Kysely's BEGIN as it goes on the wire (a simple-query message). */
const BEGIN = 'begin\0'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** Resolves after `ms` without keeping the test process alive. */
const timeout = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref())

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Sessions of the proxy's connections that the server holds inside a transaction. */
async function openTransactions(proxy: StallProxy): Promise<{ pid: number; state: string; query: string }[]> {
  return queryPostgres(
    `SELECT pid, state, query FROM pg_stat_activity
     WHERE client_addr = '127.0.0.1' AND client_port = ANY($1::int[]) AND state LIKE 'idle in transaction%'`,
    [proxy.upstreamPorts()],
  )
}

async function firstNameInDb(schema: string, id: number): Promise<string> {
  const rows = await queryPostgres<{ first_name: string }>('SELECT first_name FROM users WHERE id = $1', [id], { schema })
  return rows[0]?.first_name as string
}

test('the database timeouts and the shutdown deadline are read from the environment and checked', () => {
  const defaults = loadConfig({})
  assert.deepEqual([defaults.databaseAcquireTimeoutMs, defaults.databaseStatementTimeoutMs, defaults.shutdownTimeoutMs], [2000, 5000, 8000])
  const set = loadConfig({ DATABASE_ACQUIRE_TIMEOUT: '3', DATABASE_STATEMENT_TIMEOUT: '1m', SHUTDOWN_TIMEOUT: '20s' })
  assert.deepEqual([set.databaseAcquireTimeoutMs, set.databaseStatementTimeoutMs, set.shutdownTimeoutMs], [3000, 60_000, 20_000])
  for (const name of ['DATABASE_ACQUIRE_TIMEOUT', 'DATABASE_STATEMENT_TIMEOUT', 'SHUTDOWN_TIMEOUT']) {
    for (const bad of ['0', 'soon', '2d']) {
      assert.throws(() => loadConfig({ [name]: bad }), (error: Error) => error.message.startsWith(`${name}=`) && !error.message.includes('\n'))
    }
  }
})

suite('when PostgreSQL stops answering', POSTGRES_SKIP, () => {
  test('the pool destroys a connection that failed inside a transaction or timed out, keeps one after a clean error, and sets server-side timeouts', async (t) => {
    const schema = await freshSchema(t)
    const db = createDb({ databaseUrl: URL_, databaseSchema: schema, databasePoolSize: 1, databaseStatementTimeoutMs: 1500 })
    deferCleanup(t, () => db.destroy())
    const pid = async () => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db.kysely)).rows[0]?.pid
    const settings = await sql<{ statement: string; idle: string }>`
      select current_setting('statement_timeout') as statement, current_setting('idle_in_transaction_session_timeout') as idle`.execute(db.kysely)
    assert.deepEqual(settings.rows[0], { statement: '1500ms', idle: '1500ms' })

    const first = await pid()
    // A statement error outside a transaction leaves the connection clean: it is kept.
    await assert.rejects(sql`select 1/0`.execute(db.kysely), /division by zero/)
    assert.equal(await pid(), first)
    // Any error inside a transaction: the connection is closed, the next borrower gets a new one.
    await assert.rejects(db.kysely.transaction().execute(async (trx) => sql`select 1/0`.execute(trx)), /division by zero/)
    const second = await pid()
    assert.notEqual(second, first)
    // A statement the server cancels for its timeout: closed too.
    await assert.rejects(sql`select pg_sleep(5)`.execute(db.kysely), (error: Error & { code?: string }) => error.code === '57014' || /timeout/.test(error.message))
    assert.notEqual(await pid(), second)
  })

  test('when the database hangs on a BEGIN, then that connection is destroyed and every write acknowledged after it is committed', async (t) => {
    const proxy = await stallProxy(t, URL_)
    // One connection: the one that saw the hung BEGIN is the one every later request would get.
    const { client, config } = await testApp(t, 'postgres', {
      databaseUrl: proxy.url,
      databasePoolSize: 1,
      databaseAcquireTimeoutMs: 1000,
      databaseStatementTimeoutMs: 1000,
    })
    const me = await client.signUp()
    const acknowledged: string[] = []
    const write = async (value: string) => {
      const response = await client.send('PATCH', '/api/users/me', { first_name: value }, me.access)
      if (response.statusCode < 300) acknowledged.push(value)
      else problemOf(response, 503)
      return response.statusCode
    }
    assert.equal(await write('before'), 200)

    // Sign-in reads the user, then opens a transaction: the database stops answering at that BEGIN.
    proxy.stallOn(BEGIN)
    const signIn = client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
    await waitFor('the BEGIN to be held', () => proxy.stalled)
    const during = [await write('during-1'), await write('during-2')]
    const signedIn = await signIn
    assert.equal(problemOf(signedIn, 503).type, '/problems/service_unavailable')
    proxy.resume()

    const after = []
    for (let i = 1; i <= 4; i++) after.push(await write(`after-${i}`))
    assert.deepEqual(after, [200, 200, 200, 200], `writes after the database came back: ${after}; during: ${during}`)
    // Read over a connection of the test's own: what the service said it saved is what the database holds.
    assert.equal(await firstNameInDb(config.databaseSchema as string, me.user.id), acknowledged.at(-1))
    assert.deepEqual(await openTransactions(proxy), [])
  })

  test('when the database hangs under load, then every write acknowledged (2xx) is in the database afterwards', async (t) => {
    const proxy = await stallProxy(t, URL_)
    const { client, config } = await testApp(t, 'postgres', {
      databaseUrl: proxy.url,
      databasePoolSize: 10,
      databaseAcquireTimeoutMs: 1000,
      databaseStatementTimeoutMs: 1000,
    })
    const WRITERS = 16
    const users = await Promise.all(Array.from({ length: WRITERS }, () => client.signUp()))
    const statuses = new Map<number, number>()
    /** Per user: the sequence number of the last write answered 2xx, and how many were answered 2xx after the stall. */
    const lastAcked = new Map<number, number>()
    const ackedAfter = new Map<number, number>()
    let phase: 'before' | 'stalled' | 'after' | 'done' = 'before'

    // Each user writes its own profile, one write at a time, as fast as answers come (single-statement UPDATEs).
    const writer = async (user: (typeof users)[number]) => {
      for (let i = 1; phase !== 'done'; i++) {
        const response = await client.send('PATCH', '/api/users/me', { first_name: `w${i}` }, user.access)
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
        if (response.statusCode >= 300) continue
        lastAcked.set(user.user.id, i)
        if (phase === 'after') ackedAfter.set(user.user.id, (ackedAfter.get(user.user.id) ?? 0) + 1)
      }
    }
    const loops = users.map(writer)
    await sleep(300)
    // The database stops at the BEGIN of a sign-in's transaction, amid the writes, and resumes once that
    // sign-in has been answered (in 1 s here; after the 15 s query timeout before the fix).
    proxy.stallOn(BEGIN)
    const signIn = client.send('POST', '/api/auth/sign-in', { username: users[0]?.user.username, password: GOOD_PASSWORD })
    await waitFor('the database to stall', () => proxy.stalled)
    phase = 'stalled'
    problemOf(await signIn, 503)
    proxy.resume()
    phase = 'after'
    const recovered = () => users.every((user) => (ackedAfter.get(user.user.id) ?? 0) >= 5)
    await waitFor('every writer to be acknowledged 5 times after the stall', recovered, 15_000).catch(() => {})
    phase = 'done'
    await Promise.all(loops)

    assert.deepEqual([...statuses.keys()].filter((status) => status !== 200 && status !== 503), [], `statuses: ${[...statuses]}`)
    const lost: string[] = []
    for (const user of users) {
      const stored = Number((await firstNameInDb(config.databaseSchema as string, user.user.id)).slice(1))
      // A write answered 503 may still land later (it may have reached the server); an acknowledged one must.
      const acked = lastAcked.get(user.user.id) as number
      if (stored < acked) lost.push(`${user.user.username}: w${acked} acknowledged, w${stored} stored`)
    }
    t.diagnostic(`statuses ${JSON.stringify([...statuses])}; users whose last acknowledged write is lost: ${lost.length} of ${WRITERS}`)
    assert.deepEqual(lost, [], `${lost.length} of ${WRITERS} users lost acknowledged writes`)
    assert.deepEqual(await openTransactions(proxy), [])
    assert.ok(recovered(), `writes acknowledged per user after the stall: ${JSON.stringify([...ackedAfter.values()])}`)
  })

  test('when the database hangs, then requests get 503 with Retry-After within the bound, health says so, and one outage is logged', async (t) => {
    const proxy = await stallProxy(t, URL_)
    const schema = await freshSchema(t)
    const server = await startServer(t, {
      env: {
        DATABASE_URL: proxy.url,
        DATABASE_SCHEMA: schema,
        DATABASE_POOL_SIZE: '4',
        DATABASE_ACQUIRE_TIMEOUT: '1s',
        DATABASE_STATEMENT_TIMEOUT: '2s',
      },
    })
    const api = new Api(server.url)
    const [alice, bob] = [await api.signUp('alice'), await api.signUp('bob')]

    proxy.stall()
    const bound = 1000 + 2000
    const requests = Array.from({ length: 20 }, (_, i) => {
      const started = Date.now()
      const reply =
        i % 3 === 0
          ? api.me(alice.access)
          : i % 3 === 1
            ? api.call('/api/users/me', { method: 'PATCH', token: bob.access, json: { first_name: `b${i}` } })
            : api.call('/api/auth/sign-in', { method: 'POST', json: { username: 'alice', password: GOOD_PASSWORD } })
      return reply.then((answer) => ({ answer, ms: Date.now() - started }))
    })
    const healthStarted = Date.now()
    const health = await call(`${server.url}/api/health`)
    const healthMs = Date.now() - healthStarted
    const answers = await Promise.all(requests)
    for (const { answer, ms } of answers) {
      const problem = assertProblem(answer, 503)
      assert.equal(problem.type, '/problems/service_unavailable')
      assert.match(problem.detail, /database/)
      assert.ok(Number(answer.headers.get('retry-after')) > 0, 'Retry-After')
      // A generous deadline, not a measurement: the documented bound is acquire + statement timeout.
      assert.ok(ms < bound + 4000, `answered after ${ms} ms (bound ${bound} ms)`)
    }
    assert.equal(health.status, 503)
    assert.deepEqual(health.json, { status: 'unavailable', checks: { database: 'down', media: 'ok' } })
    assert.ok(healthMs < bound + 4000, `health answered after ${healthMs} ms`)

    proxy.resume()
    await waitFor('the outage to end', () => server.output().includes('outage over'))
    assert.equal((await api.me(alice.access)).status, 200)
    assert.equal((await call(`${server.url}/api/health`)).status, 200)
    const lines = server
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string; dependency?: string; refused?: number; durationMs?: number })
    assert.deepEqual(
      lines.filter((line) => line.level >= 50).map((line) => line.msg),
      [],
      'no error-level line for a refused request',
    )
    const outage = lines.filter((line) => line.level === 40)
    assert.equal(outage.length, 2, JSON.stringify(outage))
    assert.match(outage[0]?.msg as string, /^database outage: it does not answer/)
    assert.equal(outage[1]?.dependency, 'database')
    assert.equal(outage[1]?.refused, 20)
    assert.ok((outage[1]?.durationMs as number) > 0)
  })

  test('when SIGTERM comes while the database hangs, then the process exits by SHUTDOWN_TIMEOUT and late requests get a problem+json 503', async (t) => {
    const proxy = await stallProxy(t, URL_)
    const schema = await freshSchema(t)
    // Timeouts longer than the shutdown deadline: only the deadline can end this shutdown.
    const server = await startServer(t, {
      env: {
        DATABASE_URL: proxy.url,
        DATABASE_SCHEMA: schema,
        DATABASE_ACQUIRE_TIMEOUT: '30s',
        DATABASE_STATEMENT_TIMEOUT: '30s',
        SHUTDOWN_TIMEOUT: '2s',
      },
    })
    const api = new Api(server.url)
    const carol = await api.signUp('carol')
    const { port } = new URL(server.url)

    proxy.stall()
    // One request waits on the hung database; another connection has sent half of its request's head.
    const waiting = await rawConnection(Number(port))
    waiting.write(`GET /api/users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${carol.access}\r\n\r\n`)
    await waitFor('the waiting request to reach the database', () => proxy.heldBytesToServer() > 0)
    const late = await rawConnection(Number(port))
    late.write('PATCH /api/users/me HTTP/1.1\r\nHost: x\r\n')
    await sleep(100)

    const signalled = Date.now()
    server.child.kill('SIGTERM')
    await waitFor('the shutdown to begin', () => server.output().includes('shutting down'))
    const body = JSON.stringify({ first_name: 'late' })
    late.write(`Authorization: Bearer ${carol.access}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    const answer = await readResponse(late)
    const exit = await Promise.race([server.exited, timeout(30_000).then(() => 'still running')])
    const shutdownMs = Date.now() - signalled

    assert.equal(answer.status, 503, answer.raw)
    assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/, answer.raw)
    assert.equal(answer.headers.connection, 'close')
    const problem = JSON.parse(answer.body)
    assert.equal(problem.type, '/problems/service_unavailable')
    assert.equal(problem.request_id, answer.headers['x-request-id'])
    assert.ok(Number(answer.headers['retry-after']) > 0)
    assert.notEqual(exit, 'still running')
    // A generous deadline: 2 s of SHUTDOWN_TIMEOUT plus start-up slack, far below the 30 s timeouts.
    assert.ok(shutdownMs < 2000 + 5000, `exited ${shutdownMs} ms after SIGTERM`)
    assert.match(server.output(), /shutdown deadline passed/)
    waiting.destroy()
  })

  test('when SIGTERM comes while the database hangs, then requests in flight get their 503 and it exits 0 once they have, kept-alive connections or not', async (t) => {
    const proxy = await stallProxy(t, URL_)
    const schema = await freshSchema(t)
    const server = await startServer(t, {
      env: {
        DATABASE_URL: proxy.url,
        DATABASE_SCHEMA: schema,
        DATABASE_ACQUIRE_TIMEOUT: '1s',
        DATABASE_STATEMENT_TIMEOUT: '1s',
        SHUTDOWN_TIMEOUT: '60s',
      },
    })
    const dave = await new Api(server.url).signUp('dave')
    const { port } = new URL(server.url)
    proxy.stall()
    // A kept-alive connection whose request waits on the database: answered 503 after the statement timeout,
    // it is idle, and must not hold the shutdown for the keep-alive timeout (72 s).
    const waiting = await rawConnection(Number(port))
    waiting.write(`GET /api/users/me HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nAuthorization: Bearer ${dave.access}\r\n\r\n`)
    await waitFor('the waiting request to reach the database', () => proxy.heldBytesToServer() > 0)
    const signalled = Date.now()
    server.child.kill('SIGTERM')
    const answer = await readResponse(waiting)
    const exit = await Promise.race([server.exited, timeout(60_000).then(() => 'still running')])
    const shutdownMs = Date.now() - signalled
    assert.equal(answer.status, 503, answer.raw)
    assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/)
    assert.equal(exit, 0, server.output().slice(-2000))
    assert.ok(shutdownMs < 15_000, `exited ${shutdownMs} ms after SIGTERM`)
  })
})

async function rawConnection(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port })
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  socket.on('error', () => {})
  return socket
}

/** Reads one HTTP response from a socket the server closes after it (Connection: close). */
async function readResponse(socket: Socket): Promise<{ status: number; headers: Record<string, string>; body: string; raw: string }> {
  let raw = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    raw += chunk
  })
  await Promise.race([new Promise((resolve) => socket.once('close', resolve)), timeout(20_000)])
  const [head = '', body = ''] = raw.split('\r\n\r\n')
  const [statusLine = '', ...headerLines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body, raw }
}
