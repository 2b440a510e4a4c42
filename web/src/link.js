// Link mode: the page opened from an upload link (`/?token=ut_…`, made by
// `tusk upload-link` or POST /v1/upload-tokens). An upload token may only
// create and continue its own uploads on the tus endpoint; it cannot read
// /v1, so the page shows what this browser uploaded with the link instead of
// the project's assets, kept in localStorage.

import { formatBytes } from './assets.js'

/** The upload token in the page's query string, or '' (not link mode). */
export function linkToken(search) {
  const token = new URLSearchParams(search).get('token')?.trim() ?? ''
  return token.startsWith('ut_') ? token : ''
}

const STORAGE_PREFIX = 'tusk.link.'
const KEEP = 200 // entries kept per link, newest first

const STATE_TEXT = {
  uploading: (u) => `uploading ${u.percent} %`,
  done: () => 'uploaded',
  error: (u) => u.message || 'failed',
  // Left uploading when the page closed: tus-js-client kept its URL, so the
  // same file added again continues from what the server has.
  interrupted: () => 'interrupted: add the file again to resume',
}

/** The uploads made with one link in this browser, and their list on the page. */
export class LinkUploads {
  constructor(token, listEl, emptyEl) {
    this.listEl = listEl
    this.emptyEl = emptyEl
    // Keyed by a hash: the token itself stays out of storage keys (which
    // extensions and devtools list), and tokens never share an entry.
    this.storageKey = STORAGE_PREFIX + sha256Hex(token)
    this.entries = this.load().map((u) => (u.state === 'uploading' ? { ...u, state: 'interrupted' } : u))
    this.save()
    this.render()
  }

  load() {
    try {
      const data = JSON.parse(localStorage.getItem(this.storageKey) || '[]')
      return Array.isArray(data) ? data.filter((u) => u && typeof u.name === 'string') : []
    } catch {
      return []
    }
  }

  save() {
    try {
      localStorage.setItem(this.storageKey, JSON.stringify(this.entries.slice(0, KEEP)))
    } catch {
      // Storage may be full or disabled; the list then lasts until the page reloads.
    }
  }

  /**
   * The entry of an Uppy file's current upload: an unfinished one of the same
   * file (a retry, or a resume after a reload) is continued, anything else
   * starts a new entry.
   */
  entry(file) {
    let u = this.entries.find((e) => e.fileId === file.id && e.state !== 'done')
    if (!u) {
      u = {
        key: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
        fileId: file.id,
        name: file.name ?? 'file',
        size: file.size ?? null,
        state: 'uploading',
        percent: 0,
        startedAt: new Date().toISOString(),
      }
      this.entries.unshift(u)
    }
    return u
  }

  update(file, patch) {
    const u = this.entry(file)
    Object.assign(u, patch, { updatedAt: new Date().toISOString() })
    if (u.state !== 'error') {
      delete u.message
      delete u.code
      delete u.status
    }
    this.save()
    this.render()
  }

  started(file) {
    this.update(file, { state: 'uploading', percent: 0 })
  }

  progress(file, { bytesUploaded, bytesTotal }) {
    const percent = bytesTotal ? Math.floor((bytesUploaded / bytesTotal) * 100) : 0
    const u = this.entries.find((e) => e.fileId === file.id && e.state !== 'done')
    // Progress events come often; redraw only when the whole percent moves.
    if (u && u.state === 'uploading' && u.percent === percent) return
    this.update(file, { state: 'uploading', percent })
  }

  succeeded(file, uploadUrl) {
    this.update(file, { state: 'done', percent: 100, url: uploadUrl ?? null })
  }

  failed(file, err) {
    this.update(file, { state: 'error', ...describeError(err) })
  }

  /** A file removed from the Dashboard before its upload finished (tus cancels it). */
  removed(file) {
    const i = this.entries.findIndex((e) => e.fileId === file.id && e.state === 'uploading')
    if (i < 0) return
    this.entries.splice(i, 1)
    this.save()
    this.render()
  }

  render() {
    const items = this.entries.map((u) => {
      const li = document.createElement('li')
      li.className = 'link-upload'
      li.dataset.name = u.name
      li.dataset.state = u.state
      if (u.status) li.dataset.status = String(u.status)
      if (u.code) li.dataset.code = u.code

      const name = document.createElement('span')
      name.className = 'name'
      name.title = u.name
      name.textContent = u.name
      const size = document.createElement('span')
      size.className = 'size muted'
      size.textContent = u.size != null ? formatBytes(u.size) : ''
      const status = document.createElement('span')
      status.className = `link-status link-status-${u.state}`
      status.textContent = STATE_TEXT[u.state]?.(u) ?? u.state
      const row = document.createElement('div')
      row.className = 'title'
      row.append(name, size)
      li.append(row)
      if (u.state === 'uploading') {
        const bar = document.createElement('progress')
        bar.max = 100
        bar.value = u.percent
        li.append(bar)
      }
      li.append(status)
      return li
    })
    this.listEl.replaceChildren(...items)
    this.emptyEl.hidden = items.length > 0
  }
}

/**
 * What the server said about a failed upload. tus-js-client's error keeps the
 * response (tusk answers tus errors as text, e.g. "ERR_TYPE_NOT_ALLOWED: these
 * bytes are video …"); the code goes to an attribute, the sentence to the person.
 */
export function describeError(err) {
  const res = err?.originalResponse ?? err?.cause?.originalResponse
  const status = res?.getStatus?.() || null
  let body = ''
  try {
    body = (res?.getBody?.() ?? '').trim()
  } catch {
    // The body could not be read; fall back to the error's own message.
  }
  let code = null
  let message = body
  if (body.startsWith('{')) {
    // The resumable-upload draft answers problem+json; tolerate JSON anywhere.
    try {
      const j = JSON.parse(body)
      const e = j.error ?? j
      message = e.message || e.detail || e.title || body
      code = e.code || null
    } catch {
      // Not JSON after all: keep the text.
    }
  }
  const m = /^([A-Z][A-Z0-9_]+):\s*(.*)$/s.exec(message)
  if (m) {
    code = m[1]
    message = m[2]
  }
  if (!message) {
    message = status ? `the server answered ${status}` : 'the upload could not reach the server'
  }
  return { status, code, message }
}

// --- SHA-256 ---------------------------------------------------------------
// Synchronous and without crypto.subtle, which pages served over plain http
// (not localhost) do not have.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
])

/** Hex SHA-256 of a string's UTF-8 bytes. */
export function sha256Hex(text) {
  const data = new TextEncoder().encode(text)
  const bitLen = data.length * 8
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64)
  padded.set(data)
  padded[data.length] = 0x80
  const view = new DataView(padded.buffer)
  view.setUint32(padded.length - 8, Math.floor(bitLen / 2 ** 32))
  view.setUint32(padded.length - 4, bitLen >>> 0)

  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ])
  const w = new Uint32Array(64)
  const rotr = (x, n) => (x >>> n) | (x << (32 - n))
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4)
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3)
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10)
      w[i] = w[i - 16] + s0 + w[i - 7] + s1
    }
    let [a, b, c, d, e, f, g, hh] = h
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0
      hh = g
      g = f
      f = e
      e = (d + t1) >>> 0
      d = c
      c = b
      b = a
      a = (t1 + t2) >>> 0
    }
    h[0] += a
    h[1] += b
    h[2] += c
    h[3] += d
    h[4] += e
    h[5] += f
    h[6] += g
    h[7] += hh
  }
  return [...h].map((x) => x.toString(16).padStart(8, '0')).join('')
}
