import { describe, test } from 'node:test'

/**
 * A describe block that, when skipped, still counts in the runner's "# skipped" total: node 20 reports a
 * skipped describe as a passing suite, which would hide that PostgreSQL or Redis tests did not run.
 */
export function suite(name: string, skip: string | false, body: () => void): void {
  if (skip) test(name, { skip }, () => {})
  else describe(name, body)
}
