/** The photo: choose, preview before saving, upload with progress, remove. */

import * as api from './api.js'
import { announce, whileBusy } from './forms.js'
import { AVATAR_MAX_BYTES } from './settings.js'

const $ = (id) => document.getElementById(id)

const panel = {
  form: $('avatar-form'),
  frame: $('avatar'),
  image: $('avatar-image'),
  initials: $('avatar-initials'),
  file: $('avatar-file'),
  choose: $('avatar-choose'),
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
  maxSize: $('avatar-max-size'),
}

/** A byte count for people, as the server writes it: 5242880 → "5 MiB". */
export function humanSize(bytes) {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]]) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}`
  }
  return `${bytes} bytes`
}

panel.maxSize.textContent = humanSize(AVATAR_MAX_BYTES)

// Whose photo this is (as the server last returned it), and the chosen file not yet saved.
let owner = null
let previewUrl = null
let pendingFile = null
let onSaved = () => {}

function initialsOf({ first_name, last_name, username }) {
  const fromNames = [first_name, last_name].map((name) => [...name.trim()][0] ?? '').join('')
  return (fromNames || [...username].slice(0, 2).join('')).toUpperCase()
}

function showImage(src, alt) {
  panel.image.hidden = !src
  panel.initials.hidden = Boolean(src)
  if (src) {
    panel.image.src = src
    panel.image.alt = alt
  } else {
    panel.image.removeAttribute('src')
  }
}

/** empty | saved | preview | uploading: which buttons show, and the frame's highlight. */
function setState(state) {
  const choosing = state === 'preview' || state === 'uploading'
  panel.frame.dataset.state = state
  panel.form.dataset.state = state
  panel.actions.hidden = choosing
  panel.confirm.hidden = !choosing
  panel.remove.hidden = !owner?.avatar
  panel.progress.hidden = state !== 'uploading'
  for (const button of [panel.save, panel.cancel]) button.disabled = state === 'uploading'
}

function dropPreview() {
  if (previewUrl) URL.revokeObjectURL(previewUrl)
  previewUrl = null
  pendingFile = null
}

function showError(message) {
  panel.error.textContent = message
  panel.error.hidden = false
}

function clearMessages() {
  panel.error.hidden = true
  panel.status.textContent = ''
}

/** Shows the saved photo (or the initials), dropping any unsaved preview. */
export function showSavedAvatar() {
  dropPreview()
  showImage(owner.avatar, 'Your profile photo')
  setState(owner.avatar ? 'saved' : 'empty')
}

/** Records the latest copy of the profile; the photo on screen changes only through showSavedAvatar. */
export function setAvatarOwner(user) {
  owner = user
  panel.initials.textContent = initialsOf(user)
}

/** A fresh panel for a newly loaded profile. */
export function resetAvatarPanel(user) {
  setAvatarOwner(user)
  clearMessages()
  showSavedAvatar()
}

function preview() {
  const file = panel.file.files[0]
  // Cleared at once so that choosing the same file again still fires "change".
  panel.file.value = ''
  if (!file) return
  panel.error.hidden = true
  // Refused here rather than after uploading it all: the server would answer 413.
  if (file.size > AVATAR_MAX_BYTES) {
    showSavedAvatar()
    showError(`This file is ${humanSize(file.size)}; the photo may be at most ${humanSize(AVATAR_MAX_BYTES)}.`)
    announce(panel.status, '')
    panel.choose.focus()
    return
  }
  dropPreview()
  pendingFile = file
  previewUrl = URL.createObjectURL(file)
  showImage(previewUrl, 'Preview of your new photo')
  setState('preview')
  announce(panel.status, 'Preview shown. Save the photo to use it.')
  panel.save.focus()
}

// The server accepts only formats every browser decodes: a file the browser cannot show would be refused.
function imageFailed() {
  if (panel.image.getAttribute('src') !== previewUrl) {
    // A saved photo that cannot be loaded: initials look better than a broken image.
    panel.image.hidden = true
    panel.initials.hidden = false
    return
  }
  showSavedAvatar()
  showError('This file is not an image Portrait can use. Choose a JPEG, PNG, WebP or GIF.')
  announce(panel.status, '')
  panel.choose.focus()
}

async function upload(event) {
  event.preventDefault()
  if (!pendingFile) return
  panel.error.hidden = true
  panel.bar.value = 0
  panel.progressText.textContent = 'Uploading…'
  setState('uploading')
  announce(panel.status, 'Uploading your photo…')
  try {
    const saved = await api.uploadAvatar(owner.id, pendingFile, (fraction) => {
      const percent = Math.round(fraction * 100)
      panel.bar.value = percent
      panel.progressText.textContent = percent < 100 ? `Uploading… ${percent}%` : 'Processing…'
    })
    onSaved(saved.user, saved.etag)
    showSavedAvatar()
    announce(panel.status, 'Photo saved.')
    panel.choose.focus()
  } catch (error) {
    setState('preview')
    announce(panel.status, '')
    showError(error.fieldErrors?.avatar?.join(' ') ?? error.message)
  }
}

function cancel() {
  showSavedAvatar()
  clearMessages()
  panel.choose.focus()
}

async function remove() {
  panel.error.hidden = true
  try {
    const saved = await whileBusy(panel.remove, 'Removing…', () => api.removeAvatar(owner.id))
    onSaved(saved.user, saved.etag)
    showSavedAvatar()
    announce(panel.status, 'Photo removed.')
    panel.choose.focus()
  } catch (error) {
    showError(error.message)
  }
}

/** Wires the panel; `onProfileSaved(user, etag)` hears of every profile the photo changes return. */
export function startAvatarPanel({ onProfileSaved }) {
  onSaved = onProfileSaved
  panel.choose.addEventListener('click', () => panel.file.click())
  panel.file.addEventListener('change', preview)
  panel.image.addEventListener('error', imageFailed)
  panel.form.addEventListener('submit', upload)
  panel.cancel.addEventListener('click', cancel)
  panel.remove.addEventListener('click', remove)
}
