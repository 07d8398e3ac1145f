import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'
import { recoveryCodeHash } from '../src/mfa/recovery-codes.js'
import { DIALECTS, GOOD_PASSWORD, problemOf, type Session, type TestClient, testApp } from './helpers/app.js'
import { deferCleanup } from './helpers/cleanup.js'
import { awayFromStepEdge, codeAt, enrolTotp, sideDb } from './helpers/mfa.js'
import { suite } from './helpers/suite.js'
import { type CreationOptions, type RequestOptions, SoftAuthenticator } from './helpers/webauthn.js'

/**
 * Parallel requests against one account, as an attacker (or two tabs) sends them: each property holds however
 * the requests interleave. They go through inject all at once (Promise.all), so on PostgreSQL every request
 * runs on its own pooled connection and the statements of different requests interleave for real.
 */

const MFA = '/api/users/me/mfa'
const PASSKEYS = '/api/users/me/passkeys'
const ORIGIN = 'https://portrait.example'
const PARALLEL = 8

const times = <T>(n: number, make: (index: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, index) => make(index)))

async function register(client: TestClient, session: Session, authenticator: SoftAuthenticator) {
  const options = await client.send('POST', `${PASSKEYS}/registration-options`, undefined, session.access)
  assert.equal(options.statusCode, 200, options.body)
  const created = await client.send('POST', PASSKEYS, { name: 'Laptop', response: authenticator.create(options.json() as CreationOptions) }, session.access)
  assert.equal(created.statusCode, 201, created.body)
}

for (const dialect of DIALECTS) {
  suite(`parallel requests on one account (${dialect.name})`, dialect.skip, () => {
    test('when recovery codes are regenerated 8 times at once, then exactly one returned set of 10 is live and only its codes work', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { recoveryCodes: first } = await enrolTotp(client, me)

      const replies = await times(PARALLEL, () => client.send('POST', `${MFA}/recovery-codes`, undefined, me.access))
      assert.deepEqual(
        replies.map((reply) => reply.statusCode),
        replies.map(() => 200),
        replies.map((reply) => `${reply.statusCode} ${reply.json().type ?? ''}`).join(', '),
      )
      const sets = replies.map((reply) => (reply.json() as { recovery_codes: string[] }).recovery_codes)
      assert.equal((await client.get(MFA, me.access)).json().recovery_codes_left, 10)
      const stored = await sideDb(t, config).selectFrom('mfa_recovery_codes').select('code_hash').where('user_id', '=', me.user.id).execute()
      const live = new Set(stored.map((row) => row.code_hash))
      const winners = sets.filter((set) => set.every((code) => live.has(recoveryCodeHash(code) as string)))
      assert.equal(winners.length, 1, 'the live codes are exactly one returned set')
      assert.equal(live.size, 10)

      const verify = (code: string) => client.send('POST', `${MFA}/verify`, { recovery_code: code }, me.access)
      for (const set of [first, ...sets.filter((set) => set !== winners[0])]) {
        problemOf(await verify(set[0] as string), 400)
      }
      assert.equal((await verify((winners[0] as string[])[0] as string)).statusCode, 204)
    })

    test('when TOTP enrolment is started several times at once with nothing enabled, then none answers 409 and one secret confirms', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()

      const replies = await times(PARALLEL, () => client.send('POST', `${MFA}/totp`, undefined, me.access))
      assert.deepEqual(
        replies.map((reply) => reply.statusCode),
        replies.map(() => 200),
        replies.map((reply) => `${reply.statusCode} ${reply.json().type ?? ''}`).join(', '),
      )
      let confirmed = 0
      for (const reply of replies) {
        const answer = await client.send('POST', `${MFA}/totp/confirm`, { code: codeAt(reply.json().secret as string) }, me.access)
        if (answer.statusCode === 200) confirmed += 1
        else assert.ok([400, 409].includes(answer.statusCode), answer.body)
      }
      assert.equal(confirmed, 1, 'the pending secret is one of those returned')
      assert.equal((await client.get(MFA, me.access)).json().totp, true)
    })

    test('when one challenge is sent with six different recovery codes at once, then one signs in and the other five codes still work', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { recoveryCodes } = await enrolTotp(client, me)
      const challenged = await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })
      const { challenge } = challenged.json() as { challenge: string }

      const codes = recoveryCodes.slice(2, 8)
      const replies = await Promise.all(codes.map((code) => client.send('POST', '/api/auth/sign-in/mfa', { challenge, recovery_code: code })))
      const won = replies.filter((reply) => reply.statusCode === 200)
      assert.equal(won.length, 1, replies.map((reply) => `${reply.statusCode} ${reply.body}`).join('\n'))
      for (const reply of replies.filter((reply) => reply.statusCode !== 200)) {
        assert.equal(problemOf(reply, 401).type, '/problems/invalid_mfa_challenge')
      }
      assert.equal((await client.get(MFA, me.access)).json().recovery_codes_left, 9, 'only the winning code is used up')
      const losers = codes.filter((_, index) => replies[index]?.statusCode !== 200)
      for (const code of losers) {
        assert.equal((await client.send('POST', `${MFA}/verify`, { recovery_code: code }, me.access)).statusCode, 204, `${code} still works`)
      }
    })

    test('when one challenge is sent with a TOTP code, a recovery code and a wrong code at once, then one signs in and nothing else is used up', async (t) => {
      await awayFromStepEdge()
      const { client } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret, recoveryCodes } = await enrolTotp(client, me)
      const { challenge } = (await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })).json()
      const code = codeAt(secret)
      const recoveryCode = recoveryCodes[0] as string

      const [byCode, byRecoveryCode, wrong] = await Promise.all([
        client.send('POST', '/api/auth/sign-in/mfa', { challenge, code }),
        client.send('POST', '/api/auth/sign-in/mfa', { challenge, recovery_code: recoveryCode }),
        client.send('POST', '/api/auth/sign-in/mfa', { challenge, recovery_code: 'aaaaa-aaaaa' }),
      ])
      assert.equal([byCode, byRecoveryCode].filter((reply) => reply?.statusCode === 200).length, 1, `${byCode?.body}\n${byRecoveryCode?.body}`)
      // The wrong code either held the challenge first and gave it back untouched, or found it used.
      assert.ok(['/problems/invalid_second_factor', '/problems/invalid_mfa_challenge'].includes(problemOf(wrong as never, 401).type))
      const loser = byCode?.statusCode === 200 ? { recovery_code: recoveryCode } : { code }
      assert.equal((await client.send('POST', `${MFA}/verify`, loser, me.access)).statusCode, 204, `${JSON.stringify(loser)} still works`)
    })

    test("when a user presents another user's passkey challenge, then it is refused and the owner's own attempt still succeeds", async (t) => {
      const { client } = await testApp(t, dialect.name, { publicUrl: ORIGIN })
      const alice = await client.signUp()
      const bob = await client.signUp()
      const alicesKey = new SoftAuthenticator(ORIGIN)
      const bobsKey = new SoftAuthenticator(ORIGIN)
      await register(client, bob, bobsKey)

      // Registration: Bob answers Alice's options with his authenticator.
      const aliceOptions = (await client.send('POST', `${PASSKEYS}/registration-options`, undefined, alice.access)).json() as CreationOptions
      problemOf(await client.send('POST', PASSKEYS, { name: 'Stolen', response: new SoftAuthenticator(ORIGIN).create(aliceOptions) }, bob.access), 400)
      const created = await client.send('POST', PASSKEYS, { name: 'Laptop', response: alicesKey.create(aliceOptions) }, alice.access)
      assert.equal(created.statusCode, 201, created.body)

      // Step-up: Bob signs Alice's challenge with his own passkey.
      const stepUp = (await client.send('POST', `${PASSKEYS}/step-up-options`, undefined, alice.access)).json() as RequestOptions
      problemOf(await client.send('POST', `${PASSKEYS}/verify`, { response: bobsKey.get(stepUp) }, bob.access), 400)
      assert.equal((await client.send('POST', `${PASSKEYS}/verify`, { response: alicesKey.get(stepUp) }, alice.access)).statusCode, 204)
    })

    test('when step-up options are asked for many times at once, then at most 5 challenges stay and the oldest go first', async (t) => {
      const { client, config } = await testApp(t, dialect.name, { publicUrl: ORIGIN })
      const me = await client.signUp()
      const key = new SoftAuthenticator(ORIGIN)
      await register(client, me, key)
      const options = () => client.send('POST', `${PASSKEYS}/step-up-options`, undefined, me.access)

      const burst = await times(40, options)
      assert.ok(burst.every((reply) => reply.statusCode === 200))
      const db = sideDb(t, config)
      const count = async () =>
        (await db.selectFrom('passkey_challenges').select('id').where('user_id', '=', me.user.id).where('purpose', '=', 'second-factor').execute()).length
      assert.ok((await count()) <= 5, `${await count()} challenges stored`)

      const sequence: RequestOptions[] = []
      for (let index = 0; index < 6; index++) sequence.push((await options()).json() as RequestOptions)
      assert.equal(await count(), 5)
      const verify = (request: RequestOptions) => client.send('POST', `${PASSKEYS}/verify`, { response: key.get(request) }, me.access)
      problemOf(await verify(sequence[0] as RequestOptions), 400)
      assert.equal((await verify(sequence[1] as RequestOptions)).statusCode, 204, 'the second oldest is still live')
      assert.equal((await verify(sequence[5] as RequestOptions)).statusCode, 204)
    })

    test('when five passkeys are registered at once by an account holding 18, then it ends up with 20 and the rest are refused', async (t) => {
      const { client } = await testApp(t, dialect.name, { publicUrl: ORIGIN })
      const me = await client.signUp()
      const key = new SoftAuthenticator(ORIGIN)
      for (let index = 0; index < 18; index++) await register(client, me, key)
      const options: CreationOptions[] = []
      for (let index = 0; index < 5; index++) {
        options.push((await client.send('POST', `${PASSKEYS}/registration-options`, undefined, me.access)).json() as CreationOptions)
      }

      const replies = await Promise.all(options.map((each) => client.send('POST', PASSKEYS, { name: 'Spare', response: key.create(each) }, me.access)))
      assert.deepEqual(
        replies.map((reply) => reply.statusCode).sort(),
        [201, 201, 400, 400, 400],
        replies.map((reply) => reply.body).join('\n'),
      )
      assert.equal((await client.get(PASSKEYS, me.access)).json().results.length, 20)
    })

    test('when the right password is sent many times at once for an account with a second factor, then at most 5 sign-in challenges stay', async (t) => {
      await awayFromStepEdge()
      const { client, config } = await testApp(t, dialect.name)
      const me = await client.signUp()
      const { secret } = await enrolTotp(client, me)

      const replies = await times(PARALLEL, () => client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD }))
      assert.ok(replies.every((reply) => reply.statusCode === 200 && reply.json().mfa_required === true))
      const stored = await sideDb(t, config).selectFrom('mfa_challenges').select('id_hash').where('user_id', '=', me.user.id).execute()
      assert.ok(stored.length <= 5, `${stored.length} challenges stored`)
      const { challenge } = (await client.send('POST', '/api/auth/sign-in', { username: me.user.username, password: GOOD_PASSWORD })).json()
      const done = await client.send('POST', '/api/auth/sign-in/mfa', { challenge, code: codeAt(secret) })
      assert.equal(done.statusCode, 200, done.body)
    })
  })
}

suite('an email change judged on a row that changed before its write (postgres)', DIALECTS[1]?.skip ?? 'no postgres', () => {
  test('when the owner moves to a new address while a stale token sends the old one in new letter case, then the stale request is judged again and refused', async (t) => {
    const { client, config } = await testApp(t, 'postgres')
    const owner = await client.signUp()
    const db = sideDb(t, config)
    // The thief's token: a session signed in an hour ago, with no password proven since.
    await db.updateTable('sessions').set({ created_at: new Date(Date.now() - 3600_000).toISOString(), reauthenticated_at: null }).where('user_id', '=', owner.user.id).execute()
    const moved = `moved-${owner.user.email}`
    const variant = owner.user.email.toUpperCase()

    // Hold the row: the stale request reads it (the old address), judges a change of letter case, then waits at its UPDATE.
    const pool = new pg.Pool({ connectionString: process.env.TEST_DATABASE_URL, options: `-c search_path=${config.databaseSchema}`, max: 2 })
    deferCleanup(t, () => pool.end())
    const holder = await pool.connect()
    let stale: ReturnType<TestClient['send']>
    try {
      await holder.query('BEGIN')
      await holder.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [owner.user.id])
      stale = client.send('PATCH', '/api/users/me', { email: variant }, owner.access)
      for (let waiting = 0; waiting === 0; ) {
        await new Promise((resume) => setTimeout(resume, 20))
        const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'update \"users\"%'")
        waiting = rows[0].n
      }
      // Meanwhile the owner's change commits (as the API writes it: new address, new version).
      await holder.query('UPDATE users SET email = $1, email_lower = $1, email_verified = false, version = version + 1 WHERE id = $2', [moved, owner.user.id])
      await holder.query('COMMIT')
    } finally {
      holder.release()
    }

    const answer = await stale
    assert.equal(problemOf(answer, 403).type, '/problems/reauthentication_required', 'against the new address the old one is a new address')
    const [row] = await db.selectFrom('users').select(['email']).where('id', '=', owner.user.id).execute()
    assert.equal(row?.email, moved)
  })
})
