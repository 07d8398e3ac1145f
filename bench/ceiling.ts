import { createServer } from 'node:http'

// What GET /api/users/me answers, in size and shape (~350 bytes): the ceiling is the same work minus Portrait.
const BODY = Buffer.from(
  JSON.stringify({
    id: 1,
    username: 'bench-user',
    email: 'bench-user@example.com',
    first_name: 'Benchmark',
    last_name: 'User',
    number_phone: '+123456789',
    avatar: '/media/avatars/AbCdEfGhIjKlMnOpQrStUv.webp',
    date_joined: '2026-01-01T00:00:00.000Z',
    last_login: '2026-01-01T00:00:00.000Z',
    is_active: true,
    is_staff: false,
    is_superuser: false,
    padding: 'x'.repeat(18),
  }),
)
const HEADERS = { 'content-type': 'application/json; charset=utf-8', 'content-length': String(BODY.length) }

/** The bare node:http server: the most any Node HTTP service can answer on this machine. */
const server = createServer((request, response) => {
  request.resume()
  response.writeHead(200, HEADERS)
  response.end(BODY)
})
server.keepAliveTimeout = 72_000
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0, bytes: BODY.length })}\n`)
})
process.once('SIGTERM', () => server.close(() => process.exit(0)))
process.once('SIGINT', () => server.close(() => process.exit(0)))
