/**
 * Re-authentication: an account without two-step sign-in confirms its password before a new email, a passkey
 * or an authenticator app once its sign-in is more than a few minutes old (the server answers 403
 * `reauthentication_required`). `withReauthentication` asks for the password once, in a dialog, confirms it at
 * POST /api/users/me/reauthenticate, then runs the action again.
 */

import * as api from './api.js'
import { checkRequired, clearErrors, showFailure, valuesOf, whileBusy } from './forms.js'

const $ = (id) => document.getElementById(id)

export const needsReauthentication = (error) => error instanceof api.ApiError && error.problem?.type === '/problems/reauthentication_required'

/** Thrown when the person closes the dialog instead: the action did not happen. */
export class ReauthenticationCancelled extends Error {
  constructor() {
    super('Nothing was changed: confirm your password to do this.')
  }
}

// The dialog's answer for the request waiting on it: resolve(true) once confirmed, resolve(false) on close.
let pending = null

/** Opens the dialog; true once the password is confirmed, false when it is closed (Cancel, Escape). */
function askForPassword() {
  const dialog = $('reauth-dialog')
  const form = $('reauth-form')
  // A second request while the dialog is open waits for the same answer.
  if (pending) return pending.promise
  let resolve
  const promise = new Promise((done) => (resolve = done))
  pending = { promise, resolve, opener: document.activeElement }
  form.reset()
  clearErrors(form)
  dialog.showModal()
  $('reauth-password').focus()
  return promise
}

function settle(answer) {
  const waiting = pending
  pending = null
  // Focus goes back where it was. The opener is usually a button disabled while its action runs (whileBusy):
  // then focus leaves the closed dialog for the page, and whileBusy puts it back on the button when it is done.
  const dialog = $('reauth-dialog')
  if (dialog.contains(document.activeElement)) document.activeElement.blur()
  const opener = waiting?.opener
  if (opener instanceof HTMLElement && opener.isConnected && !opener.disabled) opener.focus()
  waiting?.resolve(answer)
}

/** Runs `action`; when the server wants the password again, asks for it once and runs `action` again. */
export async function withReauthentication(action) {
  try {
    return await action()
  } catch (error) {
    if (!needsReauthentication(error)) throw error
  }
  if (!(await askForPassword())) throw new ReauthenticationCancelled()
  return action()
}

/** Wires the dialog (once, at start). */
export function startReauthentication() {
  const dialog = $('reauth-dialog')
  const form = $('reauth-form')
  let confirmed = false
  $('reauth-cancel').addEventListener('click', () => dialog.close())
  // Escape closes a modal dialog by itself; either way the waiting action hears "no".
  dialog.addEventListener('close', () => {
    const answer = confirmed
    confirmed = false
    form.reset()
    clearErrors(form)
    settle(answer)
  })
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(form)
    if (!checkRequired(form)) return
    const { password } = valuesOf(form)
    try {
      await whileBusy(form.querySelector('button[type=submit]'), 'Checking…', () => api.request('POST', '/api/users/me/reauthenticate', { json: { password } }))
      confirmed = true
      dialog.close()
    } catch (error) {
      showFailure(form, error)
    }
  })
}
