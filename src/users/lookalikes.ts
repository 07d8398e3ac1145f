import unhomoglyph from 'unhomoglyph'

/**
 * What makes one username pass for another (Unicode Technical Standard #39, "Unicode Security Mechanisms"):
 * the confusable skeleton, the mixed-script restriction level and the checks on combining marks.
 * The property data comes from the JavaScript engine's Unicode tables (`\p{…}` escapes, NFD); the
 * confusables mapping from the `unhomoglyph` package, which ships Unicode's confusables.txt as data.
 */

/** TS #39 §4's skeleton: NFD, each code point replaced by its confusables.txt prototype, NFD again. */
function tr39Skeleton(value: string): string {
  return unhomoglyph(value.normalize('NFD')).normalize('NFD')
}

/**
 * The key under which two usernames that look alike collide, for comparison only, never for display.
 * The skeleton of the name as usernames are compared (NFKC), compared case-insensitively as usernames are:
 * lower-cased and mapped again, so that the prototypes of upper- and lower-case letters meet (upper-case
 * I and lower-case l, O and 0). `rооt` (Cyrillic о), `r00t`, `ROOT` and `root` share one; so do `m` and `rn`.
 */
export function skeleton(value: string): string {
  return tr39Skeleton(tr39Skeleton(value.normalize('NFKC')).toLowerCase()).toLowerCase()
}

// ---- Mixed scripts: TS #39 §5.2 "Moderately Restrictive" -------------------------------------------------

/**
 * Every script the engine knows (ISO 15924 codes), except Common and Inherited, which TS #39 counts as
 * any script. A letter of a script missing here is refused (fail closed); test/username-lookalikes.test.ts
 * checks that every letter, mark and digit of this Node's Unicode version is covered.
 */
const SCRIPTS = `Adlm Aghb Ahom Arab Armi Armn Avst Bali Bamu Bass Batk Beng Berf Bhks Bopo Brah Brai Bugi Buhd Cakm
Cans Cari Cham Cher Chrs Copt Cpmn Cprt Cyrl Deva Diak Dogr Dsrt Dupl Egyp Elba Elym Ethi Gara Geor Glag Gong
Gonm Goth Gran Grek Gujr Gukh Guru Hang Hani Hano Hatr Hebr Hira Hluw Hmng Hmnp Hung Ital Java Kali Kana Kawi
Khar Khmr Khoj Kits Knda Krai Kthi Lana Laoo Latn Lepc Limb Lina Linb Lisu Lyci Lydi Mahj Maka Mand Mani Marc
Medf Mend Merc Mero Miao Mlym Modi Mong Mroo Mtei Mult Mymr Nagm Nand Narb Nbat Newa Nkoo Nshu Ogam Olck Onao
Orkh Orya Osge Osma Ougr Palm Pauc Perm Phag Phli Phlp Phnx Plrd Prti Rjng Rohg Runr Samr Sarb Saur Sgnw Shaw
Shrd Sidd Sidt Sind Sinh Sogd Sogo Sora Soyo Sund Sunu Sylo Syrc Tagb Takr Tale Talu Taml Tang Tavt Tayo Telu
Tfng Tglg Thaa Thai Tibt Tirh Tnsa Todr Tols Toto Tutg Ugar Vaii Vith Wara Wcho Xpeo Xsux Yezi Yiii Zanb`
  .split(/\s+/)
  .map((code): [string, RegExp] => [code, new RegExp(`\\p{Script_Extensions=${code}}`, 'u')])

/**
 * TS #39 §5.1's augmented script sets: Han, kana, Hangul and Bopomofo also count as the writing systems
 * they combine into, so `山田たろう` is single-script (Japanese).
 */
const WRITING_SYSTEMS: [string, RegExp][] = [
  ['Jpan', /[\p{Script_Extensions=Hani}\p{Script_Extensions=Hira}\p{Script_Extensions=Kana}]/u],
  ['Kore', /[\p{Script_Extensions=Hani}\p{Script_Extensions=Hang}]/u],
  ['Hanb', /[\p{Script_Extensions=Hani}\p{Script_Extensions=Bopo}]/u],
]
const SCRIPT_TESTS = new Map([...SCRIPTS, ...WRITING_SYSTEMS])

/** UAX #31 Table 5, Recommended Scripts (Common and Inherited aside). */
const RECOMMENDED = 'Arab Armn Beng Bopo Cyrl Deva Ethi Geor Grek Gujr Guru Hang Hani Hebr Hira Kana Knda Khmr Laoo Latn Mlym Mymr Orya Sinh Taml Telu Thaa Thai Tibt'
/** Latin may go with any one of these; never with Cyrillic or Greek, the scripts whose letters pass for Latin ones. */
const LATIN_PARTNERS = [
  'Jpan',
  'Kore',
  'Hanb',
  ...RECOMMENDED.split(' ').filter((code) => !['Latn', 'Cyrl', 'Grek'].includes(code)),
]

const ANY_SCRIPT = /[\p{Script_Extensions=Common}\p{Script_Extensions=Inherited}]/u
const ASCII = /^[\x20-\x7e]*$/
const LATIN = /\p{Script_Extensions=Latn}/u

const has = (code: string, char: string) => (SCRIPT_TESTS.get(code) as RegExp).test(char)

/**
 * TS #39 §5.2 Moderately Restrictive: ASCII; or single-script (one script plus Common/Inherited, where Han
 * with kana is Japanese, Han with Hangul Korean, Han with Bopomofo Chinese); or Latin plus one other
 * Recommended script except Cyrillic and Greek (so Latin with Han and kana, Hangul, Bopomofo, Arabic…).
 */
export function isModeratelyRestrictive(value: string): boolean {
  if (ASCII.test(value)) return true
  // The resolved script set (scripts every character has), and the Latin partners every non-Latin character has.
  // Only the first character is tested against every script; the rest only against what is still possible.
  let resolved: string[] | undefined
  let partners: string[] | undefined
  for (const char of new Set(value)) {
    if (ANY_SCRIPT.test(char)) continue
    resolved = resolved === undefined ? [...SCRIPT_TESTS.keys()].filter((code) => has(code, char)) : resolved.filter((code) => has(code, char))
    if (!LATIN.test(char)) partners = (partners ?? LATIN_PARTNERS).filter((code) => has(code, char))
    if (resolved.length === 0 && partners?.length === 0) return false
  }
  return true
}

// ---- Combining marks: TS #39 §5.4 -------------------------------------------------------------------------

/** More nonspacing marks than this on one letter are refused (TS #39 §5.4 names 4). */
export const MAX_MARKS_IN_A_ROW = 4

const NONSPACING = /[\p{Mn}\p{Me}]/u
const ENCLOSING = /\p{Me}/u
const INHERITED = /\p{Script_Extensions=Inherited}/u
// U+16FF0 has canonical combining class 6; only class 1 (Overlay) is lower among the combining marks.
const CCC_6 = '\u{16FF0}'

/**
 * An overlay mark (canonical combining class 1, such as U+0338 or U+20D2) that strikes through any letter:
 * canonical reordering (NFD) puts exactly those before a class 6 mark. Script-bound overlays (Bassa Vah
 * tone marks, Vedic signs) are left to their scripts.
 */
function isOverlay(mark: string): boolean {
  return mark !== CCC_6 && INHERITED.test(mark) && [...`a${CCC_6}${mark}`.normalize('NFD')][1] === mark
}

/**
 * Why the combining marks of a name make it a disguise, or undefined: a mark drawn over or around a letter,
 * more than MAX_MARKS_IN_A_ROW nonspacing marks on one letter, or one mark twice on the same letter.
 */
export function markProblem(value: string): string | undefined {
  let run: string[] = []
  for (const char of value.normalize('NFD')) {
    if (!NONSPACING.test(char)) {
      run = []
      continue
    }
    if (ENCLOSING.test(char) || isOverlay(char)) return `it contains a mark drawn over or around a letter (${codePointName(char)})`
    if (run.includes(char)) return `it repeats a mark on one letter (${codePointName(char)})`
    run.push(char)
    if (run.length > MAX_MARKS_IN_A_ROW) return `at most ${MAX_MARKS_IN_A_ROW} accents or marks may follow one letter`
  }
  return undefined
}

// ---- Invisible characters ---------------------------------------------------------------------------------

const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\p{Cf}]/u
const BIDI = /\p{Bidi_Control}/u
/** Joiners and variation selectors shape the visible character before them (Persian, Indic scripts, emoji). */
const SHAPING = /^(?:\u200c|\u200d|\p{Variation_Selector})$/u

/** `U+202E`: how a problem names the character it found. */
export function codePointName(char: string): string {
  return `U+${(char.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}`
}

/**
 * The first invisible character (default-ignorable, format or bidi control) in the value, or undefined.
 * With `allowShaping`, a joiner or variation selector right after a visible character is not counted.
 */
export function invisibleCharacter(value: string, { allowShaping = false } = {}): { char: string; bidi: boolean } | undefined {
  if (!INVISIBLE.test(value)) return undefined
  let previousVisible = false
  for (const char of value) {
    const invisible = INVISIBLE.test(char)
    if (invisible && !(allowShaping && previousVisible && SHAPING.test(char))) return { char, bidi: BIDI.test(char) }
    previousVisible = !invisible && !/\s/u.test(char)
  }
  return undefined
}
