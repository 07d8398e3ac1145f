// Preloaded into the server by bench/scale.ts (--require): once a second, one JSON line to LOOP_DELAY_FILE with
// the event loop's delay over that second (perf_hooks.monitorEventLoopDelay, 1 ms resolution) and the
// garbage collector's pauses, and (Linux) how long the main thread ran and how long it waited, runnable, for a CPU
// (/proc/<pid>/task/<pid>/schedstat), so that a slow GET /me can be matched with what the main thread was doing.
const { monitorEventLoopDelay, PerformanceObserver } = require('node:perf_hooks')
const { appendFileSync, readdirSync, readFileSync } = require('node:fs')

/**
 * The main thread's time on a CPU and time waiting for one, and the other threads' time on a CPU (the search
 * worker, libuv's pool, V8's helpers), in ns; zeros where there is no schedstat.
 */
function schedstat() {
  const read = (tid) => readFileSync(`/proc/${process.pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number)
  try {
    const [run, wait] = read(process.pid)
    let others = 0
    for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
      try {
        if (Number(tid) !== process.pid) others += read(tid)[0]
      } catch {}
    }
    return { run, wait, others }
  } catch {
    return { run: 0, wait: 0, others: 0 }
  }
}

const file = process.env.LOOP_DELAY_FILE
if (file) {
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  let gc = { count: 0, total: 0, max: 0 }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.count++
      gc.total += entry.duration
      gc.max = Math.max(gc.max, entry.duration)
    }
  }).observe({ entryTypes: ['gc'] })
  const ms = (ns) => Math.round(ns / 1e4) / 100
  let sched = schedstat()
  setInterval(() => {
    const now = schedstat()
    const line = {
      at: Date.now(),
      loopP99: ms(delay.percentile(99)),
      loopMax: ms(delay.max),
      gcCount: gc.count,
      gcTotal: Math.round(gc.total * 100) / 100,
      gcMax: Math.round(gc.max * 100) / 100,
      mainRun: ms(now.run - sched.run),
      mainWait: ms(now.wait - sched.wait),
      // A thread that ended since the last line takes its time with it: at worst this reads low.
      othersRun: ms(Math.max(0, now.others - sched.others)),
    }
    sched = now
    appendFileSync(file, `${JSON.stringify(line)}\n`)
    delay.reset()
    gc = { count: 0, total: 0, max: 0 }
  }, 1000).unref()
}
