import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ConfigError, loadConfig, OWASP_ARGON2ID } from '../src/config.js'

test('when nothing is set, then the documented defaults apply', () => {
  const config = loadConfig({})
  assert.equal(config.port, 8000)
  assert.equal(config.host, '127.0.0.1')
  assert.equal(config.databaseUrl, 'sqlite:./data/portrait.db')
  assert.equal(config.mediaStorage, 'fs')
  assert.equal(config.mediaRoot, './data/media')
  assert.equal(config.accessTokenTtlSeconds, 15 * 60)
  assert.equal(config.refreshTokenTtlSeconds, 7 * 86400)
  assert.equal(config.avatarMaxBytes, 5 * 1024 * 1024)
  assert.equal(config.avatarSize, 512)
  assert.deepEqual(config.passwordHashCost, OWASP_ARGON2ID)
  assert.equal(config.jwtSecret, undefined)
  assert.equal(config.sessionPurgeIntervalMs, 10 * 60 * 1000)
  assert.ok(Object.isFrozen(config))
})

test('when variables are set, then they are parsed', () => {
  const config = loadConfig({
    PORT: '9000',
    DATABASE_URL: 'postgresql://u@db:5432/portrait',
    MEDIA_STORAGE: 'db',
    PUBLIC_URL: 'https://id.example.com/',
    ACCESS_TOKEN_TTL: '30s',
    REFRESH_TOKEN_TTL: '12h',
    CORS_ORIGINS: 'https://a.example.com, http://localhost:3000',
    TRUST_PROXY: '10.0.0.5, 10.1.0.0/16',
    REDIS_URL: 'redis://127.0.0.1:6379',
  })
  assert.equal(config.port, 9000)
  assert.equal(config.publicUrl, 'https://id.example.com')
  assert.equal(config.accessTokenTtlSeconds, 30)
  assert.equal(config.refreshTokenTtlSeconds, 12 * 3600)
  assert.deepEqual(config.corsOrigins, ['https://a.example.com', 'http://localhost:3000'])
  assert.deepEqual(config.trustProxy, ['10.0.0.5', '10.1.0.0/16'])
})

test('when TRUST_PROXY is set, then only false, a hop count or proxy addresses/CIDRs are accepted', () => {
  assert.equal(loadConfig({}).trustProxy, false)
  assert.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false)
  assert.equal(loadConfig({ TRUST_PROXY: '2' }).trustProxy, 2)
  assert.deepEqual(loadConfig({ TRUST_PROXY: 'loopback,::1,fd00::/8,192.168.1.1/32' }).trustProxy, ['loopback', '::1', 'fd00::/8', '192.168.1.1/32'])
  // `true` would make the leftmost, client-written X-Forwarded-For entry the client address: refused, saying what to set.
  for (const value of ['true', 'TRUE']) {
    assert.throws(
      () => loadConfig({ TRUST_PROXY: value }),
      (error: Error) =>
        error instanceof ConfigError &&
        /^TRUST_PROXY=true is refused: .*number of proxies.*TRUST_PROXY=1.*addresses\/CIDRs/.test(error.message) &&
        !error.message.includes('\n'),
    )
  }
  for (const value of ['101', '10.0.0.256', '10.0.0.0/33', '::1/129', '10.0.0.0/8/1', 'proxy.example.com', '10.0.0.5,', '*']) {
    assert.throws(() => loadConfig({ TRUST_PROXY: value }), (error: Error) => error instanceof ConfigError && /^TRUST_PROXY=/.test(error.message), value)
  }
})

test('when a variable is malformed, then the error names it and the accepted form in one line', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /^PORT="eighty" is invalid: expected an integer from 0 to 65535$/],
    [{ PORT: '70000' }, /^PORT=/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL=.*sqlite:<path> or postgres:/],
    [{ MEDIA_STORAGE: 's3' }, /^MEDIA_STORAGE=.*one of fs, db/],
    [{ PUBLIC_URL: 'example.com' }, /^PUBLIC_URL=/],
    [{ JWT_SECRET: 'short' }, /^JWT_SECRET=.*at least 32 bytes/],
    [{ ACCESS_TOKEN_TTL: '15 minutes' }, /^ACCESS_TOKEN_TTL=.*duration/],
    [{ REFRESH_TOKEN_TTL: '0' }, /^REFRESH_TOKEN_TTL=/],
    [{ AVATAR_MAX_BYTES: '-1' }, /^AVATAR_MAX_BYTES=/],
    [{ AVATAR_SIZE: '1.5' }, /^AVATAR_SIZE=/],
    [{ REDIS_URL: 'http://x' }, /^REDIS_URL=/],
    [{ CORS_ORIGINS: '*' }, /^CORS_ORIGINS=/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL=/],
    [{ TRUST_PROXY: 'yes please' }, /^TRUST_PROXY=/],
    [{ SESSION_PURGE_INTERVAL: 'hourly' }, /^SESSION_PURGE_INTERVAL=.*duration/],
    // Past 24.8 days a Node timer overflows and fires every millisecond.
    [{ SESSION_PURGE_INTERVAL: '30d' }, /^SESSION_PURGE_INTERVAL=.*1s to 1d/],
  ]
  for (const [env, message] of cases) {
    assert.throws(() => loadConfig(env), (error: Error) => error instanceof ConfigError && message.test(error.message) && !error.message.includes('\n'))
  }
  // The secret itself is never echoed.
  assert.throws(() => loadConfig({ JWT_SECRET: 'do-not-print-me' }), (error: Error) => !error.message.includes('do-not-print-me'))
})

test('when the sign-up limit is configured, then it is parsed; defaults are 30 per 5 minutes; a bad value names its variable', () => {
  assert.deepEqual(loadConfig({}).signUpLimits, { maxPerAddress: 30, windowSeconds: 300 })
  assert.deepEqual(loadConfig({ SIGN_UP_MAX_PER_ADDRESS: '5', SIGN_UP_WINDOW: '1h' }).signUpLimits, { maxPerAddress: 5, windowSeconds: 3600 })
  for (const [env, message] of [
    [{ SIGN_UP_MAX_PER_ADDRESS: '0' }, /^SIGN_UP_MAX_PER_ADDRESS="0" is invalid: expected an integer from 1 to/],
    [{ SIGN_UP_MAX_PER_ADDRESS: 'lots' }, /^SIGN_UP_MAX_PER_ADDRESS=/],
    [{ SIGN_UP_WINDOW: '5 minutes' }, /^SIGN_UP_WINDOW=.*duration/],
  ] as [Record<string, string>, RegExp][]) {
    assert.throws(() => loadConfig(env), (error: Error) => error instanceof ConfigError && message.test(error.message) && !error.message.includes('\n'))
  }
})

test('when REFRESH_REUSE_GRACE is set, then a duration from 0 to 5 minutes is accepted', () => {
  assert.equal(loadConfig({}).refreshReuseGraceSeconds, 10)
  assert.equal(loadConfig({ REFRESH_REUSE_GRACE: '0' }).refreshReuseGraceSeconds, 0)
  assert.equal(loadConfig({ REFRESH_REUSE_GRACE: '2s' }).refreshReuseGraceSeconds, 2)
  assert.equal(loadConfig({ REFRESH_REUSE_GRACE: '5m' }).refreshReuseGraceSeconds, 300)
  for (const value of ['6m', '1h', '-1', 'soon', '1.5s']) {
    assert.throws(
      () => loadConfig({ REFRESH_REUSE_GRACE: value }),
      (error: Error) => error instanceof ConfigError && /^REFRESH_REUSE_GRACE=.*from 0 to 300s/.test(error.message),
      value,
    )
  }
})

test('when ACTIVITY_RETENTION and ACTIVITY_PURGE_INTERVAL are set, then they are parsed; defaults 90 days and 1 hour; bad values name their variable', () => {
  const defaults = loadConfig({})
  assert.equal(defaults.activityRetentionSeconds, 90 * 86400)
  assert.equal(defaults.activityPurgeIntervalMs, 3600 * 1000)
  const set = loadConfig({ ACTIVITY_RETENTION: '30d', ACTIVITY_PURGE_INTERVAL: '10m' })
  assert.equal(set.activityRetentionSeconds, 30 * 86400)
  assert.equal(set.activityPurgeIntervalMs, 600 * 1000)
  for (const [env, message] of [
    [{ ACTIVITY_RETENTION: '0' }, /^ACTIVITY_RETENTION=.*positive duration/],
    [{ ACTIVITY_RETENTION: 'forever' }, /^ACTIVITY_RETENTION=/],
    [{ ACTIVITY_PURGE_INTERVAL: '2d' }, /^ACTIVITY_PURGE_INTERVAL=.*from 1s to 1d/],
  ] as const) {
    assert.throws(() => loadConfig(env), (error: Error) => error instanceof ConfigError && message.test(error.message))
  }
})

test('when the mail settings are set, then SMTP_URL, MAIL_FROM, the token lifetimes and the mail limits are parsed and checked', () => {
  const defaults = loadConfig({})
  assert.equal(defaults.mail.smtpUrl, undefined)
  assert.equal(defaults.mail.from, 'Portrait <no-reply@portrait.localhost>')
  assert.equal(defaults.mail.maxAttempts, 10)
  assert.equal(defaults.mail.pollIntervalMs, 30_000)
  assert.equal(defaults.passwordResetTtlSeconds, 3600)
  assert.equal(defaults.emailVerificationTtlSeconds, 3 * 86400)
  assert.deepEqual(defaults.mailRequestLimits, { maxPerEmail: 5, maxPerAddress: 30, windowSeconds: 3600 })
  assert.equal(loadConfig({ PUBLIC_URL: 'https://id.example.com' }).mail.from, 'Portrait <no-reply@id.example.com>')
  const set = loadConfig({
    SMTP_URL: 'smtps://mailer:s3cret@smtp.example.com:465',
    MAIL_FROM: 'Accounts <accounts@example.com>',
    MAIL_MAX_ATTEMPTS: '3',
    MAIL_POLL_INTERVAL: '5s',
    PASSWORD_RESET_TTL: '30m',
    EMAIL_VERIFICATION_TTL: '7d',
    MAIL_REQUESTS_PER_EMAIL: '2',
    MAIL_REQUESTS_PER_ADDRESS: '9',
    MAIL_REQUEST_WINDOW: '15m',
  })
  assert.equal(set.mail.smtpUrl, 'smtps://mailer:s3cret@smtp.example.com:465')
  assert.equal(set.mail.from, 'Accounts <accounts@example.com>')
  assert.equal(set.mail.maxAttempts, 3)
  assert.equal(set.mail.pollIntervalMs, 5000)
  assert.equal(set.passwordResetTtlSeconds, 1800)
  assert.equal(set.emailVerificationTtlSeconds, 7 * 86400)
  assert.deepEqual(set.mailRequestLimits, { maxPerEmail: 2, maxPerAddress: 9, windowSeconds: 900 })
  assert.equal(loadConfig({ SMTP_URL: 'smtp://localhost:1025' }).mail.smtpUrl, 'smtp://localhost:1025')
  assert.equal(loadConfig({ MAIL_FROM: 'no-reply@example.com' }).mail.from, 'no-reply@example.com')
  assert.equal(loadConfig({ MAIL_FROM: '"Portrait team" <team@example.com>' }).mail.from, '"Portrait team" <team@example.com>')
  for (const [env, message] of [
    [{ SMTP_URL: 'http://smtp.example.com' }, /^SMTP_URL=.*smtp:\/\/user:pass@host:port or smtps:/],
    [{ SMTP_URL: 'smtp://' }, /^SMTP_URL=/],
    [{ MAIL_FROM: 'nobody' }, /^MAIL_FROM=.*an address such as/],
    [{ MAIL_FROM: 'Bad <x@y>' }, /^MAIL_FROM=/],
    [{ MAIL_FROM: 'Evil\r\nBcc: a@b.co <x@example.com>' }, /^MAIL_FROM=/],
    [{ MAIL_MAX_ATTEMPTS: '0' }, /^MAIL_MAX_ATTEMPTS=/],
    [{ PASSWORD_RESET_TTL: 'an hour' }, /^PASSWORD_RESET_TTL=.*duration/],
    [{ EMAIL_VERIFICATION_TTL: '0' }, /^EMAIL_VERIFICATION_TTL=/],
    [{ MAIL_REQUESTS_PER_EMAIL: '0' }, /^MAIL_REQUESTS_PER_EMAIL=/],
    [{ MAIL_REQUEST_WINDOW: 'daily' }, /^MAIL_REQUEST_WINDOW=/],
  ] as [Record<string, string>, RegExp][]) {
    assert.throws(() => loadConfig(env), (error: Error) => error instanceof ConfigError && message.test(error.message) && !error.message.includes('\n'), JSON.stringify(env))
  }
  // The SMTP password is never echoed.
  assert.throws(() => loadConfig({ SMTP_URL: 'ftp://u:do-not-print-me@x' }), (error: Error) => !error.message.includes('do-not-print-me'))
})

test('when DATA_DIR is set and DATABASE_URL is not, then the SQLite file is in DATA_DIR; one left in ./data by an older version stops the start', () => {
  assert.equal(loadConfig({ DATA_DIR: '/srv/portrait/' }).databaseUrl, 'sqlite:/srv/portrait/portrait.db')
  assert.equal(loadConfig({ DATA_DIR: '/srv/portrait', DATABASE_URL: 'sqlite:/elsewhere.db' }).databaseUrl, 'sqlite:/elsewhere.db')
  const cwd = process.cwd()
  const work = mkdtempSync(join(tmpdir(), 'portrait-datadir-'))
  try {
    process.chdir(work)
    mkdirSync('data')
    writeFileSync('data/portrait.db', '')
    mkdirSync('state')
    assert.throws(() => loadConfig({ DATA_DIR: 'state' }), (error: Error) => error instanceof ConfigError && /database is at data\/portrait\.db.*move portrait\.db/.test(error.message))
    assert.equal(loadConfig({}).databaseUrl, 'sqlite:./data/portrait.db', 'the default DATA_DIR is that very place')
    writeFileSync('state/portrait.db', '')
    assert.equal(loadConfig({ DATA_DIR: 'state' }).databaseUrl, 'sqlite:state/portrait.db', 'once moved, it starts')
  } finally {
    process.chdir(cwd)
    rmSync(work, { recursive: true, force: true })
  }
})
