/**
 * Passkeys on the page: the "Passkeys" panel of the profile (add with a name, list, rename, delete) and the
 * "Sign in with a passkey" button of the sign-in form. Both stay hidden unless the server says passkeys work
 * for this origin (GET /api/auth/passkey) and the browser has WebAuthn.
 */

import * as api from './api.js'
import { announce, checkRequired, clearErrors, showErrors, showFailure, whileBusy } from './forms.js'
import { withReauthentication } from './reauthenticate.js'

const $ = (id) => document.getElementById(id)

// base64url <-> bytes: WebAuthn speaks ArrayBuffers, the API JSON speaks base64url.
function toBytes(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4)
  return Uint8Array.from(atob(base64), (char) => char.charCodeAt(0))
}

function toText(buffer) {
  let binary = ''
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

const withIds = (list) => (list ?? []).map((entry) => ({ ...entry, id: toBytes(entry.id) }))

async function createCredential(options) {
  const publicKey = { ...options, challenge: toBytes(options.challenge), user: { ...options.user, id: toBytes(options.user.id) }, excludeCredentials: withIds(options.excludeCredentials) }
  const credential = await navigator.credentials.create({ publicKey })
  const { response } = credential
  return {
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: toText(response.clientDataJSON),
      attestationObject: toText(response.attestationObject),
      transports: response.getTransports?.() ?? [],
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
  }
}

/** navigator.credentials.get with the API's request options, answered as the API's JSON. */
export async function getAssertion(options) {
  const publicKey = { ...options, challenge: toBytes(options.challenge), allowCredentials: withIds(options.allowCredentials) }
  const credential = await navigator.credentials.get({ publicKey })
  const { response } = credential
  return {
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: toText(response.clientDataJSON),
      authenticatorData: toText(response.authenticatorData),
      signature: toText(response.signature),
      ...(response.userHandle ? { userHandle: toText(response.userHandle) } : {}),
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
  }
}

/** The browser's own refusals (cancelled, timed out, not allowed here) in words, as an Error for showFailure. */
export function browserFailure(error) {
  if (error instanceof api.ApiError || error instanceof api.NetworkError) return error
  if (error?.name === 'NotAllowedError') return new Error('The passkey request was cancelled or timed out.')
  if (error?.name === 'InvalidStateError') return new Error('This device already holds one of your passkeys.')
  return new Error('This browser could not use a passkey here.')
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const when = (iso) => dateFormat.format(new Date(iso))

let available = false
/** How many passkeys the list shows: with one, a step-up can use it instead of a code. */
let shownCount = 0

const needsStepUp = (error) => error instanceof api.ApiError && error.problem?.type === '/problems/step_up_required'

/**
 * Runs `action`; when the server asks for a recent second factor (an account with two-step sign-in adding or
 * deleting a passkey), confirms with one of the person's passkeys and runs it once more. Without a passkey to
 * use, the person confirms with a code in the two-step panel.
 */
async function withStepUp(action) {
  try {
    return await action()
  } catch (error) {
    if (!needsStepUp(error)) throw error
    if (shownCount === 0) throw new Error('First confirm it’s you with a code under “Two-step sign-in”, then try again.')
  }
  try {
    await api.verifyWithPasskey(getAssertion)
  } catch (error) {
    throw browserFailure(error)
  }
  return action()
}

/** Whether passkeys work here: the browser has WebAuthn and the server knows its RP ID for this origin. */
async function checkAvailable() {
  if (!window.PublicKeyCredential || !window.isSecureContext) return false
  try {
    return (await api.passkeySupport()).available === true
  } catch {
    return false
  }
}

function renderList(passkeys) {
  shownCount = passkeys.length
  const list = $('passkey-list')
  list.replaceChildren()
  $('passkey-empty').hidden = passkeys.length > 0
  for (const passkey of passkeys) list.append(renderItem(passkey))
}

function renderItem(passkey) {
  const item = document.createElement('li')
  item.className = 'passkey'
  item.dataset.passkeyId = String(passkey.id)
  const name = document.createElement('p')
  name.className = 'passkey__name'
  name.textContent = passkey.name
  const meta = document.createElement('p')
  meta.className = 'muted passkey__meta'
  meta.textContent = `Added ${when(passkey.created_at)} · ${passkey.last_used_at ? `last used ${when(passkey.last_used_at)}` : 'not used yet'}`
  const actions = document.createElement('div')
  actions.className = 'button-row'
  const rename = button('Rename', `Rename passkey ${passkey.name}`)
  const remove = button('Delete', `Delete passkey ${passkey.name}`)
  actions.append(rename, remove)
  item.append(name, meta, actions)
  rename.addEventListener('click', () => item.replaceWith(renderRenameForm(passkey)))
  remove.addEventListener('click', async () => {
    if (!window.confirm(`Delete the passkey “${passkey.name}”? It will no longer sign you in.`)) return
    try {
      await whileBusy(remove, 'Deleting…', () => withReauthentication(() => withStepUp(() => api.deletePasskey(passkey.id))))
      announce($('passkey-status'), `Passkey “${passkey.name}” deleted.`)
      await refresh()
      $('passkey-name').focus()
    } catch (error) {
      showFailure($('passkey-form'), error)
    }
  })
  return item
}

function button(text, label) {
  const element = document.createElement('button')
  element.type = 'button'
  element.className = 'button button--ghost button--small'
  element.textContent = text
  element.setAttribute('aria-label', label)
  return element
}

function renderRenameForm(passkey) {
  const item = document.createElement('li')
  item.className = 'passkey'
  const form = document.createElement('form')
  form.className = 'form'
  form.noValidate = true
  const inputId = `passkey-rename-${passkey.id}`
  form.innerHTML = `
    <p class="form__error" role="alert" data-form-error hidden></p>
    <div class="field">
      <label for="${inputId}"></label>
      <input id="${inputId}" name="name" required maxlength="64" autocomplete="off">
      <p class="field__error" id="${inputId}-error" hidden></p>
    </div>
    <div class="button-row">
      <button type="submit" class="button button--secondary button--small">Save name</button>
      <button type="button" class="button button--ghost button--small" data-cancel>Cancel</button>
    </div>`
  form.querySelector('label').textContent = `New name for ${passkey.name}`
  const input = form.querySelector('input')
  input.value = passkey.name
  item.append(form)
  const back = () => {
    const shown = renderItem(passkey)
    item.replaceWith(shown)
    shown.querySelector('button').focus()
  }
  form.querySelector('[data-cancel]').addEventListener('click', back)
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') back()
  })
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(form)
    if (!checkRequired(form)) return
    try {
      const renamed = await whileBusy(form.querySelector('[type=submit]'), 'Saving…', () => api.renamePasskey(passkey.id, input.value.trim()))
      passkey = renamed
      back()
      announce($('passkey-status'), `Passkey renamed to “${renamed.name}”.`)
    } catch (error) {
      showFailure(form, error)
    }
  })
  queueMicrotask(() => input.select())
  return item
}

async function refresh() {
  renderList(await api.listPasskeys())
}

/** Wires the panel and the sign-in button; `onSignedIn` runs after a passkey sign-in, as after a password one. */
export function startPasskeys({ onSignedIn }) {
  const card = $('passkeys-card')
  const signInButton = $('passkey-sign-in')
  const signInForm = $('sign-in-form')
  const ready = checkAvailable().then((answer) => {
    available = answer
    signInButton.hidden = !available
    return available
  })

  signInButton.addEventListener('click', async () => {
    clearErrors(signInForm)
    try {
      await whileBusy(signInButton, 'Waiting for your passkey…', async () => {
        try {
          return await api.signInWithPasskey(getAssertion)
        } catch (error) {
          throw browserFailure(error)
        }
      })
      await onSignedIn()
    } catch (error) {
      showFailure(signInForm, error)
    }
  })

  const form = $('passkey-form')
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(form)
    if (!checkRequired(form)) return
    const name = $('passkey-name').value.trim()
    try {
      // With two-step sign-in the server asks for a recent second factor; without it, for the password.
      await whileBusy(form.querySelector('[type=submit]'), 'Waiting for your device…', () =>
        withReauthentication(() =>
          withStepUp(async () => {
            try {
              return await api.registerPasskey(name, createCredential)
            } catch (error) {
              throw browserFailure(error)
            }
          }),
        ),
      )
      form.reset()
      announce($('passkey-status'), `Passkey “${name}” added. You can sign in with it now.`)
      await refresh()
    } catch (error) {
      // A refusal of the response itself (wrong site, no verification) has no field of its own on this form.
      if (error instanceof api.ApiError && error.fieldErrors.response) showErrors(form, { non_field_errors: error.fieldErrors.response })
      else showFailure(form, error)
    }
  })

  // The list is read each time the profile is shown (after a sign-in or a reload), not on every page load.
  const profile = $('profile-view')
  new MutationObserver(async () => {
    if (profile.hidden || !(await ready)) {
      card.hidden = true
      return
    }
    card.hidden = false
    try {
      await refresh()
    } catch (error) {
      showFailure(form, error)
    }
  }).observe(profile, { attributes: true, attributeFilter: ['hidden'] })
}
