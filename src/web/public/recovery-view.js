/**
 * Account recovery: "Forgot password?" and its email form, the form a reset link opens, the page a
 * verification link opens, and the banner of a profile whose email address is not verified yet.
 */

import * as api from './api.js'
import { announce, checkRequired, clearErrors, showErrors, showFailure, valuesOf, whileBusy } from './forms.js'

const $ = (id) => document.getElementById(id)

const panels = {
  forgot: $('forgot-panel'),
  sent: $('forgot-sent-panel'),
  reset: $('reset-panel'),
  verify: $('verify-panel'),
}
const forgotForm = $('forgot-form')
const resetForm = $('reset-form')
const banner = {
  root: $('verify-banner'),
  email: $('verify-banner-email'),
  resend: $('verify-resend'),
  status: $('verify-banner-status'),
  error: $('verify-banner-error'),
}

/** The paths of the links in Portrait's mails (`<base>/reset-password#token=…`), and what each opens. */
const LINK_PATHS = { '/reset-password': 'reset', '/verify-email': 'verify' }

const EXPIRED_RESET = 'This reset link has expired or has already been used. Ask for a new one.'
const INCOMPLETE_RESET = 'This reset link is incomplete. Open the whole link from the email again, or ask for a new one here.'

// What the app does when this view hands over; set by startRecoveryView.
let app = { onShow() {}, onBack() {}, onPasswordChanged() {}, onContinue() {} }
// The token of the link the page was opened with: in memory only, once it has left the address bar.
let resetToken = null
let verifyToken = null
// The user the banner is about, as the profile last showed it.
let bannerUser = null

/** "5 minutes" for a Retry-After of 300 seconds, "1 hour" for 3599. */
function humanWait(seconds) {
  const minutes = Math.ceil(seconds / 60)
  const [amount, unit] = seconds < 60 ? [seconds, 'second'] : minutes < 60 ? [minutes, 'minute'] : [Math.ceil(seconds / 3600), 'hour']
  return `${amount} ${unit}${amount === 1 ? '' : 's'}`
}

/** The message for a 429, with the wait the server asked for when it said. */
function tooManyMessage(error, what) {
  const wait = error.retryAfter ? `Please try again in ${humanWait(error.retryAfter)}.` : 'Please wait a few minutes and try again.'
  return `Too many ${what} just now. ${wait}`
}

const isTooMany = (error) => error instanceof api.ApiError && error.status === 429

/** Shows one panel of the recovery screen; focus moves to its heading so the change is announced. */
function showPanel(name, title, { moveFocus = true } = {}) {
  for (const [key, panel] of Object.entries(panels)) panel.hidden = key !== name
  app.onShow()
  document.title = `${title} · Portrait`
  if (moveFocus) panels[name].querySelector('h1').focus()
}

const linkKind = () => LINK_PATHS[location.pathname.replace(/\/+$/, '')]

/** The address without a mail link's path, once the screen it opened is left. */
function leaveLinkPath() {
  if (linkKind()) history.replaceState(null, '', '/')
}

function openForgot({ email = '', message = '', moveFocus = true } = {}) {
  forgotForm.reset()
  clearErrors(forgotForm)
  forgotForm.elements.namedItem('email').value = email
  showPanel('forgot', 'Reset your password', { moveFocus })
  if (message) showErrors(forgotForm, {}, message)
}

async function requestReset(event) {
  event.preventDefault()
  clearErrors(forgotForm)
  // The server answers 202 to anything, so a mistyped address would otherwise only ever "be sent".
  const input = forgotForm.elements.namedItem('email')
  const malformed = input.value.trim() !== '' && input.validity.typeMismatch
  if (!checkRequired(forgotForm, malformed ? { email: ['Enter a valid email address.'] } : {})) return
  const email = valuesOf(forgotForm).email.trim()
  try {
    await whileBusy(forgotForm.querySelector('button[type=submit]'), 'Sending…', () => api.requestPasswordReset(email))
  } catch (error) {
    if (isTooMany(error)) return showErrors(forgotForm, {}, tooManyMessage(error, 'reset requests'))
    return showFailure(forgotForm, error)
  }
  $('forgot-sent-email').textContent = email
  showPanel('sent', 'Check your email')
}

function openReset(token, { moveFocus }) {
  resetToken = token
  resetForm.reset()
  clearErrors(resetForm)
  $('reset-request-new').hidden = true
  showPanel('reset', 'Choose a new password', { moveFocus })
}

async function confirmReset(event) {
  event.preventDefault()
  clearErrors(resetForm)
  const values = valuesOf(resetForm)
  const mismatch = values.confirm_password && values.confirm_password !== values.new_password
  if (!checkRequired(resetForm, mismatch ? { confirm_password: ['The two new passwords differ.'] } : {})) return
  try {
    await whileBusy(resetForm.querySelector('button[type=submit]'), 'Changing…', () => api.confirmPasswordReset(resetToken, values.new_password))
  } catch (error) {
    if (!(error instanceof api.ApiError && error.fieldErrors.token)) return showFailure(resetForm, error)
    // `token` is no field of the form: its message goes to the form's alert, beside any field errors.
    showErrors(resetForm, { ...error.fieldErrors, token: [EXPIRED_RESET] })
    const requestNew = $('reset-request-new')
    requestNew.hidden = false
    if (!resetForm.querySelector('[aria-invalid=true]')) requestNew.focus()
    return
  }
  resetToken = null
  resetForm.reset()
  leaveLinkPath()
  app.onPasswordChanged()
}

function showVerifyOutcome({ outcome, title, text, retry = false, moveFocus = true }) {
  const panel = panels.verify
  panel.dataset.outcome = outcome
  $('verify-title').textContent = title
  $('verify-text').textContent = text
  $('verify-retry').hidden = !retry
  const next = $('verify-continue')
  next.hidden = outcome === 'pending'
  next.classList.toggle('button--primary', !retry)
  next.classList.toggle('button--secondary', retry)
  document.title = `${title} · Portrait`
  if (moveFocus) panel.querySelector('h1').focus()
}

async function confirmEmail({ moveFocus = true } = {}) {
  showPanel('verify', 'Verifying your email address', { moveFocus: false })
  showVerifyOutcome({ outcome: 'pending', title: 'Verifying your email address…', text: '', moveFocus: false })
  if (!verifyToken) {
    return showVerifyOutcome({
      outcome: 'failed',
      title: 'This link is incomplete',
      text: 'Open the whole link from the email again. If it still fails, sign in and choose "Send again" for a new one.',
      moveFocus,
    })
  }
  try {
    await whileBusy($('verify-retry'), 'Trying again…', () => api.verifyEmail(verifyToken))
  } catch (error) {
    if (error instanceof api.ApiError && error.fieldErrors.token) {
      verifyToken = null
      return showVerifyOutcome({
        outcome: 'failed',
        title: 'This link cannot be used',
        text: 'The verification link has expired or has already been used. If your address is not verified yet, sign in and choose "Send again" on your profile for a new link.',
        moveFocus,
      })
    }
    return showVerifyOutcome({
      outcome: 'failed',
      title: 'Your address could not be verified just now',
      text: `${error.message} The link has not been used; try again in a moment.`,
      retry: true,
      moveFocus,
    })
  }
  verifyToken = null
  showVerifyOutcome({ outcome: 'verified', title: 'Email address verified', text: 'Thank you: your email address is confirmed.', moveFocus })
}

/**
 * Opens the screen a mail link asks for, when the page was opened with one, and returns true; the token
 * is read once and removed from the address bar (history.replaceState), so that it stays out of the
 * history, the screen and any shared address.
 */
export function openLinkFromAddress({ moveFocus = false } = {}) {
  const kind = linkKind()
  if (!kind) return false
  const token = new URLSearchParams(location.hash.slice(1)).get('token') || null
  if (location.hash) history.replaceState(null, '', location.pathname)
  if (kind === 'verify') {
    verifyToken = token
    confirmEmail({ moveFocus })
  } else if (token) {
    openReset(token, { moveFocus })
  } else {
    openForgot({ message: INCOMPLETE_RESET, moveFocus })
  }
  return true
}

/**
 * Wires the recovery screen and the banner. `onShow` shows the screen; `onBack` returns to the sign-in
 * form as it was; `onPasswordChanged` follows a reset (every session has ended); `onContinue` leaves the
 * verification page for the usual start (profile or sign-in).
 */
export function startRecoveryView(handlers) {
  app = handlers
  $('forgot-open').addEventListener('click', () => {
    const login = $('si-login').value.trim()
    openForgot({ email: login.includes('@') ? login : '' })
  })
  forgotForm.addEventListener('submit', requestReset)
  $('forgot-again').addEventListener('click', () => openForgot({ email: $('forgot-sent-email').textContent }))
  for (const back of document.querySelectorAll('[data-recovery-back]')) {
    back.addEventListener('click', () => {
      leaveLinkPath()
      app.onBack()
    })
  }
  resetForm.addEventListener('submit', confirmReset)
  $('reset-request-new').addEventListener('click', () => openForgot())
  $('verify-retry').addEventListener('click', () => confirmEmail())
  $('verify-continue').addEventListener('click', () => {
    leaveLinkPath()
    app.onContinue()
  })
  banner.resend.addEventListener('click', resendVerification)
  // A link pasted into a tab already on /reset-password or /verify-email changes only the hash: no reload.
  window.addEventListener('hashchange', () => {
    if (/(^#|&)token=/.test(location.hash)) openLinkFromAddress({ moveFocus: true })
  })
}

async function resendVerification() {
  const { id, email } = bannerUser
  banner.error.hidden = true
  announce(banner.status, '')
  try {
    // The server says whether it sent one: the address may have been verified in another tab meanwhile.
    const detail = await whileBusy(banner.resend, 'Sending…', () => api.resendVerification(id))
    announce(banner.status, detail || `Sent. Check your inbox at ${email}.`)
  } catch (error) {
    banner.error.textContent = isTooMany(error) ? tooManyMessage(error, 'verification emails') : error.message
    banner.error.hidden = false
  }
}

/** Shows the banner while the profile's address is unverified (`email_verified` false), hides it otherwise. */
export function showVerificationBanner(user) {
  if (bannerUser?.id !== user.id || bannerUser?.email !== user.email) {
    banner.error.hidden = true
    announce(banner.status, '')
  }
  bannerUser = user
  banner.email.textContent = user.email
  banner.root.hidden = user.email_verified !== false
}
