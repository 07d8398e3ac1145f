import assert from 'node:assert/strict'
import { test } from 'node:test'
import { rules } from '../src/users/field-rules.js'
import { invisibleCharacter, isModeratelyRestrictive, markProblem, skeleton } from '../src/users/lookalikes.js'

// The pieces of TS #39 that usernames are judged by, one by one. The attacks over HTTP are in
// test/hardening/lookalikes.test.ts.

test('when any letter, mark or digit of this Node version stands alone, then its script is known (no script list gap refuses a language)', () => {
  const alphabet = /[\p{L}\p{M}\p{Nd}]/u
  const missing: string[] = []
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue
    const char = String.fromCodePoint(cp)
    if (alphabet.test(char) && !isModeratelyRestrictive(char)) missing.push(cp.toString(16))
  }
  assert.deepEqual(missing, [], `${process.versions.unicode}: no script known for ${missing.slice(0, 20).join(' ')}`)
})

test('when names look alike, then their skeletons are equal; when they only share letters, then not', () => {
  const same: [string, string][] = [
    ['root', 'r\u043E\u043Et'],
    ['root', 'ROOT'],
    ['root', 'r00t'],
    ['alice', 'aIice'],
    ['m', 'rn'],
    ['pop', '\u0440\u043E\u0440'],
    ['pop', '\u03A1\u039F\u03A1'],
    ['pop', '\uFF50\uFF4F\uFF50'],
    ['Zoë', 'Zoe\u0308'],
  ]
  for (const [a, b] of same) assert.equal(skeleton(a), skeleton(b), `${a} / ${b}`)
  const different: [string, string][] = [
    ['José', 'Jose'],
    ['山田', '山由'],
    ['ada', 'adam'],
    ['Ünïcödé', 'Unicode'],
  ]
  for (const [a, b] of different) assert.notEqual(skeleton(a), skeleton(b), `${a} / ${b}`)
})

test('when scripts are mixed, then only what TS #39 Moderately Restrictive allows passes', () => {
  const allowed = ['ada', 'José.Núñez', 'Ünïcödé', '山田_太郎', '山田たろう', 'たなか_Tanaka', '田中taro', '김철수kim', '注音ㄅㄆ', 'Пётр', 'Ελένη', 'محمد', 'ali_محمد', 'सुनील', 'ไทย', '٣', 'abc٣', 'Ⲡⲁⲩⲗⲟⲥ']
  for (const value of allowed) assert.equal(isModeratelyRestrictive(value), true, value)
  const refused = ['r\u043E\u043Et', 'ro\u03BFt', 'Пётрos', 'Ελένηs', 'Пётр_Ελένη', 'Ꭺdmin', '김철수たなか', 'abcⲁ', 'سلامשלום']
  for (const value of refused) assert.equal(isModeratelyRestrictive(value), false, value)
})

test('when marks are stacked, drawn over or around a letter, or repeated, then the username is refused; accents in use pass', () => {
  for (const value of ['Nguyễn', 'Ünïcödé', 'བསྒྲུབས', 'ệ\u0300']) assert.equal(markProblem(value), undefined, value)
  assert.match(markProblem('a\u0300\u0301\u0302\u0303\u0304') ?? '', /at most 4/)
  assert.match(markProblem('e\u0301\u0301') ?? '', /repeats a mark.*U\+0301/)
  for (const overlay of ['\u0334', '\u0335', '\u0336', '\u0337', '\u0338', '\u20D2', '\u20D3', '\u20D8', '\u20E5', '\u20EB']) {
    assert.match(markProblem(`o${overlay}`) ?? '', /over or around/, overlay.codePointAt(0)?.toString(16))
  }
  assert.match(markProblem('o\u20DD') ?? '', /over or around.*U\+20DD/)
})

test('when text holds invisible or direction characters, then usernames refuse all, names all but joiners after a letter', () => {
  for (const char of ['\u034F', '\uFE0F', '\u180B', '\u200B', '\u200D', '\u2060', '\u00AD', '\u3164', '\u115F', '\u{E0041}', '\u{1D173}']) {
    assert.equal(invisibleCharacter(`ab${char}c`)?.char, char, char.codePointAt(0)?.toString(16))
    assert.ok(rules.username(`ab${char}c`), char.codePointAt(0)?.toString(16))
  }
  for (const char of ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069', '\u200E', '\u200F', '\u061C']) {
    assert.equal(invisibleCharacter(`ab${char}c`)?.bidi, true, char.codePointAt(0)?.toString(16))
    assert.match(rules.first_name(`Ann${char}Lee`) ?? '', /Text-direction control characters/)
    assert.match(rules.last_name(`${char}Lee`) ?? '', /Text-direction control characters/)
  }
  for (const name of ['Zo\u200Be', '\u200DLee', 'Ann \uFE0F', 'A\u2060nn', 'A\u00ADnn']) assert.match(rules.first_name(name) ?? '', /Invisible characters/, name)
  // Nothing the walk above names, refused all the same: the rule never lets through what its pattern refuses.
  for (const name of ['Ann\u0000Lee', 'Ann\r\nBcc: x@evil.example', 'Ann\u001b[31m', 'Ann\uD800', 'Ann\u2028Lee', 'Ann\u2029']) {
    assert.match(rules.first_name(name) ?? '', /Control characters and line breaks/, JSON.stringify(name))
  }
  for (const name of ['Ann Lee', 'مهر\u200Cآفرین', 'ജ്\u200D', '❤\uFE0F', '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}', '葛\u{E0100}']) assert.equal(rules.first_name(name), undefined, name)
})
