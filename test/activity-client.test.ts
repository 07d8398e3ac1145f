import assert from 'node:assert/strict'
import { test } from 'node:test'
import { deviceLabel, maskAddress } from '../src/activity/client.js'
import { publicSessionId } from '../src/activity/sessions.service.js'
import { newDeviceSignInMail } from '../src/mail/templates.js'

// What a person is shown of a client: a masked address and a device label (pure functions, no database).

test('when addresses are masked, then IPv4 shows its /24, IPv6 its /64, IPv4-mapped as IPv4, and junk nothing', () => {
  const cases: [string | null, string | null][] = [
    ['203.0.113.77', '203.0.113.0/24'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:DB8:0:0:1::1', '2001:db8:0:0::/64'],
    ['::ffff:198.51.100.9', '198.51.100.0/24'],
    ['[2001:db8::1]:5678', '2001:db8:0:0::/64'],
    ['not an address', null],
    [null, null],
  ]
  for (const [address, masked] of cases) assert.equal(maskAddress(address), masked, String(address))
})

test('when User-Agents are labelled, then browser, major version and system are named, and anything else is an unknown device', () => {
  const cases: [string | undefined, string][] = [
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:131.0) Gecko/20100101 Firefox/131.0', 'Firefox 131 on macOS'],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1', 'Safari 17 on iOS'],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36', 'Chrome 130 on Android'],
    ['curl/8.5.0', 'Unknown device'],
    ['', 'Unknown device'],
    [undefined, 'Unknown device'],
  ]
  for (const [agent, label] of cases) assert.equal(deviceLabel(agent), label, String(agent))
})

test('when a session id is shown, then it is a fixed-length digest that reveals no part of the id', () => {
  const id = 'AbCdEfGhIjKlMnOpQrStUv'
  const shown = publicSessionId(id)
  assert.match(shown, /^[A-Za-z0-9_-]{22}$/)
  assert.equal(publicSessionId(id), shown)
  assert.notEqual(publicSessionId(`${id.slice(0, -1)}w`), shown)
  assert.ok(!shown.includes(id.slice(0, 6)))
})

test('when the new-device notice is written, then it names the device, the masked address and the time, in text and HTML alike', () => {
  const mail = newDeviceSignInMail('ada@example.com', 'ada', { device: 'Firefox 131 on <macOS>', address: '203.0.113.0/24', at: '2026-12-01 12:00:00' })
  assert.equal(mail.to, 'ada@example.com')
  assert.equal(mail.subject, 'Portrait: a new sign-in to your account')
  assert.match(mail.text, /Firefox 131 on <macOS>, from 203\.0\.113\.0\/24, at 2026-12-01 12:00:00 \(UTC\)/)
  assert.match(mail.html, /Firefox 131 on &lt;macOS&gt;, from 203\.0\.113\.0\/24/)
  assert.ok(!/<a /.test(mail.html), 'no link to follow')
  const unknown = newDeviceSignInMail('ada@example.com', 'ada', { device: 'Unknown device', address: null, at: '2026-12-01 12:00:00' })
  assert.match(unknown.text, /seen before: Unknown device, at /)
})
