import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import type { TestContext } from 'node:test'
import { deferCleanup } from './cleanup.js'

/**
 * A TCP proxy on a loopback port of its own in front of a real server, which can stop forwarding — both
 * directions, on every connection, new ones too, holding the bytes as a hung server would leave them unread —
 * and resume, delivering everything held in order. The server behind it is never touched.
 */
export interface StallProxy {
  /** The target URL with the proxy's host and port in place of the server's. */
  url: string
  /** Stops forwarding now. */
  stall(): void
  /** Stops forwarding as soon as a client sends bytes containing `pattern` (those bytes are held too). */
  stallOn(pattern: string | Buffer): void
  resume(): void
  readonly stalled: boolean
  /** Local ports of the proxy's connections to the server (what the server sees as the client's ports). */
  upstreamPorts(): number[]
  /** Bytes held so far from clients on their way to the server. */
  heldBytesToServer(): number
}

type Held = Buffer | 'end'

class Direction {
  readonly held: Held[] = []
  constructor(
    readonly to: Socket,
    readonly toServer: boolean,
  ) {}

  push(item: Held, stalled: boolean): void {
    if (stalled || this.held.length > 0) this.held.push(item)
    else this.deliver(item)
  }

  flush(): void {
    for (const item of this.held.splice(0)) this.deliver(item)
  }

  private deliver(item: Held): void {
    if (this.to.destroyed) return
    if (item === 'end') this.to.end()
    else this.to.write(item)
  }
}

/** `owner` is a test context (or anything with `after`): the proxy closes, every connection with it, when it ends. */
export async function stallProxy(owner: TestContext, targetUrl: string): Promise<StallProxy> {
  const target = new URL(targetUrl)
  const targetPort = Number(target.port || 5432)
  let stalled = false
  let trigger: Buffer | undefined
  const directions = new Set<Direction>()
  const sockets = new Set<Socket>()
  const ports = new Set<number>()

  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ host: target.hostname, port: targetPort, allowHalfOpen: true })
    upstream.on('connect', () => ports.add(upstream.localPort as number))
    const toServer = new Direction(upstream, true)
    const toClient = new Direction(client, false)
    for (const [socket, direction] of [
      [client, toServer],
      [upstream, toClient],
    ] as const) {
      sockets.add(socket)
      directions.add(direction)
      socket.on('data', (chunk: Buffer) => {
        if (!stalled && trigger && socket === client && chunk.includes(trigger)) {
          trigger = undefined
          stalled = true
        }
        direction.push(chunk, stalled)
      })
      socket.on('end', () => direction.push('end', stalled))
      socket.on('error', () => {})
      // A side that goes away (reset or closed) ends the other once the bytes held for it are delivered.
      socket.on('close', () => {
        sockets.delete(socket)
        direction.push('end', stalled)
      })
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  deferCleanup(owner, async () => {
    for (const socket of sockets) socket.destroy()
    server.close()
    await once(server, 'close')
  })

  const url = new URL(targetUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.toString(),
    stall: () => {
      stalled = true
    },
    stallOn: (pattern) => {
      trigger = Buffer.from(pattern)
    },
    resume: () => {
      stalled = false
      trigger = undefined
      for (const direction of directions) direction.flush()
    },
    get stalled() {
      return stalled
    },
    upstreamPorts: () => [...ports],
    heldBytesToServer: () => {
      let total = 0
      for (const direction of directions) {
        if (direction.toServer) for (const item of direction.held) if (item !== 'end') total += item.length
      }
      return total
    },
  }
}
