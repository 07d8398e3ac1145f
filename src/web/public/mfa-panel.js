/**
 * Two-step sign-in: the profile's panel (set up an authenticator app, recovery codes shown once, new codes,
 * confirm it's you, turn off) and the sign-in form's second step (a code, or a recovery code).
 */

import * as api from './api.js'
import { announce, checkRequired, clearErrors, showErrors, showFailure, valuesOf, whileBusy } from './forms.js'
import { browserFailure, getAssertion } from './passkeys-panel.js'
import { withReauthentication } from './reauthenticate.js'

const $ = (id) => document.getElementById(id)

/** Builds an element: `h('p', { class: 'muted' }, 'text', child…)`. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) element.setAttribute(name, '')
    else if (value !== false && value !== undefined) element.setAttribute(name, value)
  }
  element.append(...children.filter((child) => child !== null && child !== undefined))
  return element
}

/** A labelled field with its error line beside it (forms.js finds `<id>-error`). */
function field(id, name, label, attributes = {}, hint) {
  const hintId = hint ? `${id}-hint` : undefined
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none', 'aria-describedby': hintId, ...attributes }),
    hint ? h('p', { class: 'field__hint', id: hintId }, hint) : null,
    h('p', { class: 'field__error', id: `${id}-error`, hidden: true }),
  )
}

const codeField = (id, label = 'Code from your app') =>
  field(id, 'code', label, { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '20', required: true })

function form(id, ...children) {
  return h('form', { class: 'form', id, novalidate: true }, h('p', { class: 'form__error', role: 'alert', 'data-form-error': true, hidden: true }), ...children)
}

/** A code typed into one box: six digits are an app code, anything else a recovery code. */
function proofOf(text) {
  const value = text.trim()
  return /^\d{6}$/.test(value.replace(/\s/g, '')) ? { code: value.replace(/\s/g, '') } : { recovery_code: value }
}

// --- the profile's panel ---------------------------------------------------------------------------------------

let panel = null
let body = null
let status = null

/** Puts the panel's content in place of what it showed; focus goes to `focus` (an element id) when given. */
function showInPanel(nodes, focus) {
  body.replaceChildren(...nodes)
  if (focus) $(focus)?.focus()
}

function showOff() {
  const start = h('button', { type: 'button', class: 'button button--secondary', id: 'mfa-start' }, 'Set up two-step sign-in')
  start.addEventListener('click', () => enrol(start))
  showInPanel([h('p', { class: 'muted' }, 'Sign in with your password and a code from an authenticator app on your phone.'), start])
}

async function enrol(button) {
  try {
    // A session signed in a while ago confirms the password first (reauthenticate.js).
    const enrolment = await whileBusy(button, 'Starting…', () => withReauthentication(() => api.request('POST', '/api/users/me/mfa/totp').then((r) => r.data)))
    showEnrolment(enrolment)
  } catch (error) {
    announce(status, error.message)
  }
}

function showEnrolment({ secret, qr_svg }) {
  const image = h('img', { id: 'mfa-qr', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(qr_svg)}`, width: '180', height: '180', alt: 'QR code of the set-up key' })
  const confirm = form('mfa-confirm-form', codeField('mfa-confirm-code'))
  const actions = h('div', { class: 'button-row' }, h('button', { type: 'submit', class: 'button button--primary' }, 'Turn on'))
  const cancel = h('button', { type: 'button', class: 'button button--ghost' }, 'Cancel')
  cancel.addEventListener('click', () => showOff())
  actions.append(cancel)
  confirm.append(actions)
  confirm.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(confirm)
    if (!checkRequired(confirm)) return
    try {
      const { data } = await whileBusy(confirm.querySelector('button[type=submit]'), 'Checking…', () =>
        api.request('POST', '/api/users/me/mfa/totp/confirm', { json: { code: valuesOf(confirm).code.trim() } }),
      )
      showRecoveryCodes(data.recovery_codes, 'Two-step sign-in is on.')
    } catch (error) {
      showFailure(confirm, error)
    }
  })
  showInPanel(
    [
      h('p', {}, 'Scan this code with your authenticator app, or type the key into it. Then enter the 6 digits it shows.'),
      image,
      h('p', { class: 'field__hint' }, 'Key: ', h('code', { id: 'mfa-secret' }, secret)),
      confirm,
    ],
    'mfa-confirm-code',
  )
}

/** Shows the recovery codes this once; the panel goes on only after "I saved them". */
function showRecoveryCodes(codes, message) {
  const list = h('ol', { id: 'mfa-recovery-codes', class: 'mfa-codes' }, ...codes.map((code) => h('li', {}, h('code', {}, code))))
  const copy = h('button', { type: 'button', class: 'button button--secondary', id: 'mfa-copy' }, 'Copy codes')
  const copied = h('p', { class: 'status', role: 'status' })
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(codes.join('\n'))
      announce(copied, 'Copied.')
    } catch {
      announce(copied, 'Copying is not allowed here: select the codes and copy them yourself.')
    }
  })
  const saved = h('input', { type: 'checkbox', id: 'mfa-saved' })
  const done = h('button', { type: 'button', class: 'button button--primary', id: 'mfa-done', disabled: true }, 'Done')
  saved.addEventListener('change', () => {
    done.disabled = !saved.checked
  })
  done.addEventListener('click', () => loadMfaPanel({ focus: 'mfa-title' }))
  showInPanel(
    [
      h('p', { id: 'mfa-codes-intro' }, `${message} Keep these recovery codes somewhere safe: each signs you in once if you lose your phone. They are shown only now.`),
      list,
      h('div', { class: 'button-row' }, copy),
      copied,
      h('div', { class: 'field' }, h('label', { for: 'mfa-saved' }, saved, ' I saved these codes')),
      done,
    ],
    'mfa-codes-intro',
  )
  $('mfa-codes-intro').tabIndex = -1
  $('mfa-codes-intro').focus()
}

function showOn(state) {
  const left = state.recovery_codes_left
  const verify = form(
    'mfa-verify-form',
    h('h3', {}, 'Confirm it’s you'),
    h('p', { class: 'muted' }, 'Changing your password or email, adding or deleting a passkey, deleting the account and turning this off ask for a code. Confirm once here and they will not ask again for 5 minutes.'),
    field('mfa-verify-code', 'code', 'Code from your app, or a recovery code', { required: true, maxlength: '40', autocomplete: 'one-time-code' }),
    h('div', { class: 'form__actions' }, h('button', { type: 'submit', class: 'button button--secondary' }, 'Confirm'), h('p', { class: 'status', role: 'status', 'data-form-status': true })),
  )
  verify.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(verify)
    if (!checkRequired(verify)) return
    try {
      await whileBusy(verify.querySelector('button[type=submit]'), 'Checking…', () =>
        api.request('POST', '/api/users/me/mfa/verify', { json: proofOf(valuesOf(verify).code) }),
      )
      verify.reset()
      announce(verify.querySelector('[data-form-status]'), 'Confirmed for the next 5 minutes.')
      await refreshCount()
    } catch (error) {
      showCodeFailure(verify, error)
    }
  })

  const renew = h('button', { type: 'button', class: 'button button--ghost', id: 'mfa-renew' }, 'New recovery codes')
  renew.addEventListener('click', async () => {
    try {
      const { data } = await whileBusy(renew, 'Making codes…', () => api.request('POST', '/api/users/me/mfa/recovery-codes', { json: {} }))
      showRecoveryCodes(data.recovery_codes, 'Your old recovery codes no longer work.')
    } catch (error) {
      announce(status, error.status === 403 ? 'Confirm it’s you with a code first, then ask again.' : error.message)
    }
  })

  const disable = form(
    'mfa-disable-form',
    h('h3', {}, 'Turn off'),
    field('mfa-disable-password', 'password', 'Password', { type: 'password', required: true, maxlength: '1024', autocomplete: 'current-password' }),
    field('mfa-disable-code', 'code', 'Code from your app, or a recovery code', { maxlength: '40', autocomplete: 'one-time-code' }, 'Not needed if you confirmed in the last 5 minutes.'),
    h('div', { class: 'form__actions' }, h('button', { type: 'submit', class: 'button button--danger-outline' }, 'Turn off two-step sign-in')),
  )
  disable.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(disable)
    if (!checkRequired(disable)) return
    const { password, code } = valuesOf(disable)
    try {
      await whileBusy(disable.querySelector('button[type=submit]'), 'Turning off…', () =>
        api.request('DELETE', '/api/users/me/mfa/totp', { json: { password, ...(code.trim() ? proofOf(code) : {}) } }),
      )
      await loadMfaPanel({ focus: 'mfa-title' })
      announce(status, 'Two-step sign-in is off.')
    } catch (error) {
      showCodeFailure(disable, error)
    }
  })

  showInPanel([
    h('p', { id: 'mfa-state' }, `Two-step sign-in is on. ${left === 1 ? '1 recovery code' : `${left} recovery codes`} left.`),
    h('div', { class: 'button-row' }, renew),
    verify,
    disable,
  ])
}

/** A failure shown on a form with one `code` box, whatever the server called the field. */
function showCodeFailure(target, error) {
  showErrors(target, renamed(error.fieldErrors, 'code'), error.message)
}

/** The server names the step-up fields otp_code / recovery_code; the panel's forms have one `code` box. */
function renamed(fieldErrors = {}, to) {
  const errors = {}
  for (const [name, messages] of Object.entries(fieldErrors)) errors[['otp_code', 'recovery_code', 'code'].includes(name) ? to : name] = messages
  return errors
}

async function refreshCount() {
  const { data } = await api.request('GET', '/api/users/me/mfa')
  const line = $('mfa-state')
  if (line && data.totp) line.textContent = `Two-step sign-in is on. ${data.recovery_codes_left} recovery codes left.`
}

/** Shows the panel as the server says it is (after sign-in, and after each change). */
export async function loadMfaPanel({ focus } = {}) {
  panel ??= $('mfa-panel')
  if (!panel) return
  if (!body) {
    status = h('p', { class: 'status', role: 'status', id: 'mfa-status' })
    body = h('div', { id: 'mfa-body' })
    panel.replaceChildren(h('h2', { id: 'mfa-title', tabindex: '-1' }, 'Two-step sign-in'), body, status)
  }
  try {
    const { data } = await api.request('GET', '/api/users/me/mfa')
    if (data.totp) showOn(data)
    else showOff()
  } catch (error) {
    showInPanel([h('p', { class: 'form__error', role: 'alert' }, error.message)])
  }
  if (focus) $(focus)?.focus()
}

// --- the sign-in form's second step -----------------------------------------------------------------------------

/**
 * Replaces the sign-in form with the second step until it completes (then `onSignedIn`) or the person goes
 * back. `needed`: the SecondFactorRequired error api.signIn threw (challenge and methods).
 */
export function askSecondFactor(needed, { signInForm, onSignedIn }) {
  document.getElementById('mfa-step')?.remove()
  let recovery = false
  const label = h('label', { for: 'mfa-step-code' }, 'Code from your authenticator app')
  const input = h('input', { id: 'mfa-step-code', name: 'code', required: true, maxlength: '40', inputmode: 'numeric', autocomplete: 'one-time-code', spellcheck: 'false', autocapitalize: 'none' })
  const step = form(
    'mfa-step',
    h('p', { id: 'mfa-step-intro', tabindex: '-1' }, 'Your password was right. One more step: enter the code your app shows now.'),
    h('div', { class: 'field' }, label, input, h('p', { class: 'field__error', id: 'mfa-step-code-error', hidden: true })),
    h('button', { type: 'submit', class: 'button button--primary button--block' }, 'Sign in'),
  )
  const toggle = h('button', { type: 'button', class: 'button button--ghost', id: 'mfa-step-toggle' }, 'Use a recovery code instead')
  const back = h('button', { type: 'button', class: 'button button--ghost', id: 'mfa-step-back' }, 'Back')
  // An account's passkeys complete the sign-in too (passkeys-panel.js does the browser's part).
  const passkey = h('button', { type: 'button', class: 'button button--secondary button--block', id: 'mfa-step-passkey' }, 'Use a passkey instead')
  if (needed.methods.includes('passkey')) step.append(passkey)
  step.append(h('div', { class: 'button-row' }, ...(needed.methods.includes('recovery_code') ? [toggle] : []), back))
  passkey.addEventListener('click', async () => {
    clearErrors(step)
    try {
      await whileBusy(passkey, 'Waiting for your passkey…', async () => {
        try {
          const response = await getAssertion(await api.secondFactorPasskeyOptions(needed.challenge))
          return await api.completeSignIn(needed.challenge, { passkey: response })
        } catch (error) {
          throw browserFailure(error)
        }
      })
      step.remove()
      signInForm.hidden = false
      await onSignedIn()
    } catch (error) {
      showFailure(step, error)
    }
  })
  toggle.addEventListener('click', () => {
    recovery = !recovery
    label.textContent = recovery ? 'Recovery code' : 'Code from your authenticator app'
    input.inputMode = recovery ? 'text' : 'numeric'
    toggle.textContent = recovery ? 'Use a code from the app instead' : 'Use a recovery code instead'
    input.value = ''
    input.focus()
  })
  const leave = () => {
    step.remove()
    signInForm.hidden = false
    signInForm.elements.namedItem('password').value = ''
    signInForm.elements.namedItem('password').focus()
  }
  back.addEventListener('click', leave)
  step.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(step)
    if (!checkRequired(step)) return
    const value = input.value.trim()
    const proof = recovery ? { recovery_code: value } : { code: value.replace(/\s/g, '') }
    try {
      await whileBusy(step.querySelector('button[type=submit]'), 'Signing in…', () => api.completeSignIn(needed.challenge, proof))
      step.remove()
      signInForm.hidden = false
      await onSignedIn()
    } catch (error) {
      if (error.status === 401 && error.problem?.type === '/problems/invalid_mfa_challenge') {
        leave()
        showFailure(signInForm, error)
      } else {
        showCodeFailure(step, error)
      }
    }
  })
  signInForm.hidden = true
  signInForm.after(step)
  input.focus()
}
