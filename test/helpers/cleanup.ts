import { rmSync } from 'node:fs'
import type { TestContext } from 'node:test'

type Cleanup = () => unknown

const stacks = new WeakMap<TestContext, Cleanup[]>()

/**
 * Runs `cleanup` when the test ends, before every cleanup registered earlier: last in, first out, the reverse of
 * how resources are made, so a server stops before its data directory is removed and a pool closes before its
 * schema is dropped. node:test runs t.after hooks first in, first out and skips the rest once one throws; a
 * directory removal that failed beside a live server once left that server running and the test process waiting
 * on it until CI's deadline. Here every cleanup runs, and the first error is thrown after the last one.
 */
export function deferCleanup(t: TestContext, cleanup: Cleanup): void {
  const existing = stacks.get(t)
  if (existing) {
    existing.push(cleanup)
    return
  }
  const stack = [cleanup]
  stacks.set(t, stack)
  t.after(async () => {
    const errors: unknown[] = []
    for (let next = stack.pop(); next; next = stack.pop()) {
      try {
        await next()
      } catch (error) {
        errors.push(error)
      }
    }
    if (errors.length > 0) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `${errors.length} cleanups failed`)
  })
}

/** Removes a test's temporary directory when the test ends (retrying briefly if a closing process still holds it). */
export function removeWhenDone(t: TestContext, dir: string): void {
  deferCleanup(t, () => rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))
}
