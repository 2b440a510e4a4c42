// Helpers shared by the tus-js-client scenarios: deterministic data, sha256,
// and verification of the stored bytes through tusk's asset API.
import { createHash } from 'node:crypto'
import * as tus from 'tus-js-client'

export const MiB = 1024 * 1024

export class Failure extends Error {}

export function fail(msg) {
  throw new Failure(msg)
}

export function assert(cond, msg) {
  if (!cond) fail(msg)
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function bytes(n, seed) {
  const out = Buffer.allocUnsafe(n)
  let x = (seed * 2654435761 + 1) >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex')
}

/** The upload's id: the last path segment of its URL. */
export function idOf(uploadUrl) {
  const segs = new URL(uploadUrl).pathname.split('/').filter(Boolean)
  return segs[segs.length - 1]
}

/**
 * Runs an Upload to success. `hooks` sees every request and response, so a
 * scenario can count PATCHes or read headers. Retries are off: any error the
 * server causes fails the scenario instead of being papered over.
 */
export function upload(endpoint, file, options = {}, hooks = {}) {
  return new Promise((resolve, reject) => {
    const log = []
    const entries = new Map() // request -> its log entry (parallel uploads interleave)
    const up = new tus.Upload(file, {
      endpoint,
      retryDelays: null,
      ...options,
      onBeforeRequest(req) {
        const entry = { method: req.getMethod(), url: req.getURL(), offset: req.getHeader('Upload-Offset') }
        log.push(entry)
        entries.set(req, entry)
        hooks.onBeforeRequest?.(req, up)
        return options.onBeforeRequest?.(req)
      },
      onAfterResponse(req, res) {
        const entry = entries.get(req)
        if (entry) entry.status = res.getStatus()
        hooks.onAfterResponse?.(req, res, up)
        return options.onAfterResponse?.(req, res)
      },
      onProgress(sent, total) {
        hooks.onProgress?.(sent, total, up)
      },
      onSuccess() {
        resolve({ upload: up, url: up.url, log })
      },
      onError(err) {
        reject(new Failure(`tus-js-client failed: ${err.message}\nrequests: ${JSON.stringify(log)}`))
      },
    })
    hooks.started?.(up)
    up.start()
  })
}

/**
 * GET /v1/assets/{id} until it is ready (or fail when it fails / times out).
 * `headers` authenticate the call on a server with keys.
 */
export async function waitReady(server, id, timeoutMs = 30000, headers = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    const res = await fetch(`${server}/v1/assets/${id}`, { headers })
    const text = await res.text()
    if (res.status !== 200) fail(`GET /v1/assets/${id}: ${res.status} ${text}`)
    last = JSON.parse(text)
    if (last.state === 'ready') return last
    if (last.state === 'failed') fail(`asset ${id} failed: ${text}`)
    if (Date.now() > deadline) fail(`asset ${id} not ready after ${timeoutMs} ms: ${text}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The stored bytes must be the source's: the asset reports the right size and
 * sha256, and its signed download_url serves exactly those bytes (`headers`
 * as for waitReady).
 */
export async function verifyStored(server, uploadUrl, data, headers = {}) {
  const id = idOf(uploadUrl)
  const asset = await waitReady(server, id, 30000, headers)
  const want = sha256(data)
  assert(asset.size_bytes === data.length, `asset ${id}: size_bytes ${asset.size_bytes}, want ${data.length}`)
  assert(asset.sha256 === want, `asset ${id}: sha256 ${asset.sha256}, want ${want}`)
  assert(typeof asset.download_url === 'string', `asset ${id}: no download_url: ${JSON.stringify(asset)}`)
  const res = await fetch(asset.download_url)
  if (res.status !== 200) fail(`download ${asset.download_url}: status ${res.status} ${await res.text()}`)
  const got = Buffer.from(await res.arrayBuffer())
  assert(got.length === data.length, `download of ${id}: ${got.length} bytes, want ${data.length}`)
  assert(sha256(got) === want, `download of ${id}: sha256 ${sha256(got)}, want ${want}`)
  return asset
}

/** HEAD an upload URL the way a tus client would. */
export async function head(url) {
  const res = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
  return res
}
