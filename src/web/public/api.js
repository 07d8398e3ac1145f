/**
 * The API as the page uses it. The access token lives only in this module's memory; the refresh
 * token is an HttpOnly cookie the server sets because every request says `x-portrait-web: 1`.
 */

const WEB_CLIENT = { 'x-portrait-web': '1' }

let accessToken = null
let refreshing = null
let onSessionLost = () => {}

/** A failed request: the HTTP status and the problem+json body (field errors in `errors`). */
export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem?.detail || `The request failed (${status}).`)
    this.status = status
    this.problem = problem ?? {}
    this.fieldErrors = problem?.errors ?? {}
    /** Seconds to wait (the Retry-After header of a 429 or 503), or null. */
    this.retryAfter = /^\d+$/.test(retryAfter ?? '') ? Number(retryAfter) : null
  }
}

/** The server could not be reached, or the connection broke mid-request. */
export class NetworkError extends Error {
  constructor() {
    super('Could not reach Portrait. Check your connection and try again.')
  }
}

/** Called when a signed-in request fails and the session cannot be renewed. */
export function whenSessionLost(callback) {
  onSessionLost = callback
}

function parseBody(text, contentType) {
  if (!text || !/json/.test(contentType ?? '')) return null
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

async function viaFetch({ method, path, headers, body }) {
  let response
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' })
  } catch {
    throw new NetworkError()
  }
  const text = await response.text()
  const contentType = response.headers.get('content-type')
  return {
    status: response.status,
    etag: response.headers.get('etag'),
    retryAfter: response.headers.get('retry-after'),
    data: parseBody(text, contentType),
  }
}

// XMLHttpRequest only because fetch cannot report upload progress.
function viaXhr({ method, path, headers, body, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open(method, path)
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value)
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total)
    })
    xhr.addEventListener('load', () => {
      const contentType = xhr.getResponseHeader('content-type')
      resolve({ status: xhr.status, etag: xhr.getResponseHeader('etag'), data: parseBody(xhr.responseText, contentType) })
    })
    xhr.addEventListener('error', () => reject(new NetworkError()))
    xhr.addEventListener('abort', () => reject(new NetworkError()))
    xhr.send(body)
  })
}

/** Serialised across tabs: two tabs refreshing at once with one cookie would look like token theft. */
function exclusively(task) {
  return navigator.locks ? navigator.locks.request('portrait-refresh', task) : task()
}

/**
 * Swaps the refresh cookie for a new access token; false when there is no live session. Throws when
 * the server cannot tell (e.g. 503 while its database is down), so that is not mistaken for a sign-out.
 */
export function refreshSession() {
  refreshing ??= exclusively(async () => {
    const result = await viaFetch({ method: 'POST', path: '/api/auth/refresh', headers: { ...WEB_CLIENT } })
    if (result.status >= 500 || result.status === 429) throw new ApiError(result.status, result.data)
    accessToken = result.status === 200 ? result.data.access : null
    return accessToken !== null
  }).finally(() => {
    refreshing = null
  })
  return refreshing
}

/**
 * One API call. Signed-in calls carry the access token; a 401 gets one refresh and one retry.
 * Resolves to `{ data, etag }`, or throws ApiError / NetworkError.
 */
async function call(method, path, { json, form, onProgress, ifMatch, signedIn = true } = {}) {
  const attempt = () => {
    const headers = { ...WEB_CLIENT }
    if (signedIn && accessToken) headers.authorization = `Bearer ${accessToken}`
    if (ifMatch) headers['if-match'] = ifMatch
    let body
    if (json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(json)
    } else if (form !== undefined) {
      body = form
    }
    const request = { method, path, headers, body, onProgress }
    return onProgress ? viaXhr(request) : viaFetch(request)
  }

  let result = await attempt()
  if (result.status === 401 && signedIn) {
    if (await refreshSession()) result = await attempt()
    if (result.status === 401) {
      accessToken = null
      onSessionLost()
    }
  }
  if (result.status >= 400) throw new ApiError(result.status, result.data, result.retryAfter)
  return result
}

/** The password was right and the account has a second factor: complete with completeSignIn (mfa-panel.js). */
export class SecondFactorRequired extends Error {
  constructor({ challenge, methods }) {
    super('A second factor is needed to sign in.')
    this.challenge = challenge
    this.methods = methods
  }
}

/** Signs in with an email (when the login contains @) or a username; throws SecondFactorRequired when one is needed. */
export async function signIn(login, password) {
  const field = login.includes('@') ? 'email' : 'username'
  const { data } = await call('POST', '/api/auth/sign-in', { json: { [field]: login, password }, signedIn: false })
  if (data.mfa_required) throw new SecondFactorRequired(data)
  accessToken = data.access
  return data.user
}

/** The second step of a sign-in: the challenge plus `{code}` or `{recovery_code}`. */
export async function completeSignIn(challenge, proof) {
  const { data } = await call('POST', '/api/auth/sign-in/mfa', { json: { challenge, ...proof }, signedIn: false })
  accessToken = data.access
  return data.user
}

/** Any other signed-in call (the panels of their own modules use it): resolves to `{ data, etag }`. */
export const request = (method, path, options) => call(method, path, options)

export async function signUp(fields) {
  const { data } = await call('POST', '/api/auth/sign-up', { json: fields, signedIn: false })
  accessToken = data.access
  return data.user
}

/** Ends this device's session (the cookie) or, with `everywhere`, every session of the user. */
export async function signOut({ everywhere = false } = {}) {
  try {
    if (everywhere) await call('POST', '/api/auth/sign-out', { json: { all: true } })
    else await call('POST', '/api/auth/sign-out', { signedIn: false })
  } finally {
    accessToken = null
  }
}

export async function me() {
  const { data, etag } = await call('GET', '/api/users/me')
  return { user: data, etag }
}

/** Changes text fields; `etag` makes a concurrent change elsewhere fail with 412 instead of being overwritten. */
export async function updateProfile(id, fields, etag) {
  const { data, etag: next } = await call('PATCH', `/api/users/${id}`, { json: fields, ifMatch: etag })
  return { user: data, etag: next }
}

export async function uploadAvatar(id, file, onProgress) {
  const form = new FormData()
  form.append('avatar', file, file.name)
  const { data, etag } = await call('PATCH', `/api/users/${id}`, { form, onProgress })
  return { user: data, etag }
}

export async function removeAvatar(id) {
  const { data, etag } = await call('PATCH', `/api/users/${id}`, { json: { avatar: null } })
  return { user: data, etag }
}

export async function changePassword(id, currentPassword, newPassword) {
  await call('POST', `/api/users/${id}/password`, { json: { current_password: currentPassword, new_password: newPassword } })
}

export async function deleteAccount(id, currentPassword) {
  await call('DELETE', `/api/users/${id}`, { json: { current_password: currentPassword } })
  accessToken = null
}

/** Asks for a password-reset mail; the answer is the same whether or not the address has an account. */
export async function requestPasswordReset(email) {
  await call('POST', '/api/auth/password-reset', { json: { email }, signedIn: false })
}

/** Sets a new password with the token from a reset mail; the server ends every session of the user. */
export async function confirmPasswordReset(token, newPassword) {
  await call('POST', '/api/auth/password-reset/confirm', { json: { token, new_password: newPassword }, signedIn: false })
  accessToken = null
}

/** Confirms an email address with the token from a verification mail. */
export async function verifyEmail(token) {
  await call('POST', '/api/auth/verify-email', { json: { token }, signedIn: false })
}

/** Mails the signed-in user a new verification link; resolves to the server's words (sent, or verified already). */
export async function resendVerification(id) {
  const { data } = await call('POST', `/api/users/${id}/verify-email`)
  return data?.detail
}

// --- Passkeys (passkeys-panel.js): `browser` is the step that asks navigator.credentials with the options.

export async function passkeySupport() {
  return (await call('GET', '/api/auth/passkey', { signedIn: false })).data
}

export async function signInWithPasskey(browser) {
  const { data: start } = await call('POST', '/api/auth/passkey/options', { signedIn: false })
  const response = await browser(start.options)
  const { data } = await call('POST', '/api/auth/sign-in/passkey', { json: { challenge_id: start.challenge_id, response }, signedIn: false })
  accessToken = data.access
  return data.user
}

export async function registerPasskey(name, browser) {
  const { data: options } = await call('POST', '/api/users/me/passkeys/registration-options')
  const response = await browser(options)
  return (await call('POST', '/api/users/me/passkeys', { json: { name, response } })).data
}

/** Steps this session up with one of the caller's passkeys (adding or deleting a passkey needs a recent second factor). */
export async function verifyWithPasskey(browser) {
  const { data: options } = await call('POST', '/api/users/me/passkeys/step-up-options')
  const response = await browser(options)
  await call('POST', '/api/users/me/passkeys/verify', { json: { response } })
}

export async function listPasskeys() {
  return (await call('GET', '/api/users/me/passkeys')).data.results
}

export async function renamePasskey(id, name) {
  return (await call('PATCH', `/api/users/me/passkeys/${id}`, { json: { name } })).data
}

/** Request options for completing a challenged sign-in with a passkey (then completeSignIn with `{passkey}`). */
export async function secondFactorPasskeyOptions(challenge) {
  return (await call('POST', '/api/auth/sign-in/mfa/passkey-options', { json: { challenge }, signedIn: false })).data
}

export async function deletePasskey(id) {
  await call('DELETE', `/api/users/me/passkeys/${id}`)
}

/** The signed-in person's live sessions, newest first (security-panel.js). */
export async function listSessions() {
  return (await call('GET', '/api/users/me/sessions')).data.results
}

export async function endSession(id) {
  await call('DELETE', `/api/users/me/sessions/${encodeURIComponent(id)}`)
}

/** The most recent security activity entries, newest first. */
export async function listActivity(limit = 20) {
  return (await call('GET', `/api/users/me/activity?limit=${limit}`)).data.results
}
