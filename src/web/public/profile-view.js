/** The signed-in screen: profile details, photo, password, sessions and account deletion. */

import * as api from './api.js'
import { announce, checkRequired, clearErrors, showErrors, showFailure, valuesOf, whileBusy } from './forms.js'

const $ = (id) => document.getElementById(id)

const TEXT_FIELDS = ['username', 'email', 'first_name', 'last_name', 'number_phone']
const joined = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'long', day: 'numeric' })

const profileForm = $('profile-form')
const passwordForm = $('password-form')
const deleteForm = $('delete-form')
const deleteDialog = $('delete-dialog')
const avatar = {
  form: $('avatar-form'),
  frame: $('avatar'),
  image: $('avatar-image'),
  initials: $('avatar-initials'),
  file: $('avatar-file'),
  actions: $('avatar-actions'),
  remove: $('avatar-remove'),
  confirm: $('avatar-confirm'),
  save: $('avatar-save'),
  cancel: $('avatar-cancel'),
  progress: $('avatar-progress'),
  bar: $('avatar-progress-bar'),
  progressText: $('avatar-progress-text'),
  error: $('avatar-file-error'),
  status: $('avatar-status'),
}

// The profile as the server last returned it, and its version for If-Match.
let user = null
let etag = null
let previewUrl = null
let pendingFile = null

function initialsOf({ first_name, last_name, username }) {
  const fromNames = [first_name, last_name].map((name) => [...name.trim()][0] ?? '').join('')
  return (fromNames || [...username].slice(0, 2).join('')).toUpperCase()
}

function fullName({ first_name, last_name }) {
  return [first_name, last_name].filter(Boolean).join(' ')
}

function showAvatar(src, alt) {
  avatar.image.hidden = !src
  avatar.initials.hidden = Boolean(src)
  if (src) {
    avatar.image.src = src
    avatar.image.alt = alt
  } else {
    avatar.image.removeAttribute('src')
  }
}

function setAvatarState(state) {
  avatar.frame.dataset.state = state
  avatar.form.dataset.state = state
  avatar.actions.hidden = state === 'preview' || state === 'uploading'
  avatar.confirm.hidden = state !== 'preview' && state !== 'uploading'
  avatar.remove.hidden = !user?.avatar
  avatar.progress.hidden = state !== 'uploading'
  for (const button of [avatar.save, avatar.cancel]) button.disabled = state === 'uploading'
}

function dropPreview() {
  if (previewUrl) URL.revokeObjectURL(previewUrl)
  previewUrl = null
  pendingFile = null
}

/** Keeps a profile the server returned and shows who it is; forms and photo are refreshed separately. */
function remember(next, nextEtag) {
  user = next
  etag = nextEtag ?? etag
  $('header-username').textContent = `@${user.username}`
  $('display-name').textContent = fullName(user) || `@${user.username}`
  $('display-meta').textContent = fullName(user) ? `@${user.username} · ${user.email}` : user.email
  $('member-since').textContent = `Member since ${joined.format(new Date(user.date_joined))}`
  avatar.initials.textContent = initialsOf(user)
}

function fillDetails() {
  for (const name of TEXT_FIELDS) profileForm.elements.namedItem(name).value = user[name]
}

/** Shows the saved photo, dropping any unsaved preview. */
function showSavedAvatar() {
  dropPreview()
  showAvatar(user.avatar, 'Your profile photo')
  setAvatarState(user.avatar ? 'saved' : 'empty')
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
    const saved = await whileBusy(profileForm.querySelector('button[type=submit]'), 'Saving…', () =>
      api.updateProfile(user.id, changes, etag),
    )
    remember(saved.user, saved.etag)
    fillDetails()
    announce($('profile-status'), 'Profile saved.')
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 412) {
      const latest = await api.me()
      render(latest.user, latest.etag)
      return showErrors(profileForm, {}, 'Your profile was changed somewhere else. The latest version is shown; make your changes again.')
    }
    showFailure(profileForm, error)
  }
}

function previewAvatar() {
  const file = avatar.file.files[0]
  // Cleared at once so that choosing the same file again still fires "change".
  avatar.file.value = ''
  if (!file) return
  avatar.error.hidden = true
  dropPreview()
  pendingFile = file
  previewUrl = URL.createObjectURL(file)
  showAvatar(previewUrl, 'Preview of your new photo')
  setAvatarState('preview')
  announce(avatar.status, 'Preview shown. Save the photo to use it.')
  avatar.save.focus()
}

function avatarFailed(message) {
  avatar.error.textContent = message
  avatar.error.hidden = false
}

async function uploadAvatar(event) {
  event.preventDefault()
  const file = pendingFile
  if (!file) return
  avatar.error.hidden = true
  avatar.bar.value = 0
  avatar.progressText.textContent = 'Uploading…'
  setAvatarState('uploading')
  announce(avatar.status, 'Uploading your photo…')
  try {
    const saved = await api.uploadAvatar(user.id, file, (fraction) => {
      const percent = Math.round(fraction * 100)
      avatar.bar.value = percent
      avatar.progressText.textContent = percent < 100 ? `Uploading… ${percent}%` : 'Processing…'
    })
    remember(saved.user, saved.etag)
    showSavedAvatar()
    announce(avatar.status, 'Photo saved.')
    $('avatar-choose').focus()
  } catch (error) {
    setAvatarState('preview')
    announce(avatar.status, '')
    avatarFailed(error.fieldErrors?.avatar?.join(' ') ?? error.message)
  }
}

function cancelAvatar() {
  showSavedAvatar()
  avatar.error.hidden = true
  announce(avatar.status, '')
  $('avatar-choose').focus()
}

async function removeAvatar() {
  avatar.error.hidden = true
  try {
    const saved = await whileBusy(avatar.remove, 'Removing…', () => api.removeAvatar(user.id))
    remember(saved.user, saved.etag)
    showSavedAvatar()
    announce(avatar.status, 'Photo removed.')
    $('avatar-choose').focus()
  } catch (error) {
    avatarFailed(error.message)
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
  profileForm.addEventListener('submit', saveProfile)
  passwordForm.addEventListener('submit', changePassword)

  $('avatar-choose').addEventListener('click', () => avatar.file.click())
  avatar.file.addEventListener('change', previewAvatar)
  avatar.form.addEventListener('submit', uploadAvatar)
  avatar.cancel.addEventListener('click', cancelAvatar)
  avatar.remove.addEventListener('click', removeAvatar)

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
  for (const region of [$('profile-status'), $('password-status'), avatar.status]) region.textContent = ''
  avatar.error.hidden = true
  render(current, currentEtag)
}
