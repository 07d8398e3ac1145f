// The small part of autocannon's API the benchmark uses (the package ships no types).
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Request {
      method?: string
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
      setupRequest?: (request: Request, context: Record<string, unknown>) => Request
    }
    interface Options {
      url: string
      connections?: number
      duration?: number
      requests?: Request[]
    }
    interface Result {
      requests: { total: number; average: number }
      duration: number
      non2xx: number
      errors: number
      statusCodeStats?: Record<string, { count: number }>
    }
    type Instance = EventEmitter & PromiseLike<Result>
  }
  function autocannon(options: autocannon.Options): autocannon.Instance
  export default autocannon
}
