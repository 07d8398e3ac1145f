/** The signed-in screen: profile details, password, sessions and account deletion (the photo: avatar-panel.js). */

import * as api from './api.js'
import { resetAvatarPanel, setAvatarOwner, showSavedAvatar, startAvatarPanel } from './avatar-panel.js'
import { announce, checkRequired, clearErrors, clearStatusesOnActivity, showErrors, showFailure, valuesOf, whileBusy } from './forms.js'
import { withReauthentication } from './reauthenticate.js'
import { showVerificationBanner } from './recovery-view.js'

const $ = (id) => document.getElementById(id)

const TEXT_FIELDS = ['username', 'email', 'first_name', 'last_name', 'number_phone']
const joined = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'long', day: 'numeric' })

const profileForm = $('profile-form')
const passwordForm = $('password-form')
const deleteForm = $('delete-form')
const deleteDialog = $('delete-dialog')

// The profile as the server last returned it, and its version for If-Match.
let user = null
let etag = null

function fullName({ first_name, last_name }) {
  return [first_name, last_name].filter(Boolean).join(' ')
}

/** Keeps a profile the server returned and shows who it is; forms and photo are refreshed separately. */
function remember(next, nextEtag) {
  user = next
  etag = nextEtag ?? etag
  $('header-username').textContent = `@${user.username}`
  // Shortened with an ellipsis when the header is narrow; the whole name on hover.
  $('header-username').title = `@${user.username}`
  $('display-name').textContent = fullName(user) || `@${user.username}`
  $('display-meta').textContent = fullName(user) ? `@${user.username} · ${user.email}` : user.email
  $('member-since').textContent = `Member since ${joined.format(new Date(user.date_joined))}`
  setAvatarOwner(user)
  showVerificationBanner(user)
}

function fillDetails() {
  for (const name of TEXT_FIELDS) profileForm.elements.namedItem(name).value = user[name]
}

/** Everything from the server's copy: after loading, or when a concurrent change was detected. */
function render(next, nextEtag) {
  remember(next, nextEtag)
  fillDetails()
  showSavedAvatar()
}

async function saveProfile(event) {
  event.preventDefault()
  clearErrors(profileForm)
  announce($('profile-status'), '')
  if (!checkRequired(profileForm)) return
  const values = valuesOf(profileForm)
  const changes = Object.fromEntries(TEXT_FIELDS.filter((name) => values[name] !== user[name]).map((name) => [name, values[name]]))
  if (Object.keys(changes).length === 0) return announce($('profile-status'), 'No changes to save.')
  try {
    // A new email from a session signed in a while ago asks for the password first (reauthenticate.js).
    const saved = await whileBusy(profileForm.querySelector('button[type=submit]'), 'Saving…', () => withReauthentication(() => saveChanges(changes)))
    remember(saved.user, saved.etag)
    fillDetails()
    announce($('profile-status'), 'Profile saved.')
  } catch (error) {
    if (error instanceof EditConflict) {
      render(error.latest.user, error.latest.etag)
      return showErrors(profileForm, {}, 'Your profile was changed somewhere else. The latest version is shown; make your changes again.')
    }
    showFailure(profileForm, error)
  }
}

class EditConflict extends Error {
  constructor(latest) {
    super('edit conflict')
    this.latest = latest
  }
}

/**
 * Saves with If-Match. The version also moves for changes this form does not show (a sign-in elsewhere
 * sets last_login), so on 412 the edit is retried once against the latest copy, unless one of the
 * fields being saved has itself changed meanwhile: then the person decides.
 */
async function saveChanges(changes) {
  try {
    return await api.updateProfile(user.id, changes, etag)
  } catch (error) {
    if (!(error instanceof api.ApiError && error.status === 412)) throw error
    const latest = await api.me()
    if (Object.keys(changes).some((name) => latest.user[name] !== user[name])) throw new EditConflict(latest)
    return api.updateProfile(user.id, changes, latest.etag)
  }
}

async function changePassword(event) {
  event.preventDefault()
  clearErrors(passwordForm)
  announce($('password-status'), '')
  const values = valuesOf(passwordForm)
  const mismatch = values.confirm_password && values.confirm_password !== values.new_password
  if (!checkRequired(passwordForm, mismatch ? { confirm_password: ['The two new passwords differ.'] } : {})) return
  try {
    await whileBusy(passwordForm.querySelector('button[type=submit]'), 'Changing…', () =>
      api.changePassword(user.id, values.current_password, values.new_password),
    )
    passwordForm.reset()
    announce($('password-status'), 'Password changed. Your other devices have been signed out.')
  } catch (error) {
    showFailure(passwordForm, error)
  }
}

/** Wires the screen. `onSignedOut(message)` runs when the account is gone or every session ended. */
export function startProfileView({ onSignedOut }) {
  clearStatusesOnActivity($('profile-view'))
  profileForm.addEventListener('submit', saveProfile)
  passwordForm.addEventListener('submit', changePassword)

  startAvatarPanel({ onProfileSaved: remember })

  $('sign-out-everywhere').addEventListener('click', async (event) => {
    const error = $('sessions-error')
    error.hidden = true
    try {
      await whileBusy(event.currentTarget, 'Signing out…', () => api.signOut({ everywhere: true }))
      onSignedOut('You have been signed out on every device.')
    } catch (failure) {
      error.textContent = failure.message
      error.hidden = false
    }
  })

  $('delete-open').addEventListener('click', () => {
    deleteDialog.showModal()
    $('del-password').focus()
  })
  $('delete-cancel').addEventListener('click', () => deleteDialog.close())
  deleteDialog.addEventListener('close', () => {
    deleteForm.reset()
    clearErrors(deleteForm)
  })
  deleteForm.addEventListener('submit', async (event) => {
    event.preventDefault()
    clearErrors(deleteForm)
    if (!checkRequired(deleteForm)) return
    const { current_password } = valuesOf(deleteForm)
    try {
      await whileBusy(deleteForm.querySelector('button[type=submit]'), 'Deleting…', () => api.deleteAccount(user.id, current_password))
      deleteDialog.close()
      onSignedOut('Your account has been deleted.')
    } catch (error) {
      showFailure(deleteForm, error)
    }
  })
}

/** Loads the signed-in user's profile and shows it. */
export async function loadProfile() {
  const { user: current, etag: currentEtag } = await api.me()
  for (const form of [profileForm, passwordForm]) {
    form.reset()
    clearErrors(form)
  }
  for (const region of [$('profile-status'), $('password-status')]) region.textContent = ''
  remember(current, currentEtag)
  fillDetails()
  resetAvatarPanel(current)
}
