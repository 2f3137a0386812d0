// The control-plane API, as the browser sees it: relative /v1 URLs, the
// token from localStorage as a bearer token, errors as APIError with the
// server's own message.

const TOKEN_KEY = 'ferry_token'

// token is the saved API token, or ''.
export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || ''
  } catch {
    return ''
  }
}

// saveToken keeps t for the next requests; '' forgets it.
export function saveToken(t) {
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t)
    else localStorage.removeItem(TOKEN_KEY)
  } catch {
    // Storage refused (private mode): the token lasts for this page only.
  }
  memo = t
}

let memo = null

// APIError is a failed call: status is the HTTP status (0 when the server
// could not be reached), message the server's error text.
export class APIError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

// call sends one request and returns the decoded JSON body.
export async function call(method, path, body) {
  const headers = {Accept: 'application/json'}
  const t = memo !== null ? memo : token()
  if (t) headers.Authorization = `Bearer ${t}`
  const init = {method, headers, cache: 'no-store', credentials: 'same-origin'}
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(path, init)
  } catch (e) {
    throw new APIError(0, `cannot reach the Ferry server (${e.message})`)
  }
  const text = await res.text()
  let data = null
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = null
    }
  }
  if (!res.ok) {
    let msg = data && typeof data.error === 'string' ? data.error : `${res.status} ${res.statusText}`.trim()
    if (res.status === 401) msg = `the server wants an API token (${msg}): enter one in the token field`
    if (res.status === 403) msg = `this token's role may not do that (${msg})`
    throw new APIError(res.status, `${method} ${path}: ${msg}`)
  }
  if (text && data === null) throw new APIError(res.status, `${method} ${path}: the answer is not JSON`)
  return data
}

// get is call('GET', …) with query values (empty ones left out).
export function get(path, query) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(query || {})) if (v !== null && v !== undefined && v !== '') q.set(k, v)
  const qs = q.toString()
  return call('GET', qs ? `${path}?${qs}` : path)
}

// seg encodes one path segment.
export const seg = encodeURIComponent

// Terminal run statuses: polling stops there.
export const FINISHED = new Set(['succeeded', 'partial', 'failed', 'stopped', 'cancelled', 'skipped'])
