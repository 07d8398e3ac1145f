import assert from 'node:assert/strict'
import { watch } from 'node:fs'
import { test } from 'node:test'
import { dataDir, startServer } from './hardening/server.js'
import { deferCleanup } from './helpers/cleanup.js'

// /api/health is public and the fs media check writes (and removes) a 64 KiB file: one per request let a
// single client turn a flood of health checks into as many file writes on the avatars disk.

test('when 100 health checks arrive at once, then the media probe writes a few files, not one per request', async (t) => {
  const data = dataDir(t)
  const server = await startServer(t, { data })
  const probes = new Set<string>()
  const watcher = watch(data.avatarsDir, (_event, name) => {
    if (name?.startsWith('.probe.')) probes.add(name)
  })
  deferCleanup(t, () => watcher.close())
  const replies = await Promise.all(Array.from({ length: 100 }, () => fetch(`${server.url}/api/health`, { signal: AbortSignal.timeout(30_000) })))
  for (const reply of replies) assert.equal(reply.status, 200)
  await new Promise((resolve) => setTimeout(resolve, 200))
  // Before: 100 probe files. Parallel checks now share the probe under way.
  assert.ok(probes.size >= 1 && probes.size <= 20, `${probes.size} probe files`)
  // A check after they all answered probes afresh (nothing cached).
  const before = probes.size
  assert.equal((await fetch(`${server.url}/api/health`)).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(probes.size, before + 1)
})
