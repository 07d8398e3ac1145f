/**
 * The signed-in person's sessions (device, masked address, last use, "Sign out" beside each other one) and
 * their recent security activity. Everything is built with textContent: a User-Agent is the client's text.
 */

import * as api from './api.js'
import { whileBusy } from './forms.js'

const $ = (id) => document.getElementById(id)
const when = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

const ACTIVITY_LABELS = {
  sign_in: 'Signed in',
  sign_in_failed: 'Wrong password entered',
  sign_out: 'Signed out',
  sign_out_all: 'Signed out everywhere',
  session_revoked: 'A session was ended',
  password_changed: 'Password changed',
  email_changed: 'Email address changed',
  account_locked: 'Sign-in paused after too many wrong passwords',
  password_reset: 'Password reset',
  mfa_enabled: 'Two-step verification turned on',
  mfa_disabled: 'Two-step verification turned off',
  recovery_codes_regenerated: 'New recovery codes made',
  passkey_added: 'Passkey added',
  passkey_removed: 'Passkey removed',
}

function element(tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function showError(id, failure) {
  const error = $(id)
  error.textContent = failure ? failure.message : ''
  error.hidden = !failure
}

function sessionItem(session) {
  const item = element('li', 'session-item')
  const text = element('div', 'session-item__text')
  const title = element('p', 'session-item__device', session.device)
  if (session.current) title.append(' ', element('span', 'session-item__this', 'This device'))
  text.append(title)
  const used = session.last_used_at ?? session.created_at
  const meta = [session.address, `last used ${when.format(new Date(used))}`].filter(Boolean).join(' · ')
  text.append(element('p', 'muted session-item__meta', meta))
  item.append(text)
  if (!session.current) {
    const button = element('button', 'button button--ghost button--small', 'Sign out')
    button.type = 'button'
    button.setAttribute('aria-label', `Sign out ${session.device}, last used ${when.format(new Date(used))}`)
    button.addEventListener('click', () => endSession(session, button))
    item.append(button)
  }
  return item
}

async function endSession(session, button) {
  showError('session-list-error', null)
  try {
    await whileBusy(button, 'Signing out…', () => api.endSession(session.id))
    await loadSecurityPanels()
    $('session-list-status').textContent = `${session.device} was signed out.`
    $('session-list').focus()
  } catch (failure) {
    showError('session-list-error', failure)
  }
}

function activityItem(entry) {
  const item = element('li', 'activity-item')
  let label = ACTIVITY_LABELS[entry.type] ?? entry.type
  if (entry.type === 'sign_in' && entry.details?.new_device) label += ' on a new device'
  item.append(element('p', 'activity-item__what', label))
  const time = element('time', 'muted', when.format(new Date(entry.at)))
  time.dateTime = entry.at
  const meta = element('p', 'muted activity-item__meta')
  meta.append(time, ` · ${[entry.device, entry.address].filter(Boolean).join(' · ')}`)
  item.append(meta)
  return item
}

/** Reads both lists again; failures are shown in each panel, never thrown. */
export async function loadSecurityPanels() {
  const [sessions, activity] = await Promise.allSettled([api.listSessions(), api.listActivity()])
  const list = $('session-list')
  list.replaceChildren()
  if (sessions.status === 'fulfilled') {
    showError('session-list-error', null)
    list.append(...sessions.value.map(sessionItem))
  } else {
    showError('session-list-error', sessions.reason)
  }
  const entries = $('activity-list')
  entries.replaceChildren()
  if (activity.status === 'fulfilled') {
    showError('activity-error', null)
    entries.append(...activity.value.map(activityItem))
    $('activity-empty').hidden = activity.value.length > 0
  } else {
    showError('activity-error', activity.reason)
  }
}

/** Wires the "Refresh" button of the activity list. */
export function startSecurityPanels() {
  $('activity-refresh').addEventListener('click', (event) => whileBusy(event.currentTarget, 'Refreshing…', loadSecurityPanels))
}
