// Test B: a page on another origin (a static server on another port) uploads
// to tusk with tus-js-client in headless Chromium, as browsers do in
// production: every tus request is cross-origin and preflighted. Errors must
// cross too: an upload over --max-size reaches the page as HTTP 413 and a
// missing key as 401, each after one request (not retried as a network error).
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { assert, launch, log, run, settings, watchPage } from './lib.mjs'

const { tusk, out, key } = settings()
const require = createRequire(import.meta.url)
const tusJs = readFileSync(require.resolve('tus-js-client/dist/tus.min.js'))

// The page: tus-js-client's browser build and a helper the test calls.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tus-js-client on another origin</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui;margin:20px} pre{background:#f4f4f4;padding:10px;white-space:pre-wrap}</style>
<script src="/tus.min.js"></script></head>
<body><h1>tus-js-client → tusk (cross-origin)</h1><pre id="log"></pre>
<script>
const show = (line) => { document.getElementById('log').textContent += line + '\\n' }

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('')
const sha256 = async (blob) => hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))

function data(size, seed) {
  const a = new Uint8Array(size)
  let x = seed
  for (let i = 0; i < size; i++) { x = (x * 1103515245 + 12345) >>> 0; a[i] = x >>> 24 }
  return new Blob([a], { type: 'application/octet-stream' })
}

// One upload; resolves with what happened instead of throwing.
window.tryUpload = ({ endpoint, size, seed, key, chunkSize, name }) => new Promise((resolve) => {
  const file = data(size, seed)
  const requests = []
  const upload = new tus.Upload(file, {
    endpoint,
    chunkSize,
    headers: key ? { Authorization: 'Bearer ' + key } : {},
    metadata: { filename: name, filetype: 'application/octet-stream' },
    // Retries stay on (short), so a CORS failure would show up as status 0 after several POSTs.
    retryDelays: [0, 100, 200],
    storeFingerprintForResuming: false,
    onBeforeRequest(req) { requests.push(req.getMethod()) },
    async onSuccess() {
      show(name + ': uploaded to ' + upload.url + ' with ' + requests.join(' '))
      resolve({ ok: true, url: upload.url, requests, sha256: await sha256(file) })
    },
    onError(err) {
      const res = err.originalResponse
      const status = res ? res.getStatus() : 0
      const body = res ? res.getBody() : ''
      show(name + ': error ' + status + ' after ' + requests.join(' ') + ': ' + (body || err.message).trim())
      resolve({ ok: false, status, body, message: String(err.message), requests })
    },
  })
  upload.start()
})

// Waits for the asset to be ready (cross-origin /v1 call with the key), then
// downloads it from its signed URL and returns the asset and the bytes' sha256.
window.fetchAsset = async ({ api, id, key }) => {
  for (let i = 0; i < 100; i++) {
    const r = await fetch(api + '/v1/assets/' + id, { headers: { Authorization: 'Bearer ' + key } })
    if (!r.ok) throw new Error('GET asset: ' + r.status + ' ' + (await r.text()))
    const asset = await r.json()
    if (asset.state === 'ready' || asset.state === 'failed') {
      let downloaded = null
      if (asset.download_url) {
        const d = await fetch(asset.download_url)
        if (!d.ok) throw new Error('download: ' + d.status)
        downloaded = await sha256(await d.blob())
      }
      show(asset.name + ': ' + asset.state + ', download sha256 ' + downloaded)
      return { asset, downloaded }
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('asset ' + id + ' never became ready')
}
</script></body></html>`

function serve() {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE)
    } else if (path === '/tus.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(tusJs)
    } else {
      res.writeHead(404).end('not found')
    }
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)))
}

await run('cross-origin tus-js-client', async () => {
  const server = await serve()
  const pageOrigin = `http://127.0.0.1:${server.address().port}`
  const tuskOrigin = new URL(tusk).origin
  assert(pageOrigin !== tuskOrigin, 'the page must be on another origin')
  log(`page on ${pageOrigin}, tusk on ${tuskOrigin}`)
  const endpoint = `${tusk}/files/`

  const { context, close } = await launch()
  try {
    const page = context.pages()[0] ?? (await context.newPage())
    // The 413 and 401 below are logged by Chromium as failed loads; anything
    // else (a CORS block above all) fails the test.
    const problems = watchPage(page, 'page', /Failed to load resource: the server responded with a status of (401|413)/)
    await page.goto(`${pageOrigin}/`)
    assert(await page.evaluate(() => typeof tus?.Upload === 'function'), 'tus-js-client did not load')
    assert(await page.evaluate(() => tus.isSupported), 'tus-js-client says this browser is unsupported')

    // 1. A real upload in three PATCHes, verified through the asset API and its download.
    const ok = await page.evaluate((a) => tryUpload(a), {
      endpoint,
      size: 900,
      seed: 7,
      key,
      chunkSize: 300,
      name: 'cors.bin',
    })
    assert(ok.ok, `the cross-origin upload failed: ${JSON.stringify(ok)}`)
    assert(
      JSON.stringify(ok.requests) === JSON.stringify(['POST', 'PATCH', 'PATCH', 'PATCH']),
      `expected POST and three PATCHes, got ${ok.requests.join(' ')}`,
    )
    const id = new URL(ok.url).pathname.split('/').filter(Boolean).pop()
    const { asset, downloaded } = await page.evaluate((a) => fetchAsset(a), { api: tusk, id, key })
    assert(asset.state === 'ready', `asset state ${asset.state}: ${asset.error_message}`)
    assert(asset.size_bytes === 900 && asset.name === 'cors.bin', `asset: ${JSON.stringify(asset)}`)
    assert(asset.sha256 === ok.sha256, `server sha256 ${asset.sha256} != uploaded ${ok.sha256}`)
    assert(downloaded === ok.sha256, `downloaded sha256 ${downloaded} != uploaded ${ok.sha256}`)
    log(`uploaded 900 bytes cross-origin (${ok.requests.join(' ')}), downloaded them back, sha256 matches`)

    // 2. Over --max-size: 413 on the page, after exactly one POST.
    const big = await page.evaluate((a) => tryUpload(a), { endpoint, size: 5000, seed: 8, key, name: 'big.bin' })
    log('over max size:', JSON.stringify(big))
    assert(!big.ok, 'an upload over --max-size must fail')
    assert(big.status === 413, `expected HTTP 413 on the page, got ${big.status} (${big.message})`)
    assert(big.requests.length === 1, `a 413 must not be retried, saw ${big.requests.join(' ')}`)

    // 3. No key: 401 on the page, not a CORS failure.
    const anon = await page.evaluate((a) => tryUpload(a), { endpoint, size: 100, seed: 9, key: '', name: 'anon.bin' })
    log('without key:', JSON.stringify(anon))
    assert(anon.status === 401, `expected HTTP 401 on the page, got ${anon.status} (${anon.message})`)
    assert(anon.requests.length === 1, `a 401 must not be retried, saw ${anon.requests.join(' ')}`)

    const shot = join(out, 'cross-origin.png')
    await page.screenshot({ path: shot, fullPage: true })
    log(`screenshot: ${shot}`)
    assert(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)
  } finally {
    await close()
    server.close()
  }
})
