import type { FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from '../errors.js'
import { sendProblem, toProblem } from './problem.js'

/**
 * Answers a request that arrives while the server shuts down (on a kept-alive connection, or pipelined): a
 * problem+json 503 like every other refusal, with its request id, and the connection closes. Fastify's own answer
 * then (`return503OnClosing`) is a bare `{"error":"Service Unavailable"}` without either.
 */
export function refuseWhileClosing(request: FastifyRequest, reply: FastifyReply): void {
  const error = new AppError('service_unavailable', {
    detail: 'The server is shutting down. Try again in a moment.',
    headers: { 'retry-after': '1' },
  })
  const { problem, headers } = toProblem(error, request.id)
  reply.header('connection', 'close')
  sendProblem(reply, problem, headers)
}
