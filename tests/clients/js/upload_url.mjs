// Direct uploads: a backend creates the asset with its key (POST /v1/assets)
// and hands the client only the asset's `upload_url`
// (`/files/<id>?access=<capability>`). tus-js-client uploads to it with no
// Authorization header at all, is aborted mid-way and resumed by a new Upload
// from the same URL; the key then reads back the same bytes. The capability
// must also refuse what it does not allow: a tampered or expired one (401),
// another asset's path (404), reading (403), more bytes than the asset's
// max_size_bytes (413).
//
//   TUSK_URL=http://127.0.0.1:1080 TUSK_KEY=sk_... node upload_url.mjs
//
// Exits non-zero naming the failed checks.
import * as tus from 'tus-js-client'
import { MiB, assert, bytes, fail, head, verifyStored } from './lib.mjs'

const server = (process.env.TUSK_URL || '').replace(/\/+$/, '')
const key = process.env.TUSK_KEY || ''
if (!/^https?:\/\//.test(server) || !key) {
  console.error('usage: TUSK_URL=http://host:port TUSK_KEY=sk_... node upload_url.mjs')
  process.exit(2)
}
const withKey = { Authorization: `Bearer ${key}` }

/** POST /v1/assets with the key: the backend's side. */
async function createAsset(body) {
  const res = await fetch(`${server}/v1/assets`, {
    method: 'POST',
    headers: { ...withKey, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  if (res.status !== 201) fail(`POST /v1/assets ${JSON.stringify(body)}: ${res.status} ${text}`)
  const asset = JSON.parse(text)
  const url = new URL(asset.upload_url ?? '')
  assert(url.pathname.endsWith(`/${asset.id}`) && url.searchParams.get('access'),
    `upload_url is not /files/<id>?access=…: ${asset.upload_url}`)
  assert(asset.upload_url_expires_at, `no upload_url_expires_at: ${text}`)
  return asset
}

/** The URL with one character of the capability's signature changed. */
function tampered(uploadUrl) {
  const url = new URL(uploadUrl)
  const access = url.searchParams.get('access')
  const dot = access.lastIndexOf('.')
  assert(dot > 0, `the capability has no signature part: ${access}`)
  // Mid-signature: the last base64url character may carry only padding bits.
  const i = dot + 1 + Math.floor((access.length - dot - 1) / 2)
  const c = access[i] === 'A' ? 'B' : 'A'
  url.searchParams.set('access', access.slice(0, i) + c + access.slice(i + 1))
  return url.href
}

/** A PATCH of `body` at offset 0, as tus 1.0 sends it (no credentials). */
function patch(url, body, offset = 0) {
  return fetch(url, {
    method: 'PATCH',
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
    body,
  })
}

/** A tus.Upload to the capability URL; resolves with its requests, or rejects with the error. */
function uploadTo(uploadUrl, data, options = {}, onChunk = null) {
  return new Promise((resolve, reject) => {
    const log = []
    const up = new tus.Upload(data, {
      uploadUrl,
      headers: {}, // the capability in the URL is the only credential
      retryDelays: null,
      ...options,
      onBeforeRequest(req) {
        log.push({ method: req.getMethod(), offset: req.getHeader('Upload-Offset'), auth: req.getHeader('Authorization') })
      },
      onAfterResponse(req, res) {
        log[log.length - 1].status = res.getStatus()
      },
      onChunkComplete() {
        onChunk?.(up, log)
      },
      onSuccess: () => resolve({ up, log }),
      onError: (err) => reject(Object.assign(err, { log })),
    })
    up.start()
  })
}

const checks = {
  // 6 MiB in 1 MiB PATCHes, aborted after two chunks, resumed by a new Upload.
  async abortResume() {
    const data = bytes(6 * MiB, 21)
    const asset = await createAsset({ name: 'big.bin', size_bytes: data.length })
    const url = asset.upload_url

    let aborted = null
    const first = await new Promise((resolve, reject) => {
      uploadTo(url, data, { chunkSize: 1 * MiB }, (up, log) => {
        if (aborted || log.filter((r) => r.method === 'PATCH').length < 2) return
        aborted = up.abort().then(() => resolve(log), reject)
      }).then(() => reject(new Error('the upload finished before it could be aborted')), reject)
    })
    assert(first[0].method === 'HEAD', `an Upload with uploadUrl should start with HEAD: ${JSON.stringify(first)}`)
    assert(!first.some((r) => r.method === 'POST'), `the first Upload created an upload: ${JSON.stringify(first)}`)
    assert(first.every((r) => r.auth == null), `a request carried Authorization: ${JSON.stringify(first)}`)

    const h = await head(url)
    const stored = Number(h.headers.get('upload-offset'))
    assert(h.status === 200 && stored >= 2 * MiB && stored < data.length,
      `HEAD after the abort: ${h.status}, Upload-Offset ${stored}`)

    const { up, log } = await uploadTo(url, data, { chunkSize: 1 * MiB })
    assert(up.url === url, `the resumed Upload used ${up.url}`)
    assert(log[0].method === 'HEAD' && !log.some((r) => r.method === 'POST'), `resume: ${JSON.stringify(log)}`)
    const firstPatch = log.find((r) => r.method === 'PATCH')
    assert(firstPatch && Number(firstPatch.offset) === stored,
      `resumed at ${firstPatch?.offset}, but HEAD said ${stored}: ${JSON.stringify(log)}`)
    assert(log.every((r) => r.auth == null && (r.status === 200 || r.status === 204)), `resume: ${JSON.stringify(log)}`)
    const ready = await verifyStored(server, url, data, withKey)
    assert(ready.name === 'big.bin', `asset name ${ready.name}`)
    console.log(`  abortResume: aborted at ${stored} of ${data.length} bytes, resumed there, sha256 matches`)

    // The IETF draft reads the same URL: the upload is complete.
    const ietf = await fetch(url, { method: 'HEAD', headers: { 'Upload-Draft-Interop-Version': '6' } })
    assert(ietf.status < 300 && ietf.headers.get('upload-complete') === '?1' &&
      Number(ietf.headers.get('upload-offset')) === data.length,
    `IETF HEAD on the finished upload: ${ietf.status}, Upload-Complete ${ietf.headers.get('upload-complete')}`)
    // The capability uploads; it does not read.
    const get = await fetch(url)
    assert(get.status === 403, `GET with the capability: ${get.status}, want 403`)
  },

  // One signature character changed: 401.
  async tamperedAccess() {
    const asset = await createAsset({ name: 'tampered.bin', size_bytes: 10 })
    const bad = tampered(asset.upload_url)
    const h = await head(bad)
    assert(h.status === 401, `HEAD with a tampered capability: ${h.status}, want 401`)
    const p = await patch(bad, 'x'.repeat(10))
    assert(p.status === 401, `PATCH with a tampered capability: ${p.status} ${await p.text()}, want 401`)
    const good = await head(asset.upload_url)
    assert(good.status === 200, `HEAD with the real capability: ${good.status}`)
  },

  // A's capability on B's path: 404 (it names one upload only); B's own works,
  // down to DELETE.
  async otherAssetsPath() {
    const a = await createAsset({ name: 'a.bin', size_bytes: 10 })
    const b = await createAsset({ name: 'b.bin', size_bytes: 10 })
    const access = new URL(a.upload_url).searchParams.get('access')
    const cross = new URL(b.upload_url)
    cross.searchParams.set('access', access)
    const h = await head(cross.href)
    assert(h.status === 404, `HEAD /files/<B>?access=<A's>: ${h.status}, want 404`)
    const p = await patch(cross.href, 'y'.repeat(10))
    assert(p.status === 404, `PATCH /files/<B>?access=<A's>: ${p.status}, want 404`)
    const del = await fetch(b.upload_url, { method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0' } })
    assert(del.status === 204, `DELETE with B's own capability: ${del.status}, want 204`)
    const gone = await fetch(`${server}/v1/assets/${b.id}`, { headers: withKey })
    assert(gone.status === 404, `GET /v1/assets/<B> after the DELETE: ${gone.status}, want 404`)
  },

  // expires_in: 1, used 2 s later: 401, saying it expired.
  async expired() {
    const asset = await createAsset({ name: 'late.bin', expires_in: 1, max_size_bytes: 1000 })
    await new Promise((r) => setTimeout(r, 2000))
    const h = await head(asset.upload_url)
    assert(h.status === 401, `HEAD with an expired capability: ${h.status}, want 401`)
    const p = await patch(asset.upload_url, 'z'.repeat(10))
    const text = await p.text()
    assert(p.status === 401 && /expired/i.test(text), `PATCH with an expired capability: ${p.status} ${text}`)
  },

  // max_size_bytes 1000, length deferred, 2000 bytes: 413.
  async overMaxSize() {
    const asset = await createAsset({ name: 'too-big.bin', max_size_bytes: 1000 })
    const data = bytes(2000, 22)
    let err
    try {
      await uploadTo(asset.upload_url, data, { uploadLengthDeferred: true })
    } catch (e) {
      err = e
    }
    assert(err, 'an upload over max_size_bytes must fail')
    const status = err.originalResponse?.getStatus()
    assert(status === 413, `expected 413, got ${status}: ${err.message}\nrequests: ${JSON.stringify(err.log)}`)
    const patches = err.log.filter((r) => r.method === 'PATCH')
    assert(patches.length === 1, `a 413 must end the upload: ${JSON.stringify(err.log)}`)
  },
}

const failed = []
for (const [name, check] of Object.entries(checks)) {
  const t0 = Date.now()
  try {
    await check()
    console.log(`ok   ${name} (${Date.now() - t0} ms)`)
  } catch (e) {
    failed.push(name)
    console.log(`FAIL ${name} (${Date.now() - t0} ms): ${e.stack || e}`)
  }
}
if (failed.length) {
  console.error(`upload_url: ${failed.length} of ${Object.keys(checks).length} checks failed: ${failed.join(', ')}`)
  process.exit(1)
}
console.log(`upload_url: all ${Object.keys(checks).length} checks passed`)
