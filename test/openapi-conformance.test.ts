import assert from 'node:assert/strict'
import { type AddressInfo, createServer } from 'node:net'
import { test } from 'node:test'
import Database from 'better-sqlite3'
import { ServiceKeys } from '../src/auth/service-keys.js'
import { loadConfig } from '../src/config.js'
import { createDb } from '../src/db/database.js'
import { GOOD_PASSWORD, testApp, uniqueName } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { image } from './helpers/images.js'
import { awayFromStepEdge, codeAt } from './helpers/mfa.js'
import { Contract, conformanceProblems, type Exchange, schemaCompiler } from './helpers/openapi.js'
import { recipients, startSmtp, tokenIn } from './helpers/smtp.js'
import { SoftAuthenticator } from './helpers/webauthn.js'

// The service held to its own document, over a real socket: every exchange below is checked against the live
// /api/openapi.json (status documented for the operation, content type, body schema, documented headers). The
// generic probes run for every operation the document lists, so a route added later is held to it too.

const PROBLEM = 'application/problem+json'

async function listening(t: import('node:test').TestContext) {
  const smtp = await startSmtp(t)
  const { app, config } = await testApp(t, 'sqlite', {
    mail: { ...loadConfig({}).mail, smtpUrl: smtp.url },
    mailRequestLimits: { maxPerEmail: 2, maxPerAddress: 1000, windowSeconds: 600 },
    signInLimits: { maxFailuresPerAccount: 3, maxFailuresPerAddress: 1000, windowSeconds: 900 },
    signUpLimits: { maxPerAddress: 11, windowSeconds: 300 },
    // A rotated refresh token is refused at once (no grace), so the 401s below are SPEC §3's.
    refreshReuseGraceSeconds: 0,
  })
  // Through localhost, not 127.0.0.1: without PUBLIC_URL a page on http://localhost is the one that gets passkeys.
  const address = (await app.listen({ port: 0, host: '127.0.0.1' })).replace('//127.0.0.1:', '//localhost:')
  // A service credential for introspection, made as `portrait service-keys create` makes it.
  const db = createDb(config)
  deferCleanup(t, () => db.destroy())
  const serviceSecret = await new ServiceKeys(db).create('conformance')
  return { config, serviceSecret, smtp, contract: await Contract.load(address) }
}

test('when every operation is exercised over a socket, then every answer is the one /api/openapi.json documents', async (t) => {
  const { config, serviceSecret, smtp, contract } = await listening(t)
  const api = contract.call.bind(contract)
  const expect = async (status: number, id: string, options: Parameters<Contract['call']>[1] = {}) => {
    const reply = await api(id, options)
    assert.equal(reply.status, status, `${id}: ${reply.body.toString().slice(0, 300)}`)
    return reply
  }
  const signUp = async (prefix: string) => {
    const username = uniqueName(prefix)
    const reply = await expect(201, 'signUp', { json: { username, email: `${username}@example.com`, password: GOOD_PASSWORD } })
    return { ...(reply.json() as { access: string; refresh: string; user: { id: number; username: string; email: string } }), username }
  }

  // --- auth -------------------------------------------------------------------------------------------------
  const alice = await signUp('alice')
  const bob = await signUp('bob')
  const root = await signUp('root')
  const victim = await signUp('victim')
  const leaver = await signUp('leaver')
  const locked = await signUp('locked')
  const sqlite = new Database(config.databaseUrl.replace(/^sqlite:/, ''))
  sqlite.prepare('update users set is_superuser = 1, is_staff = 1 where id = ?').run(root.user.id)
  sqlite.close()

  await expect(400, 'signUp', { json: { username: 'x y', email: 'not-an-email', password: '1' } })
  const form = new URLSearchParams({ username: uniqueName('form'), email: `${uniqueName('form')}@example.com`, password: GOOD_PASSWORD })
  await expect(201, 'signUp', { raw: { body: form, contentType: 'application/x-www-form-urlencoded' } })

  await expect(200, 'signIn', { json: { email: alice.user.email, password: GOOD_PASSWORD } })
  const spare = (await expect(200, 'signIn', { json: { username: alice.username, password: GOOD_PASSWORD } })).json() as { access: string; refresh: string }
  await expect(400, 'signIn', { json: { password: GOOD_PASSWORD } })
  await expect(401, 'signIn', { json: { email: alice.user.email, password: 'wrong-password-1' } })
  await expect(415, 'signIn', { raw: { body: new URLSearchParams({ email: 'a@b.co', password: 'x' }), contentType: 'application/x-www-form-urlencoded' } })

  // On a session of its own: presenting a rotated refresh token ends that session (theft detection).
  const rotated = await expect(200, 'refreshToken', { json: { refresh: spare.refresh } })
  const { refresh } = rotated.json() as { refresh: string }
  await expect(200, 'refreshToken', { raw: { body: new URLSearchParams({ refresh }), contentType: 'application/x-www-form-urlencoded' } })
  // SPEC §3: anything that is not a live refresh token is a 401, whatever its length (issue 13 item 8).
  for (const wrong of [spare.access, 'x', 'y'.repeat(5000), spare.refresh]) {
    const reply = await expect(401, 'refreshToken', { json: { refresh: wrong } })
    assert.equal(reply.json().type, '/problems/invalid_refresh_token')
  }
  await expect(401, 'refreshToken')
  await expect(400, 'refreshToken', { json: { refresh, extra: 1 } })
  await expect(400, 'refreshToken', { json: [refresh] })

  await expect(204, 'signOut', { json: { refresh: victim.refresh } })
  await expect(204, 'signOut', { json: { refresh: 'unknown' } })
  await expect(204, 'signOut')
  await expect(401, 'signOut', { json: { all: true } })
  await expect(400, 'signOut', { json: { all: 'yes' } })
  const second = (await expect(200, 'signIn', { json: { email: bob.user.email, password: GOOD_PASSWORD } })).json() as { access: string }
  await expect(204, 'signOut', { token: second.access })

  // --- users ------------------------------------------------------------------------------------------------
  const me = await expect(200, 'getMe', { token: alice.access })
  await expect(200, 'getUser', { token: alice.access, params: { id: alice.user.id } })
  await expect(200, 'getUser', { token: root.access, params: { id: alice.user.id } })
  await expect(403, 'getUser', { token: alice.access, params: { id: bob.user.id } })
  await expect(404, 'getUser', { token: alice.access, params: { id: 999999 } })

  // --- sessions and activity (issue 18) -----------------------------------------------------------------
  const sessions = (await expect(200, 'listMySessions', { token: alice.access })).json() as { results: { id: string; current: boolean }[] }
  const other = sessions.results.find((session) => !session.current) as { id: string }
  await expect(401, 'listMySessions')
  await expect(404, 'endMySession', { token: alice.access, params: { id: 'A'.repeat(22) } })
  const activity = (await expect(200, 'listMyActivity', { token: alice.access, query: { limit: '1' } })).json() as { next: string }
  await expect(200, 'listMyActivity', { token: alice.access, query: { before: new URL(activity.next, 'http://x').searchParams.get('before') as string } })
  await expect(400, 'listMyActivity', { token: alice.access, query: { limit: '0' } })
  await expect(200, 'listUserActivity', { token: root.access, params: { id: alice.user.id } })
  await expect(403, 'listUserActivity', { token: bob.access, params: { id: alice.user.id } })
  await expect(404, 'listUserActivity', { token: root.access, params: { id: 999999 } })
  await expect(204, 'endMySession', { token: alice.access, params: { id: other.id } })

  await expect(200, 'listUsers', { token: root.access })
  await expect(200, 'listUsers', { token: root.access, query: { search: 'alice', page: '1', page_size: '2' } })
  for (const page_size of ['0', '101', 'abc', '1.5']) await expect(400, 'listUsers', { token: root.access, query: { page_size } })
  await expect(403, 'listUsers', { token: alice.access })

  // The seed's three requests: JSON, multipart with an avatar, one field.
  const own = { params: { id: alice.user.id }, token: alice.access }
  await expect(200, 'updateUser', { ...own, json: { first_name: 'Alice', last_name: 'Liddell', number_phone: '+3312345' } })
  const avatarForm = new FormData()
  avatarForm.set('first_name', 'Alice')
  avatarForm.set('avatar', new Blob([new Uint8Array(await image('png'))], { type: 'image/png' }), 'me.png')
  const withAvatar = await expect(200, 'updateUser', { ...own, raw: { body: avatarForm } })
  await expect(200, 'updateUser', { ...own, raw: { body: new URLSearchParams({ last_name: 'L.' }), contentType: 'application/x-www-form-urlencoded' } })
  await expect(200, 'updateUser', own)
  await expect(200, 'updateUser', { ...own, json: { ...me.json(), ...withAvatar.json(), first_name: 'Al' } })
  await expect(400, 'updateUser', { ...own, json: { email: 'nope', surname: 'x', avatar: 'http://elsewhere/x.webp' } })
  await expect(412, 'updateUser', { ...own, headers: { 'if-match': '"0.0"' }, json: { first_name: 'Old' } })
  await expect(403, 'updateUser', { params: { id: bob.user.id }, token: alice.access, json: { first_name: 'Mallory' } })
  await expect(404, 'updateUser', { params: { id: 999999 }, token: alice.access, json: {} })
  await expect(200, 'patchUser', { ...own, json: { first_name: 'Alicia' } })
  await expect(400, 'patchUser', { ...own, json: { number_phone: '12-34' } })
  await expect(403, 'patchUser', { params: { id: bob.user.id }, token: alice.access, json: { first_name: 'Mallory' } })
  await expect(412, 'patchUser', { ...own, headers: { 'if-match': '"0.0"' }, json: {} })
  await expect(412, 'updateMe', { token: alice.access, headers: { 'if-match': '"0.0"' }, json: {} })
  await expect(200, 'updateMe', { token: alice.access, json: { last_name: 'Liddell' } })
  await expect(400, 'updateMe', { token: alice.access, json: { username: '' } })
  await expect(200, 'patchMe', { token: alice.access, json: { number_phone: '' } })
  await expect(412, 'patchMe', { token: alice.access, headers: { 'if-match': '"1.1"' }, json: {} })
  // A superuser sets another user's flags.
  const promoted = await expect(200, 'patchUser', { params: { id: bob.user.id }, token: root.access, json: { is_staff: true } })
  assert.equal(promoted.json().is_staff, true)

  const avatarUrl = new URL(String(withAvatar.json().avatar), contract.baseUrl)
  const name = avatarUrl.pathname.split('/').pop() as string
  const picture = await expect(200, 'getAvatar', { params: { name } })
  assert.equal(picture.headers.get('content-type'), 'image/webp')
  assert.equal(picture.body.subarray(8, 12).toString('latin1'), 'WEBP')
  await expect(404, 'getAvatar', { params: { name: 'missing.webp' } })

  const password = { current_password: GOOD_PASSWORD, new_password: 'another-Horse-battery-7' }
  await expect(204, 'changePassword', { ...own, json: password })
  const fresh = (await expect(200, 'signIn', { json: { email: alice.user.email, password: password.new_password } })).json() as { access: string }
  await expect(400, 'changePassword', { params: { id: alice.user.id }, token: fresh.access, json: { current_password: 'wrong-one-1', new_password: GOOD_PASSWORD } })
  await expect(403, 'changePassword', { params: { id: bob.user.id }, token: fresh.access, json: password })
  await expect(404, 'changePassword', { params: { id: 999999 }, token: fresh.access, json: password })
  // Re-authentication (an account without a second factor): the password again, counted as sign-in's.
  await expect(204, 'reauthenticate', { token: fresh.access, json: { password: password.new_password } })
  await expect(400, 'reauthenticate', { token: fresh.access, json: { password: 'wrong-one-2' } })

  // Too many wrong passwords: the account's attempts run out for sign-in, password change and deletion alike.
  const lockedOwn = { params: { id: locked.user.id }, token: locked.access }
  for (let attempt = 0; attempt < 3; attempt++) await expect(400, 'changePassword', { ...lockedOwn, json: { current_password: `wrong-${attempt}-pass`, new_password: GOOD_PASSWORD } })
  await expect(429, 'changePassword', { ...lockedOwn, json: { current_password: 'wrong-x-pass', new_password: GOOD_PASSWORD } })
  await expect(429, 'deleteUser', { ...lockedOwn, json: { current_password: 'wrong-y-pass' } })
  await expect(429, 'reauthenticate', { token: locked.access, json: { password: GOOD_PASSWORD } })
  await expect(429, 'signIn', { json: { email: locked.user.email, password: 'wrong-z-pass' } })

  await expect(400, 'deleteUser', { params: { id: leaver.user.id }, token: leaver.access, json: { current_password: 'wrong-password-2' } })
  await expect(400, 'deleteUser', { params: { id: leaver.user.id }, token: leaver.access })
  await expect(412, 'deleteUser', { params: { id: leaver.user.id }, token: leaver.access, headers: { 'if-match': '"0.0"' }, json: { current_password: GOOD_PASSWORD } })
  await expect(403, 'deleteUser', { params: { id: root.user.id }, token: leaver.access, json: { current_password: GOOD_PASSWORD } })
  await expect(404, 'deleteUser', { params: { id: 999999 }, token: leaver.access, json: { current_password: GOOD_PASSWORD } })
  const leave = new URLSearchParams({ current_password: GOOD_PASSWORD })
  await expect(204, 'deleteUser', { params: { id: leaver.user.id }, token: leaver.access, raw: { body: leave, contentType: 'application/x-www-form-urlencoded' } })
  await expect(204, 'deleteUser', { params: { id: victim.user.id }, token: root.access })

  await expect(200, 'health')

  // --- password reset and verified email (issue 14): the tokens come from the mails a real SMTP server received
  const mailTo = (email: string, subject: RegExp) => smtp.waitFor((mail) => recipients(mail) === email && subject.test(mail.subject ?? ''))
  const resetter = await signUp('resetter')
  const verification = tokenIn(await mailTo(resetter.user.email, /confirm your email/), 'verify-email')
  await expect(204, 'verifyEmail', { json: { token: verification } })
  await expect(400, 'verifyEmail', { json: { token: verification } })
  await expect(202, 'requestPasswordReset', { json: { email: resetter.user.email } })
  const resetToken = tokenIn(await mailTo(resetter.user.email, /reset your password/), 'reset-password')
  await expect(400, 'confirmPasswordReset', { json: { token: resetToken, new_password: '12345678' } })
  await expect(204, 'confirmPasswordReset', { raw: { body: new URLSearchParams({ token: resetToken, new_password: 'reset-Kettle-staple-8' }), contentType: 'application/x-www-form-urlencoded' } })
  await expect(400, 'confirmPasswordReset', { json: { token: resetToken, new_password: 'reset-Kettle-staple-9' } })
  await expect(400, 'requestPasswordReset', { json: {} })
  await expect(202, 'requestPasswordReset', { json: { email: 'nobody-here@example.com' } })
  await expect(202, 'requestPasswordReset', { raw: { body: new URLSearchParams({ email: 'nobody-here@example.com' }), contentType: 'application/x-www-form-urlencoded' } })
  await expect(429, 'requestPasswordReset', { json: { email: 'nobody-here@example.com' } })
  const mailer = await signUp('mailer')
  // Two mails of each kind per address here (reset links, verification links, counted apart), then 429 for that kind.
  await expect(202, 'sendPasswordReset', { params: { id: mailer.user.id }, token: root.access })
  await expect(202, 'resendVerificationEmail', { params: { id: mailer.user.id }, token: mailer.access })
  await expect(202, 'resendVerificationEmail', { params: { id: mailer.user.id }, token: mailer.access })
  await expect(429, 'resendVerificationEmail', { params: { id: mailer.user.id }, token: mailer.access })
  await expect(403, 'resendVerificationEmail', { params: { id: bob.user.id }, token: mailer.access })
  await expect(403, 'sendPasswordReset', { params: { id: bob.user.id }, token: mailer.access })
  await expect(403, 'sendPasswordReset', { params: { id: root.user.id }, token: root.access })
  await expect(202, 'sendPasswordReset', { params: { id: mailer.user.id }, token: root.access })
  await expect(429, 'sendPasswordReset', { params: { id: mailer.user.id }, token: root.access })
  const gone = await signUp('gone')
  const sqliteGone = new Database(config.databaseUrl.replace(/^sqlite:/, ''))
  sqliteGone.prepare('update users set is_active = 0 where id = ?').run(gone.user.id)
  sqliteGone.close()
  await expect(400, 'sendPasswordReset', { params: { id: gone.user.id }, token: root.access })

  // --- passkeys --------------------------------------------------------------------------------------------
  assert.equal((await expect(200, 'passkeySupport')).json().rp_id, 'localhost')
  const keyholder = { token: bob.access }
  const authenticator = new SoftAuthenticator(contract.baseUrl)
  const creation = (await expect(200, 'passkeyRegistrationOptions', keyholder)).json()
  await expect(400, 'createPasskey', { ...keyholder, json: { name: '', response: authenticator.create(creation) } })
  const creation2 = (await expect(200, 'passkeyRegistrationOptions', keyholder)).json()
  const passkey = (await expect(201, 'createPasskey', { ...keyholder, json: { name: 'Laptop', response: authenticator.create(creation2) } })).json()
  await expect(200, 'listPasskeys', keyholder)
  await expect(200, 'renamePasskey', { ...keyholder, params: { id: passkey.id }, json: { name: 'Desk' } })
  await expect(400, 'renamePasskey', { ...keyholder, params: { id: passkey.id }, json: { name: 'x'.repeat(65) } })
  await expect(404, 'renamePasskey', { ...keyholder, params: { id: 999999 }, json: { name: 'Desk' } })
  await expect(415, 'renamePasskey', { ...keyholder, params: { id: passkey.id }, raw: { body: 'Desk', contentType: 'text/plain' } })
  const request = (await expect(200, 'passkeySignInOptions')).json()
  const assertion = authenticator.get(request.options)
  await expect(200, 'signInWithPasskey', { json: { challenge_id: request.challenge_id, response: assertion } })
  await expect(401, 'signInWithPasskey', { json: { challenge_id: request.challenge_id, response: assertion } })
  await expect(400, 'signInWithPasskey', { json: { challenge_id: request.challenge_id } })
  await expect(415, 'signInWithPasskey', { raw: { body: new URLSearchParams({ challenge_id: 'x' }), contentType: 'application/x-www-form-urlencoded' } })
  await expect(204, 'deletePasskey', { ...keyholder, params: { id: passkey.id } })
  await expect(404, 'deletePasskey', { ...keyholder, params: { id: passkey.id } })

  // --- keys and introspection ---------------------------------------------------------------------------------
  await expect(200, 'getJwks')
  const live = (await expect(200, 'signIn', { json: { email: bob.user.email, password: GOOD_PASSWORD } })).json() as { access: string }
  const asForm = (token: string) => ({ raw: { body: new URLSearchParams({ token }), contentType: 'application/x-www-form-urlencoded' } })
  assert.equal((await expect(200, 'introspectToken', { token: serviceSecret, ...asForm(live.access) })).json().active, true)
  assert.equal((await expect(200, 'introspectToken', { token: serviceSecret, json: { token: 'not-a-token' } })).json().active, false)
  await expect(401, 'introspectToken', { token: live.access, ...asForm(live.access) })
  await expect(400, 'introspectToken', { token: serviceSecret, json: {} })
  await expect(415, 'introspectToken', { token: serviceSecret, raw: { body: 'x', contentType: 'text/plain' } })

  // --- second factor ----------------------------------------------------------------------------------------
  await awayFromStepEdge()
  const carol = await signUp('carol')
  const carolAuth = { token: carol.access }
  await expect(200, 'getMfa', carolAuth)
  await expect(409, 'confirmTotp', { ...carolAuth, json: { code: '123456' } })
  await expect(409, 'regenerateRecoveryCodes', { ...carolAuth, json: {} })
  await expect(409, 'verifySecondFactor', { ...carolAuth, json: { code: '123456' } })
  await expect(409, 'disableTotp', { ...carolAuth, json: { password: GOOD_PASSWORD } })
  const { secret } = (await expect(200, 'enrolTotp', carolAuth)).json() as { secret: string }
  await expect(400, 'confirmTotp', { ...carolAuth, json: { code: 'nope' } })
  await expect(200, 'confirmTotp', { ...carolAuth, json: { code: codeAt(secret, -1) } })
  await expect(409, 'enrolTotp', carolAuth)
  const { recovery_codes: codes } = (await expect(200, 'regenerateRecoveryCodes', { ...carolAuth })).json() as { recovery_codes: string[] }
  await expect(204, 'verifySecondFactor', { ...carolAuth, json: { code: codeAt(secret) } })
  await expect(400, 'verifySecondFactor', { ...carolAuth, json: {} })
  const challenged = (await expect(200, 'signIn', { json: { username: carol.username, password: GOOD_PASSWORD } })).json() as { challenge: string }
  assert.ok(challenged.challenge)
  await expect(401, 'signInSecondFactor', { json: { challenge: challenged.challenge, code: codeAt(secret) } })
  await expect(400, 'signInSecondFactor', { json: { challenge: challenged.challenge } })
  await expect(200, 'signInSecondFactor', { json: { challenge: challenged.challenge, recovery_code: codes[0] } })
  await expect(401, 'signInSecondFactor', { json: { challenge: challenged.challenge, recovery_code: codes[1] } })
  // A passkey as carol's second factor: step-up, and the second step of a password sign-in.
  const carolKey = new SoftAuthenticator(contract.baseUrl)
  const carolCreation = (await expect(200, 'passkeyRegistrationOptions', carolAuth)).json()
  await expect(201, 'createPasskey', { ...carolAuth, json: { name: 'Phone', response: carolKey.create(carolCreation) } })
  const stepUpOptions = (await expect(200, 'passkeyStepUpOptions', carolAuth)).json()
  await expect(204, 'verifyPasskey', { ...carolAuth, json: { response: carolKey.get(stepUpOptions) } })
  await expect(400, 'verifyPasskey', { ...carolAuth, json: {} })
  const challenged2 = (await expect(200, 'signIn', { json: { username: carol.username, password: GOOD_PASSWORD } })).json() as { challenge: string; methods: string[] }
  assert.ok(challenged2.methods.includes('passkey'))
  await expect(401, 'passkeySecondFactorOptions', { json: { challenge: 'x'.repeat(43) } })
  await expect(400, 'passkeySecondFactorOptions', { json: {} })
  const secondStep = (await expect(200, 'passkeySecondFactorOptions', { json: { challenge: challenged2.challenge } })).json()
  await expect(200, 'signInSecondFactor', { json: { challenge: challenged2.challenge, passkey: carolKey.get(secondStep) } })
  const aged = new Database(config.databaseUrl.replace(/^sqlite:/, ''))
  aged.prepare('update sessions set second_factor_at = null where user_id = ?').run(carol.user.id)
  aged.close()
  await expect(403, 'regenerateRecoveryCodes', { ...carolAuth, json: {} })
  await expect(403, 'disableTotp', { ...carolAuth, json: { password: GOOD_PASSWORD } })
  await expect(204, 'disableTotp', { ...carolAuth, json: { password: GOOD_PASSWORD, recovery_code: codes[2] } })

  // Sign-ups from one address run out last (11 per window here).

  let status = 201
  for (let attempt = 0; attempt < 10 && status === 201; attempt++) {
    const username = uniqueName('late')
    status = (await api('signUp', { json: { username, email: `${username}@example.com`, password: GOOD_PASSWORD } })).status
  }
  assert.equal(status, 429)

  // --- generic probes: every operation in the document, this one's and those added later -------------------
  const fresh2 = (await expect(200, 'signIn', { json: { email: bob.user.email, password: GOOD_PASSWORD } })).json() as { access: string }
  const valid = { id: String(bob.user.id), name: name }
  const fill = (path: string, value?: string) =>
    Object.fromEntries([...path.matchAll(/\{([^}]+)\}/g)].map(([, param]) => [param as string, value ?? valid[param as keyof typeof valid] ?? 'x']))
  // Probes: for this file's operations the status is the one expected; for an operation added elsewhere
  // (whose credentials or checks may come in another order) any client error, as long as it is documented.
  const known = new Set([
    ...['signUp', 'signIn', 'refreshToken', 'signOut', 'getMe', 'updateMe', 'patchMe', 'listUsers', 'getUser', 'updateUser', 'patchUser', 'deleteUser', 'changePassword', 'reauthenticate', 'getAvatar', 'health'],
    ...['requestPasswordReset', 'confirmPasswordReset', 'verifyEmail', 'resendVerificationEmail', 'sendPasswordReset'],
    ...['passkeySupport', 'passkeyRegistrationOptions', 'createPasskey', 'listPasskeys', 'passkeySignInOptions', 'signInWithPasskey', 'passkeyStepUpOptions', 'verifyPasskey', 'passkeySecondFactorOptions'],
  ])
  const probe = async (status: number, id: string, options: Parameters<Contract['call']>[1]) => {
    if (known.has(id)) return expect(status, id, options)
    const reply = await api(id, options)
    assert.ok(reply.status >= 400 && reply.status < 500, `${id} probe for ${status}: ${reply.status}`)
  }
  for (const [id, { path, operation }] of contract.operations) {
    const bearerOnly = (operation.security ?? []).length > 0 && !(operation.security ?? []).some((entry) => Object.keys(entry).length === 0)
    if (bearerOnly) await probe(401, id, { params: fill(path) })
    if (path.includes('{')) await probe(414, id, { token: fresh2.access, params: fill(path, 'z'.repeat(201)) })
    if (path.includes('{') && operation.responses['404']) await probe(404, id, { token: fresh2.access, params: fill(path, 'no-such-thing') })
    const json = operation.requestBody?.content['application/json']
    if (json) {
      const own2 = { token: fresh2.access, params: fill(path) }
      await probe(415, id, { ...own2, raw: { body: 'hello', contentType: 'text/plain' } })
      await probe(413, id, { ...own2, raw: { body: `{"a":"${'x'.repeat(70 * 1024)}"}`, contentType: 'application/json' } })
      await probe(400, id, { ...own2, raw: { body: '{"unterminated', contentType: 'application/json' } })
    }
  }

  const report = [...contract.operations.keys()].map((id) => {
    const seen = [...(contract.covered.get(id) ?? [])].sort()
    return `${id}: ${seen.join(' ')} of ${Object.keys(contract.operation(id).operation.responses).join(' ')}`
  })
  const exchanges = [...contract.covered.values()].reduce((sum, statuses) => sum + statuses.size, 0)
  const documented = [...contract.operations.values()].reduce((sum, { operation }) => sum + Object.keys(operation.responses).length, 0)
  t.diagnostic(`operations × statuses covered: ${exchanges} of ${documented} documented, over ${contract.operations.size} operations`)
  for (const line of report) t.diagnostic(line)

  assert.deepEqual(contract.failures, [])
  for (const [id, { operation }] of contract.operations) {
    const success = Object.keys(operation.responses).filter((status) => status.startsWith('2'))
    const seen = contract.covered.get(id) ?? new Set()
    assert.ok(
      success.some((status) => seen.has(Number(status))),
      `${id}: no scenario here reaches its success status (${success.join(', ')}); add one to this test`,
    )
  }
})

test('when a dependency is down, then its 503 is the documented one', async (t) => {
  // Redis on a port nobody listens on: the sign-in and sign-up limits cannot be checked.
  const closed = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
  const { app } = await testApp(t, 'sqlite', { redisUrl: `redis://127.0.0.1:${closed}` })
  const contract = await Contract.load(await app.listen({ port: 0, host: '127.0.0.1' }))
  const username = uniqueName('down')
  // Sign-up's own limit falls back to this instance's memory; whatever it answers is held to the document.
  await contract.call('signUp', { json: { username, email: `${username}@example.com`, password: GOOD_PASSWORD } })
  const signIn = await contract.call('signIn', { json: { username, password: GOOD_PASSWORD } })
  assert.equal(signIn.status, 503, signIn.body.toString())
  assert.ok(signIn.headers.get('retry-after'))
  const health = await contract.call('health')
  assert.equal(health.status, 503)
  assert.deepEqual(contract.failures, [])
})

test('when an answer strays from the document, then the conformance check names the difference', async (t) => {
  const { contract } = await listening(t)
  const compile = schemaCompiler()
  const getMe = contract.operation('getMe')
  const user = {
    id: 1,
    username: 'zoe',
    email: 'zoe@example.com',
    first_name: '',
    last_name: '',
    number_phone: '',
    avatar: null,
    date_joined: '2026-01-01T00:00:00.000Z',
    last_login: null,
    is_active: true,
    is_staff: false,
    is_superuser: false,
    email_verified: false,
  }
  const exchange = (status: number, body: unknown, headers: Record<string, string>): Exchange => ({
    status,
    headers: new Headers(headers),
    body: Buffer.from(body === undefined ? '' : JSON.stringify(body)),
  })
  const json = { 'content-type': 'application/json; charset=utf-8', etag: '"1.1"', 'x-request-id': 'r' }
  assert.deepEqual(conformanceProblems(getMe, exchange(200, user, json), compile), [])

  const problem = { type: '/problems/not_authenticated', title: 'Authentication required', status: 401, detail: 'x', request_id: 'r' }
  const problemHeaders = { 'content-type': PROBLEM, 'www-authenticate': 'Bearer', 'x-request-id': 'r' }
  assert.deepEqual(conformanceProblems(getMe, exchange(401, problem, problemHeaders), compile), [])

  const strays: [string, Exchange, RegExp][] = [
    ['an undocumented status', exchange(418, problem, problemHeaders), /status 418 is not documented/],
    ['a changed shape', exchange(200, { ...user, email: undefined, nickname: 'z' }, json), /breaks its schema/],
    ['a wrong type', exchange(200, { ...user, id: '1' }, json), /breaks its schema/],
    ['an error as plain JSON', exchange(401, problem, { ...problemHeaders, 'content-type': 'application/json' }), /content type application\/json is not documented/],
    ['a problem type from another status', exchange(401, { ...problem, type: '/problems/forbidden' }, problemHeaders), /breaks its schema/],
    ['a missing ETag', exchange(200, user, { 'content-type': 'application/json', 'x-request-id': 'r' }), /header ETag/],
    ['a missing X-Request-Id', exchange(401, problem, { 'content-type': PROBLEM, 'www-authenticate': 'Bearer' }), /header X-Request-Id/],
    ['a body on a 204', { status: 204, headers: new Headers({ 'x-request-id': 'r' }), body: Buffer.from('{}') }, /not documented|without a body/],
  ]
  for (const [what, stray, expected] of strays) {
    const located = what === 'a body on a 204' ? contract.operation('signOut') : getMe
    const problems = conformanceProblems(located, stray, compile)
    assert.ok(problems.some((line) => expected.test(line)), `${what}: ${JSON.stringify(problems)}`)
  }
})

test('when the document is read, then every operation follows the house rules', async (t) => {
  const { contract } = await listening(t)
  const { document } = contract
  const list = Object.fromEntries((contract.operation('listUsers').operation.parameters ?? []).map((p) => [p.name, p.schema]))
  assert.deepEqual(list.page_size, { type: 'integer', default: 20, minimum: 1, maximum: 100 })
  assert.equal((list.page as { type: string }).type, 'integer')
  assert.match(String((document.info as { version: string }).version), /^\d+\.\d+\.\d+/)
  assert.ok(((document.servers as unknown[]) ?? []).length > 0, 'a servers entry')
  for (const [id, { method, path, operation }] of contract.operations) {
    const where = `${method} ${path}`
    assert.ok(operation.operationId, `${where}: operationId`)
    assert.ok(Array.isArray(operation.security), `${where}: security stated (an empty list when public)`)
    const statuses = Object.keys(operation.responses)
    for (const status of ['500', '503']) assert.ok(statuses.includes(status), `${where}: documents ${status}`)
    // An operation that takes no input and no credential (health, the JWKS) has no client error to document.
    const takesInput = (operation.parameters ?? []).length > 0 || operation.requestBody !== undefined || operation.security.length > 0
    if (takesInput) assert.ok(statuses.some((status) => status.startsWith('4')), `${where}: documents its client errors`)
    for (const parameter of operation.parameters ?? []) {
      if (parameter.in === 'query') assert.notEqual(parameter.required, true, `${where}: query parameter ${parameter.name} is optional`)
    }
    if (operation.requestBody) {
      for (const status of ['400', '413', '415']) assert.ok(statuses.includes(status), `${where}: a body endpoint documents ${status}`)
      const needed = Object.values(operation.requestBody.content).some((media) => ((media.schema as { required?: string[] })?.required ?? []).length > 0)
      assert.equal(operation.requestBody.required, needed, `${where}: requestBody.required only when a field is required`)
      for (const media of Object.values(operation.requestBody.content)) {
        // Unknown fields are refused (false), or, where a standard says to ignore them (RFC 7662), say so (true).
        const additional = (media.schema as { additionalProperties?: unknown }).additionalProperties
        assert.ok(additional === false || (id === 'introspectToken' && additional === true), `${where}: what happens to unknown fields is documented`)
      }
    }
    for (const [status, response] of Object.entries(operation.responses)) {
      assert.ok(response.headers?.['X-Request-Id'], `${where} ${status}: X-Request-Id`)
      if (Number(status) >= 400) {
        assert.ok(response.content?.[PROBLEM], `${where} ${status}: problem+json`)
        const schema = response.content?.[PROBLEM]?.schema as { properties?: { type?: { enum?: string[] } } } | undefined
        const types = schema?.properties?.type?.enum
        assert.ok(types && types.length > 0, `${where} ${status}: its problem types listed`)
      }
      if (status === '429' || (status === '503' && id !== 'health')) assert.ok(response.headers?.['Retry-After'], `${where} ${status}: Retry-After`)
      if (status === '401' && (operation.security ?? []).some((entry) => 'bearerAuth' in entry)) {
        assert.ok(response.headers?.['WWW-Authenticate'], `${where} 401: WWW-Authenticate`)
      }
    }
  }
})
