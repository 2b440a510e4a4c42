// The API key (kept in localStorage) and authenticated calls to /v1.

const KEY_STORAGE = 'tusk.apiKey'

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || ''
  } catch {
    return ''
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key)
    else localStorage.removeItem(KEY_STORAGE)
  } catch {
    // Storage may be disabled; the key then lasts until the page reloads.
  }
  memoryKey = key
}

let memoryKey = getKey()

/** Headers that authenticate a request: nothing in open mode. */
export function authHeaders() {
  const key = memoryKey
  return key ? { Authorization: `Bearer ${key}` } : {}
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** GET a /v1 JSON resource; throws ApiError with the server's code and message. */
export async function getJson(path, { signal } = {}) {
  const resp = await fetch(path, { headers: { Accept: 'application/json', ...authHeaders() }, signal, cache: 'no-store' })
  if (!resp.ok) throw await apiError(resp)
  return resp.json()
}

export async function apiError(resp) {
  let code = `http_${resp.status}`
  let message = `${resp.status} ${resp.statusText}`
  try {
    const text = await resp.text()
    try {
      const body = JSON.parse(text)
      const err = body.error || body
      code = err.code || code
      message = err.message || message
    } catch {
      if (text.trim()) message = text.trim()
    }
  } catch {
    // The body could not be read; keep the status line.
  }
  return new ApiError(resp.status, code, message)
}
