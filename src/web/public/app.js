/** Portrait's web page: restores the session from the refresh cookie, then shows one of two screens. */

import * as api from './api.js'
import { resetAuthView, startAuthView } from './auth-view.js'
import { loadMfaPanel } from './mfa-panel.js'
import { startPasskeys } from './passkeys-panel.js'
import { loadProfile, startProfileView } from './profile-view.js'
import { startReauthentication } from './reauthenticate.js'
import { openLinkFromAddress, startRecoveryView } from './recovery-view.js'
import { loadSecurityPanels, startSecurityPanels } from './security-panel.js'

const $ = (id) => document.getElementById(id)

const screens = { loading: $('loading'), auth: $('auth-view'), profile: $('profile-view'), recovery: $('recovery-view') }

/** Shows one screen; after the first, focus moves to its heading so the change is announced. */
function show(name, { moveFocus = true } = {}) {
  for (const [key, element] of Object.entries(screens)) element.hidden = key !== name
  $('header-account').hidden = name !== 'profile'
  document.title = name === 'profile' ? 'Your profile · Portrait' : 'Portrait'
  if (moveFocus) screens[name].querySelector('h1')?.focus()
}

async function showProfile(options) {
  await Promise.all([loadProfile(), loadMfaPanel(), loadSecurityPanels()])
  show('profile', options)
}

function showSignedOut(message, options) {
  // A session can end while the delete confirmation is open; it must not stay over the sign-in form.
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close()
  resetAuthView(message)
  show('auth', options)
}

api.whenSessionLost(() => showSignedOut('Your session has ended. Please sign in again.'))

startReauthentication()
startAuthView({ onSignedIn: () => showProfile() })
startProfileView({ onSignedOut: (message) => showSignedOut(message) })
startRecoveryView({
  onShow: () => show('recovery', { moveFocus: false }),
  onBack: () => show('auth'),
  onPasswordChanged: () => showSignedOut('Your password has been changed and every device signed out. Sign in with your new password.'),
  onContinue: () => restoreSession(),
})
startPasskeys({ onSignedIn: () => showProfile() })
startSecurityPanels()

$('sign-out').addEventListener('click', async () => {
  try {
    await api.signOut()
  } catch {
    // The session is forgotten on this page whatever the server said; the cookie expires on its own.
  }
  showSignedOut('You have signed out.')
})

// A reload keeps the person signed in: the HttpOnly refresh cookie buys a fresh access token.
async function restoreSession() {
  try {
    if (await api.refreshSession()) await showProfile({ moveFocus: false })
    else showSignedOut('', { moveFocus: false })
  } catch {
    showSignedOut('Portrait could not load your session just now. Reload the page to try again.', { moveFocus: false })
  }
}

// A link from a mail (password reset, email verification) opens its own screen first.
if (!openLinkFromAddress()) await restoreSession()
