/** Form helpers: values, field errors beside their fields, busy buttons and announced messages. */

import { ApiError } from './api.js'

/** The form's text values by field name (files and buttons left out). */
export function valuesOf(form) {
  const values = {}
  for (const element of form.elements) {
    if (element.name && element.type !== 'file' && element.tagName !== 'BUTTON') values[element.name] = element.value
  }
  return values
}

function errorElementFor(input) {
  return document.getElementById(`${input.id}-error`)
}

function describedBy(input) {
  return (input.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean)
}

function showFieldError(input, messages) {
  const error = errorElementFor(input)
  error.textContent = messages.join(' ')
  error.hidden = false
  input.setAttribute('aria-invalid', 'true')
  if (!describedBy(input).includes(error.id)) input.setAttribute('aria-describedby', [...describedBy(input), error.id].join(' '))
}

function clearFieldError(input) {
  const error = errorElementFor(input)
  if (!error) return
  error.textContent = ''
  error.hidden = true
  input.removeAttribute('aria-invalid')
  const rest = describedBy(input).filter((id) => id !== error.id)
  if (rest.length > 0) input.setAttribute('aria-describedby', rest.join(' '))
  else input.removeAttribute('aria-describedby')
}

function formError(form) {
  return form.querySelector('[data-form-error]')
}

/** Removes every error and message the form shows. */
export function clearErrors(form) {
  for (const element of form.elements) if (element.id) clearFieldError(element)
  const error = formError(form)
  if (error) {
    error.textContent = ''
    error.hidden = true
  }
}

/**
 * Shows field errors beside their fields (as aria-invalid and aria-describedby); errors for fields the
 * form does not have, and errors without fields, go to the form's alert. Focuses the first bad field.
 */
export function showErrors(form, fieldErrors, summary) {
  clearErrors(form)
  const loose = []
  let first = null
  for (const [name, messages] of Object.entries(fieldErrors)) {
    const input = form.elements.namedItem(name)
    if (input && errorElementFor(input)) {
      showFieldError(input, messages)
      first ??= input
    } else {
      loose.push(...messages)
    }
  }
  const text = loose.length > 0 ? loose.join(' ') : first ? '' : summary
  const error = formError(form)
  if (text && error) {
    error.textContent = text
    error.hidden = false
  }
  if (first) {
    first.focus({ preventScroll: true })
    // The whole field, its error text included, not only the input: the message may be below the fold.
    ;(first.closest('.field') ?? first).scrollIntoView({ block: 'nearest' })
  }
}

/** Shows what went wrong with a request on the form it came from. */
export function showFailure(form, error) {
  if (error instanceof ApiError) showErrors(form, error.fieldErrors, error.message)
  else showErrors(form, {}, error.message)
}

/** Client-side check of required fields, worded like the server's. Returns true when all are filled. */
export function checkRequired(form, extra = {}) {
  const errors = { ...extra }
  for (const element of form.elements) {
    if (element.required && element.value.trim() === '') errors[element.name] = ['This field is required.']
  }
  if (Object.keys(errors).length === 0) return true
  showErrors(form, errors)
  return false
}

/** Disables a button while its work runs, with a label saying what is happening. */
export async function whileBusy(button, label, work) {
  const idle = button.textContent
  const hadFocus = document.activeElement === button
  button.disabled = true
  button.setAttribute('aria-busy', 'true')
  button.textContent = label
  try {
    return await work()
  } finally {
    button.disabled = false
    button.removeAttribute('aria-busy')
    button.textContent = idle
    // Disabling the focused button dropped focus to the page; a keyboard user would start over.
    if (hadFocus && document.activeElement === document.body) button.focus()
  }
}

// The message each region is about to show; a newer one replaces it, never the other way round.
const pendingAnnouncements = new WeakMap()

function clearAnnouncement(region) {
  clearTimeout(pendingAnnouncements.get(region))
  region.textContent = ''
}

/**
 * Status messages ("Profile saved.", "No changes to save.") describe the last action only: every one goes
 * when a form is submitted (before its handler announces its own), and a form's own when it is edited again.
 */
export function clearStatusesOnActivity(root) {
  const statuses = () => root.querySelectorAll('.status[role=status]')
  root.addEventListener('submit', () => statuses().forEach(clearAnnouncement), true)
  root.addEventListener('input', (event) => {
    const status = event.target.form?.querySelector('.status[role=status]')
    if (status) clearAnnouncement(status)
  })
}

/** Puts a message in a role=status region so screen readers announce it, even when it repeats. */
export function announce(region, message) {
  // A new message makes the others old news: "No changes to save." must not linger after another action.
  if (message) for (const other of document.querySelectorAll('.status[role=status]')) if (other !== region) clearAnnouncement(other)
  clearTimeout(pendingAnnouncements.get(region))
  region.textContent = ''
  // A separate task after clearing, so a repeated message is still a change to announce.
  if (message) pendingAnnouncements.set(region, setTimeout(() => (region.textContent = message), 50))
}
