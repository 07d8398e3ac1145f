/** The signed-out screen: sign in or create an account, in two tabs. */

import * as api from './api.js'
import { announce, checkRequired, clearErrors, showFailure, valuesOf, whileBusy } from './forms.js'
import { askSecondFactor } from './mfa-panel.js'

const $ = (id) => document.getElementById(id)

const tabs = [$('tab-sign-in'), $('tab-sign-up')]
const signInForm = $('sign-in-form')
const signUpForm = $('sign-up-form')
const notice = $('auth-notice')

function selectTab(tab, { focus = false } = {}) {
  for (const each of tabs) {
    const selected = each === tab
    each.setAttribute('aria-selected', String(selected))
    each.tabIndex = selected ? 0 : -1
    $(each.getAttribute('aria-controls')).hidden = !selected
  }
  if (focus) tab.focus()
}

// Tabs pattern (WAI-ARIA APG): one tab stop, arrow keys move between tabs.
function onTabKey(event) {
  const index = tabs.indexOf(event.currentTarget)
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }
  if (!(event.key in moves)) return
  event.preventDefault()
  selectTab(tabs[(moves[event.key] + tabs.length) % tabs.length], { focus: true })
}

/** Wires the forms; `onSignedIn` runs after a successful sign-in or sign-up. */
export function startAuthView({ onSignedIn }) {
  for (const tab of tabs) {
    tab.addEventListener('click', () => selectTab(tab))
    tab.addEventListener('keydown', onTabKey)
  }

  signInForm.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(signInForm)
    if (!checkRequired(signInForm)) return
    const { login, password } = valuesOf(signInForm)
    const button = signInForm.querySelector('button[type=submit]')
    try {
      await whileBusy(button, 'Signing in…', () => api.signIn(login.trim(), password))
      await onSignedIn()
    } catch (error) {
      if (error instanceof api.SecondFactorRequired) askSecondFactor(error, { signInForm, onSignedIn })
      else showFailure(signInForm, error)
    }
  })

  signUpForm.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(signUpForm)
    if (!checkRequired(signUpForm)) return
    const button = signUpForm.querySelector('button[type=submit]')
    try {
      await whileBusy(button, 'Creating account…', () => api.signUp(valuesOf(signUpForm)))
      await onSignedIn()
    } catch (error) {
      showFailure(signUpForm, error)
    }
  })
}

/** Shows the signed-out screen, empty, with an optional message (e.g. "You have signed out."). */
export function resetAuthView(message = '') {
  document.getElementById('mfa-step')?.remove()
  signInForm.hidden = false
  for (const form of [signInForm, signUpForm]) {
    form.reset()
    clearErrors(form)
  }
  selectTab(tabs[0])
  notice.hidden = !message
  announce(notice, message)
}
