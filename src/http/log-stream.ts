import { createRequire } from 'node:module'
import pino from 'pino'
import type { PrettyOptions } from 'pino-pretty'

export interface LogStream {
  write(line: string): void
  flushSync(): void
}

let stdout: LogStream | undefined

/**
 * Standard output for the logger, written once per event-loop turn: the lines logged during a turn go
 * out together in one write(2) at its end, instead of one blocking write per line. With 32 responses per
 * turn that is 2 µs of CPU per line instead of 7, and pino's asynchronous mode (a thread-pool write per
 * batch) costs 4.5 µs, or 17 when lines come one per turn (bench: 200,000 lines on one core;
 * BENCHMARKS.md). A line still leaves within the turn that logged it, and whatever is pending when the
 * process exits, after a crash too, is written synchronously on 'exit'. One per process: every app
 * built in it shares fd 1, so they share the batch.
 */
export function batchedStdout(): LogStream {
  if (stdout) return stdout
  // sonic-boom in sync mode does the writing: partial writes, EAGAIN on a full pipe, EPIPE.
  const destination = pino.destination({ dest: 1, sync: true })
  let pending = ''
  const flushSync = () => {
    if (pending === '') return
    const batch = pending
    pending = ''
    destination.write(batch)
  }
  process.on('exit', flushSync)
  stdout = {
    write(line) {
      if (pending === '') setImmediate(flushSync)
      pending += line
    },
    flushSync,
  }
  return stdout
}

let prettyOut: LogStream | undefined

/**
 * LOG_FORMAT=pretty (the default on a terminal): each line as `[time] LEVEL: message key=value…`, coloured on
 * a terminal, written synchronously (a person reads it; the batching above is for JSON at load).
 */
export function prettyStdout(): LogStream {
  if (prettyOut) return prettyOut
  // Loaded only when asked for: a JSON-logging server never carries it.
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: PrettyOptions) => NodeJS.WritableStream
  const stream = pretty({
    destination: 1,
    sync: true,
    colorize: Boolean(process.stdout.isTTY),
    translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'",
    ignore: 'pid,hostname',
    singleLine: true,
  })
  prettyOut = { write: (line) => void stream.write(line), flushSync: () => {} }
  return prettyOut
}
