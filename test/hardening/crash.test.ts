import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { type ClientRequest, request as httpRequest, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import { Api, multipart, type Session } from './client.js'
import { pngBytes } from './images.js'
import { avatarFiles, type DataDir, dataDir, type Server, startServer } from './server.js'

// Crash safety: a SIGKILL mid-write loses no acknowledged write and leaves no dangling or orphaned file;
// a SIGTERM lets in-flight requests finish, then exits 0.

const CLIENTS = 4
const ACKS_BEFORE_KILL = 24
const KILL_CYCLES = 2

interface Write {
  first_name: string
  last_name: string
  upload: boolean
}

/** One client writing its own profile as fast as answers come, until the server goes away. */
class Writer {
  /** The last write answered 200, with the profile it answered. */
  acked?: { write: Write; profile: Record<string, unknown> }
  /** The write that was on the wire when the server died (may or may not have committed). */
  lost?: Write
  private step = 0

  constructor(
    readonly name: string,
    readonly session: Session,
  ) {}

  async run(api: Api, onAck: () => void): Promise<void> {
    this.lost = undefined
    for (;;) {
      this.step++
      const write: Write = { first_name: `${this.name}-${this.step}`, last_name: `L${this.step}`, upload: this.step % 3 === 0 }
      try {
        const reply = write.upload
          ? await api.call(`/api/users/${this.session.user.id}`, {
              method: 'PUT',
              token: this.session.access,
              ...multipart([
                { name: 'first_name', value: write.first_name },
                { name: 'last_name', value: write.last_name },
                { name: 'avatar', filename: 'a.png', content: await pngBytes(16 + (this.step % 50), 16) },
              ]),
            })
          : await api.call(`/api/users/${this.session.user.id}`, { method: 'PATCH', token: this.session.access, json: { first_name: write.first_name, last_name: write.last_name } })
        assert.equal(reply.status, 200, reply.text)
        this.acked = { write, profile: reply.json }
        onAck()
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error
        this.lost = write
        return
      }
    }
  }
}

/** After a restart: each profile is its last acknowledged state, or the state of the one write that was in flight. */
async function assertNothingLost(api: Api, writers: Writer[], data: DataDir) {
  const referenced: string[] = []
  for (const writer of writers) {
    const reply = await api.me(writer.session.access)
    assert.equal(reply.status, 200, reply.text)
    const profile = reply.json
    const { acked, lost } = writer
    assert.ok(acked, `${writer.name} never got an answer`)
    if (profile.first_name === acked.write.first_name) {
      assert.deepEqual(profile, acked.profile, `${writer.name}: the acknowledged state was not kept exactly`)
    } else {
      // Only the write that was on the wire may have landed after the acknowledged one, whole.
      assert.ok(lost, `${writer.name}: state ${profile.first_name} but nothing was in flight after ${acked.write.first_name}`)
      assert.equal(profile.first_name, lost.first_name, `${writer.name}: neither the acknowledged nor the in-flight state`)
      assert.equal(profile.last_name, lost.last_name, `${writer.name}: half a write landed`)
      if (lost.upload) assert.notEqual(profile.avatar, acked.profile.avatar, `${writer.name}: the upload landed without its image`)
      else assert.equal(profile.avatar, acked.profile.avatar)
    }
    if (profile.avatar) {
      const served = await fetch(`${api.url}${profile.avatar}`)
      assert.equal(served.status, 200, `${writer.name} points to a missing image ${profile.avatar}`)
      referenced.push(profile.avatar.split('/').pop())
    }
  }
  // The start-up sweep took every image no profile references, and every temporary file.
  assert.deepEqual(avatarFiles(data), referenced.sort())
}

test('when the server is killed with SIGKILL in the middle of profile updates and uploads, then after a restart nothing acknowledged is lost and no file dangles', async (t) => {
  const data = dataDir(t)
  let server: Server = await startServer(t, { data })
  let api = new Api(server.url)
  const writers: Writer[] = []
  for (let n = 0; n < CLIENTS; n++) writers.push(new Writer(`w${n}`, await api.signUp(`writer${n}`)))

  for (let cycle = 1; cycle <= KILL_CYCLES; cycle++) {
    let acks = 0
    let killing: Promise<unknown> | undefined
    const running = writers.map((writer) =>
      writer.run(api, () => {
        // Kill once enough writes were answered, while the others are still on the wire.
        if (++acks === ACKS_BEFORE_KILL) killing = server.kill()
      }),
    )
    await Promise.all(running)
    assert.equal(await killing, 'SIGKILL')
    t.diagnostic(`cycle ${cycle}: ${acks} writes acknowledged before the kill; in flight: ${writers.filter((w) => w.lost).length}`)

    // What a kill between storing an image and committing its row leaves, whether or not this kill hit that moment.
    const orphan = `${'Q'.repeat(21)}${cycle}.webp`
    writeFileSync(join(data.avatarsDir, orphan), await pngBytes())
    writeFileSync(join(data.avatarsDir, `.${orphan}.0123456789ab.tmp`), 'half an image')

    server = await startServer(t, { data })
    api = new Api(server.url)
    const swept = /"removed":(\d+)/.exec(server.output())?.[1] ?? '0'
    t.diagnostic(`cycle ${cycle}: the start-up sweep removed ${swept} unreferenced file(s)`)
    await assertNothingLost(api, writers, data)
  }
})

/** A request whose headers are sent (and answered with 100 Continue) while its body is held back. */
async function heldRequest(server: Server, method: string, path: string, token: string, body: Buffer, contentType: string) {
  const req: ClientRequest = httpRequest(`${server.url}${path}`, {
    method,
    agent: false,
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType, 'content-length': body.length, expect: '100-continue', connection: 'close' },
  })
  const response = new Promise<{ status: number; json: any }>((resolve, reject) => {
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }))
    })
    req.on('error', reject)
  })
  await new Promise<void>((resolve) => req.once('continue', resolve))
  return { finish: () => req.end(body), response }
}

test('when the server gets SIGTERM with requests in flight, then they finish with 200, it exits 0 and their writes are kept', async (t) => {
  const data = dataDir(t)
  const server = await startServer(t, { data })
  const api = new Api(server.url)
  const [patcher, uploader] = [await api.signUp('patcher'), await api.signUp('uploader')]
  const form = multipart([
    { name: 'first_name', value: 'uploaded-while-stopping' },
    { name: 'avatar', filename: 'a.png', content: await pngBytes(40, 30) },
  ])
  // The server has read both requests' headers (it answered 100 Continue) but not their bodies.
  const patch = await heldRequest(server, 'PATCH', `/api/users/${patcher.user.id}`, patcher.access, Buffer.from(JSON.stringify({ first_name: 'patched-while-stopping' })), 'application/json')
  const upload = await heldRequest(server, 'PUT', `/api/users/${uploader.user.id}`, uploader.access, form.body, form.headers['content-type'] as string)

  server.child.kill('SIGTERM')
  while (!server.output().includes('shutting down')) await new Promise((resolve) => setTimeout(resolve, 20))
  patch.finish()
  upload.finish()
  const [patched, uploaded] = await Promise.all([patch.response, upload.response])
  assert.equal(patched.status, 200, JSON.stringify(patched.json))
  assert.equal(patched.json.first_name, 'patched-while-stopping')
  assert.equal(uploaded.status, 200, JSON.stringify(uploaded.json))
  assert.match(uploaded.json.avatar, /^\/media\/avatars\/[A-Za-z0-9_-]{22}\.webp$/)
  assert.equal(await server.exited, 0)

  const restarted = await startServer(t, { data })
  const again = new Api(restarted.url)
  assert.equal((await again.me(patcher.access)).json.first_name, 'patched-while-stopping')
  const profile = (await again.me(uploader.access)).json
  assert.deepEqual([profile.first_name, profile.avatar], ['uploaded-while-stopping', uploaded.json.avatar])
  assert.equal((await fetch(`${restarted.url}${profile.avatar}`)).status, 200)
  assert.deepEqual(avatarFiles(data), [profile.avatar.split('/').pop()])
})
