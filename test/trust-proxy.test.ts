import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Config } from '../src/config.js'
import { Api } from './hardening/client.js'
import { startServer } from './hardening/server.js'
import { testApp } from './helpers/app.js'

// Behind a reverse proxy the client address (per-address sign-in limits) is the rightmost X-Forwarded-For
// entry that no trusted proxy wrote: everything left of it was written by the client and proves nothing.

test('when several X-Forwarded-For entries arrive, then request.ip is the rightmost address no trusted proxy wrote', async (t) => {
  const cases: [Config['trustProxy'], string, string | undefined, string][] = [
    // [TRUST_PROXY, socket address, X-Forwarded-For, expected request.ip]
    [false, '127.0.0.1', '6.6.6.6', '127.0.0.1'],
    [['127.0.0.1'], '127.0.0.1', '6.6.6.6, 203.0.113.7', '203.0.113.7'],
    [['127.0.0.1'], '127.0.0.1', undefined, '127.0.0.1'],
    // A client that reaches the server directly is not a proxy: its header is ignored.
    [['127.0.0.1'], '198.51.100.9', '6.6.6.6', '198.51.100.9'],
    [['127.0.0.1', '10.0.0.0/8'], '127.0.0.1', '6.6.6.6, 203.0.113.7, 10.1.2.3', '203.0.113.7'],
    [['::1'], '::1', '6.6.6.6, 2001:db8::1', '2001:db8::1'],
    [['loopback'], '::ffff:127.0.0.1', '6.6.6.6, 203.0.113.7', '203.0.113.7'],
    [1, '10.0.0.5', '6.6.6.6, 203.0.113.7', '203.0.113.7'],
    [2, '10.0.0.5', '6.6.6.6, 5.5.5.5, 203.0.113.7, 10.9.9.9', '203.0.113.7'],
    [2, '10.0.0.5', '203.0.113.7', '203.0.113.7'],
  ]
  for (const [trustProxy, remoteAddress, forwardedFor, expected] of cases) {
    const { app } = await testApp(t, 'sqlite', { trustProxy })
    // A probe route on the real app: Fastify's own request.ip, as the sign-in route reads it.
    app.get('/probe/ip', async (request) => ({ ip: request.ip }))
    const reply = await app.inject({
      method: 'GET',
      url: '/probe/ip',
      remoteAddress,
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    })
    assert.equal(reply.json().ip, expected, `TRUST_PROXY=${JSON.stringify(trustProxy)}, socket ${remoteAddress}, X-Forwarded-For: ${forwardedFor}`)
  }
})

for (const trust of ['127.0.0.1', '1']) {
  test(`when a client behind TRUST_PROXY=${trust} writes a new X-Forwarded-For on every guess, then the address limit still counts its real address`, async (t) => {
    const server = await startServer(t, {
      env: { TRUST_PROXY: trust, SIGN_IN_MAX_FAILURES_PER_ADDRESS: '5', SIGN_IN_MAX_FAILURES_PER_ACCOUNT: '1000' },
    })
    const api = new Api(server.url)
    // The test client is the proxy (127.0.0.1): it appends the real client address, as nginx's
    // $proxy_add_x_forwarded_for does, to whatever the client sent.
    const guess = (n: number, client: string) =>
      api.call('/api/auth/sign-in', {
        method: 'POST',
        headers: { 'x-forwarded-for': `198.18.${n % 250}.${n % 200}, ${client}` },
        json: { username: `nobody${n}`, password: 'wrong-Password-1' },
      })
    const statuses: number[] = []
    for (let n = 0; n < 8; n++) statuses.push((await guess(n, '203.0.113.7')).status)
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429])
    // Another real client behind the same proxy is counted apart.
    assert.equal((await guess(99, '203.0.113.8')).status, 401)
  })
}

test('when a proxy appends the client port (ip:port, [ipv6]:port) or a client writes no address, then guesses on new ports or new junk still hit one address limit', async (t) => {
  const server = await startServer(t, {
    env: { TRUST_PROXY: '127.0.0.1', SIGN_IN_MAX_FAILURES_PER_ADDRESS: '5', SIGN_IN_MAX_FAILURES_PER_ACCOUNT: '1000' },
  })
  const api = new Api(server.url)
  // Azure Application Gateway writes `1.2.3.4:5678`: every new connection of one client has a new port.
  // Before: each spelling was a client of its own, 8 × 401 each.
  const spellings: Record<string, (n: number) => string> = {
    'IPv4 with a port': (n) => `203.0.113.7:${40000 + n}`,
    'IPv6 in brackets with a port': (n) => `[2001:db8:9:9::${n + 1}]:${5000 + n}`,
    'IPv4-mapped in hex': (n) => (n % 2 ? '::ffff:c633:6403' : '198.51.100.3'),
    'no address at all': (n) => `garbage${n}`,
  }
  for (const [name, client] of Object.entries(spellings)) {
    const statuses: number[] = []
    for (let n = 0; n < 8; n++) {
      const reply = await api.call('/api/auth/sign-in', {
        method: 'POST',
        headers: { 'x-forwarded-for': client(n) },
        json: { username: `nobody-${name}-${n}`, password: 'wrong-Password-1' },
      })
      statuses.push(reply.status)
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429], name)
  }
})
