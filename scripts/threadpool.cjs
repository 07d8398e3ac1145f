// Preloaded by `npm start` (node --require). libuv sizes its thread pool from UV_THREADPOOL_SIZE once, when
// the pool first starts, and the ES module loader starts it (reading files) before any module of the server
// runs: setting the variable from src/ is too late, a --require'd CommonJS file is not. Images (at most one
// per CPU), password hashes and file I/O share the pool; two threads more than the CPU count let every CPU
// process an image while a sign-in and a file read still find a thread (src/config.ts, imageConcurrencyFor).
// A value the environment already gives is kept.
const { availableParallelism } = require('node:os')

process.env.UV_THREADPOOL_SIZE ||= String(Math.max(4, availableParallelism() + 2))
