// Test D: Uppy (core + tus, the versions web/ uses) on a page served from
// another origin, uploading with an upload token (`ut_…`) instead of a key, as
// a customer's own site would after getting the token from its backend. The
// token (max 3 uploads, images and audio only) is made here with the key:
//   a. pic.png and b. tone.wav upload; the key reads them back, bytes match;
//   c. a 3 MiB MP4 declared as application/octet-stream, in 1 MiB chunks: the
//      creation passes, the bytes are sniffed at the first PATCH, which answers
//      415 with the server's message on the page, after one PATCH; the asset
//      is failed (type_not_allowed). That was the token's third upload, so
//   d. pic.jpg is refused at creation: 403 "… all of them have been made".
//
// Env: TUSK_URL, TUSK_KEY, OUT_DIR.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import { Failure, assert, launch, log, run, settings, sha256, watchPage } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const { tusk, out, key } = settings()
const fixtures = process.env.TUSK_FIXTURES || join(here, '..', 'fixtures', 'media')
const MiB = 1024 * 1024
const SNIFF = 8 * 1024 // what tusk reads before deciding on a type

/** Uppy's core and tus plugin, bundled for the page (no CDN: offline, pinned). */
async function bundleUppy() {
  const result = await esbuild.build({
    stdin: {
      contents: "import Uppy from '@uppy/core'\nimport Tus from '@uppy/tus'\nObject.assign(window, { Uppy, UppyTus: Tus })\n",
      resolveDir: here,
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    write: false,
    logLevel: 'warning',
    target: ['chrome100'],
    define: { 'process.env.NODE_ENV': '"production"' },
  })
  return result.outputFiles[0].contents
}

// The page: one headless Uppy per upload (no Dashboard: the test drives it),
// each upload's outcome listed with the server's message.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Uppy with an upload token</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui;margin:20px} li{margin:4px 0} [data-state=done]{color:#1a7f37} [data-state=error]{color:#cf222e}
pre{background:#f4f4f4;padding:10px;white-space:pre-wrap}</style>
<script src="/uppy.js"></script></head>
<body><h1>Uppy → tusk with an upload token (cross-origin)</h1><ul id="results"></ul><pre id="log"></pre>
<script>
const show = (line) => { document.getElementById('log').textContent += line + '\\n' }
// Uppy's own logger would print upload errors with console.error; they are
// expected here, so they go to the page.
const logger = { debug() {}, warn: (...a) => show('uppy warn: ' + a.join(' ')), error: (...a) => show('uppy error: ' + a.join(' ')) }

function result(name, state, text, status) {
  const li = document.createElement('li')
  li.dataset.name = name
  li.dataset.state = state
  if (status) li.dataset.status = status
  li.textContent = name + ': ' + text
  document.getElementById('results').append(li)
}

// Uploads one file from this page's server; resolves with what happened.
window.tryUpload = async ({ endpoint, token, name, type, chunkSize }) => {
  const blob = await (await fetch('/fixture/' + name)).blob()
  const requests = []
  const uppy = new Uppy({ id: 'up-' + name, autoProceed: false, logger })
  uppy.use(UppyTus, {
    endpoint,
    headers: { Authorization: 'Bearer ' + token },
    chunkSize,
    // One quick retry: a refusal (4xx) is not retried at all, and a
    // connection cut mid-PATCH would show up as a HEAD after it.
    retryDelays: [0],
    storeFingerprintForResuming: false,
    allowedMetaFields: ['name', 'type'],
    onBeforeRequest(req) { requests.push({ method: req.getMethod(), url: req.getURL() }) },
    onAfterResponse(req, res) {
      const r = requests.findLast((x) => x.method === req.getMethod() && x.url === req.getURL())
      if (r) r.status = res.getStatus()
    },
  })
  const outcome = new Promise((resolve) => {
    uppy.on('upload-success', (file, response) => {
      result(name, 'done', 'uploaded to ' + response.uploadURL)
      resolve({ ok: true, url: response.uploadURL, requests })
    })
    uppy.on('upload-error', (file, error, response) => {
      // (file, error, response): response is { status, body: { xhr } } when the server answered.
      const status = response?.status ?? error?.originalResponse?.getStatus?.() ?? 0
      const body = response?.body?.xhr?.responseText ?? error?.originalResponse?.getBody?.() ?? ''
      const message = (body || error?.message || '').trim()
      result(name, 'error', 'HTTP ' + status + ': ' + message, status)
      resolve({ ok: false, status, body, message, url: file.tus?.uploadUrl ?? null, requests })
    })
  })
  uppy.addFile({ name, type, data: blob, source: 'test' })
  show(name + ': ' + blob.size + ' bytes as ' + type)
  uppy.upload()
  return outcome
}
</script></body></html>`

async function api(method, path, body) {
  const res = await fetch(`${tusk}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  if (!res.ok) throw new Failure(`${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text)
}

const idOf = (url) => new URL(url).pathname.split('/').filter(Boolean).pop()

/** The asset once processed, and the sha256 of what its download_url serves (fetched with the key). */
async function readBack(id) {
  const deadline = Date.now() + 30000
  for (;;) {
    const asset = await api('GET', `/v1/assets/${id}`)
    assert(asset.state !== 'failed', `asset ${id} failed: ${JSON.stringify(asset)}`)
    if (asset.state === 'ready') {
      assert(asset.download_url, `asset ${id} has no download_url`)
      const res = await fetch(asset.download_url, { headers: { Authorization: `Bearer ${key}` } })
      assert(res.status === 200, `download of ${id}: ${res.status}`)
      return { asset, downloaded: sha256(Buffer.from(await res.arrayBuffer())) }
    }
    assert(Date.now() < deadline, `asset ${id} not ready after 30 s: ${JSON.stringify(asset)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

await run('Uppy with an upload token, cross-origin', async () => {
  assert(key, 'TUSK_KEY is not set: upload tokens need a server with keys')
  // The MP4 fixture's first bytes (ftyp, moov…) and random padding to 3 MiB:
  // a video by its first 8 KiB, far larger than what the server should read.
  const clip = readFileSync(join(fixtures, 'clip.mp4'))
  const files = {
    'pic.png': readFileSync(join(fixtures, 'pic.png')),
    'tone.wav': readFileSync(join(fixtures, 'tone.wav')),
    'movie.bin': Buffer.concat([clip, randomBytes(3 * MiB - clip.length)]),
    'pic.jpg': readFileSync(join(fixtures, 'pic.jpg')),
  }
  const uppyJs = await bundleUppy()
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    const fixture = path.startsWith('/fixture/') && files[path.slice('/fixture/'.length)]
    if (path === '/') res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE)
    else if (path === '/uppy.js') res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(uppyJs)
    else if (fixture) res.writeHead(200, { 'Content-Type': 'application/octet-stream' }).end(fixture)
    else res.writeHead(404).end('not found')
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const pageOrigin = `http://127.0.0.1:${server.address().port}`
  assert(pageOrigin !== new URL(tusk).origin, 'the page must be on another origin')
  log(`page on ${pageOrigin} (Uppy bundled: ${(uppyJs.length / 1024).toFixed(0)} KiB), tusk on ${tusk}`)

  const minted = await api('POST', '/v1/upload-tokens', {
    max_uploads: 3,
    allowed_types: ['image', 'audio'],
    expires_in: 600,
  })
  assert(/^ut_/.test(minted.token) && /^utk_/.test(minted.id), `token: ${JSON.stringify(minted)}`)
  assert(minted.max_uploads === 3 && minted.uploads_used === 0, `token: ${JSON.stringify(minted)}`)
  const endpoint = minted.upload_endpoint || `${tusk}/files/`
  log(`upload token ${minted.id}: 3 uploads, image and audio`)

  const { context, close } = await launch()
  try {
    const page = context.pages()[0] ?? (await context.newPage())
    // Chromium logs the refusals below as failed loads; anything else (a CORS
    // block above all) fails the test.
    const problems = watchPage(page, 'page', /Failed to load resource: the server responded with a status of (403|415)/)
    // What went over the wire to tusk, retries included.
    const wire = []
    page.on('request', (r) => {
      if (r.url().startsWith(`${tusk}/`)) wire.push({ method: r.method(), url: r.url() })
    })
    page.setDefaultTimeout(30000)
    await page.goto(`${pageOrigin}/`)
    assert(await page.evaluate(() => typeof Uppy === 'function' && typeof UppyTus === 'function'), 'Uppy did not load')
    const upload = (name, type, chunkSize = 1 * MiB) =>
      page.evaluate((a) => tryUpload(a), { endpoint, token: minted.token, name, type, chunkSize })

    // a, b: uploads in the token's project, read back with the key.
    for (const [name, type, kind] of [['pic.png', 'image/png', 'image'], ['tone.wav', 'audio/wav', 'audio']]) {
      const r = await upload(name, type)
      assert(r.ok, `${name} should upload with the token: ${JSON.stringify(r)}`)
      const { asset, downloaded } = await readBack(idOf(r.url))
      const want = sha256(files[name])
      assert(asset.name === name && asset.type === kind, `${name}: asset ${JSON.stringify(asset)}`)
      assert(asset.project_id === minted.project_id, `${name}: project ${asset.project_id}, want ${minted.project_id}`)
      assert(asset.sha256 === want && downloaded === want, `${name}: sha256 ${asset.sha256} / downloaded ${downloaded}, want ${want}`)
      log(`${name}: ${r.requests.map((q) => q.method).join(' ')}; ready as ${asset.type}, downloaded bytes match`)
    }

    // c: a video under a neutral declared type. Creation passes; the first
    // PATCH is cut short by the sniffing.
    const patchesBefore = wire.filter((q) => q.method === 'PATCH').length
    const movie = await upload('movie.bin', 'application/octet-stream')
    log('movie.bin:', JSON.stringify({ ...movie, body: undefined }))
    assert(!movie.ok, 'a video must not upload with an image/audio token')
    assert(movie.status === 415, `movie.bin: expected HTTP 415 on the page, got ${movie.status} (${movie.message})`)
    assert(/these bytes are video/.test(movie.message), `movie.bin: 415 message: ${movie.message}`)
    const methods = movie.requests.map((q) => `${q.method} ${q.status ?? '-'}`)
    assert(
      JSON.stringify(methods) === JSON.stringify(['POST 201', 'PATCH 415']),
      `movie.bin: expected POST 201 then one PATCH 415, got ${methods.join(', ')}`,
    )
    const patchesOnWire = wire.filter((q) => q.method === 'PATCH').slice(patchesBefore)
    assert(patchesOnWire.length === 1, `movie.bin: ${patchesOnWire.length} PATCHes on the wire, want 1`)
    const movieId = idOf(patchesOnWire[0].url)
    const failed = await api('GET', `/v1/assets/${movieId}`)
    assert(failed.state === 'failed' && failed.error_code === 'type_not_allowed', `movie.bin asset: ${JSON.stringify(failed)}`)
    assert(failed.received_bytes <= SNIFF + 1 * MiB, `movie.bin: the server kept ${failed.received_bytes} bytes`)
    const shown = await page.locator('li[data-name="movie.bin"]').textContent()
    assert(/HTTP 415: .*these bytes are video/.test(shown), `movie.bin on the page: ${shown}`)
    log(`movie.bin: refused at its first PATCH (1 MiB of 3 MiB); asset ${failed.state} (${failed.error_code}), ${failed.received_bytes} bytes kept`)

    // d: that was the token's third upload; the fourth is refused at creation.
    const fourth = await upload('pic.jpg', 'image/jpeg')
    log('pic.jpg:', JSON.stringify(fourth))
    assert(!fourth.ok && fourth.status === 403, `pic.jpg: expected 403, got ${fourth.status} (${fourth.message})`)
    assert(/all of them have been made/.test(fourth.message), `pic.jpg: 403 message: ${fourth.message}`)
    assert(
      fourth.requests.length === 1 && fourth.requests[0].method === 'POST',
      `pic.jpg: a refused creation must not be retried: ${JSON.stringify(fourth.requests)}`,
    )
    const refused = await page.locator('li[data-name="pic.jpg"]').textContent()
    assert(/HTTP 403: .*all of them have been made/.test(refused), `pic.jpg on the page: ${refused}`)

    const after = await api('GET', `/v1/upload-tokens/${minted.id}`)
    assert(after.uploads_used === 3, `the token has made ${after.uploads_used} uploads, want 3: ${JSON.stringify(after)}`)
    log(`token ${minted.id}: ${after.uploads_used} of ${after.max_uploads} uploads used; the 4th was refused (403)`)

    const shot = join(out, 'uppy-token.png')
    await page.screenshot({ path: shot, fullPage: true })
    log(`screenshot: ${shot}`)
    assert(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)
  } finally {
    await close()
    server.close()
  }
})
