// tus-js-client 4.3.1 (pinned in package-lock.json) against a running tusk.
//
//   node suite.mjs http://127.0.0.1:1080 [scenario ...]
//
// The server URL may also come from TUSK_URL, the media fixtures folder from
// TUSK_FIXTURES (default ../../fixtures/media). Every scenario verifies the
// stored bytes by sha256 through the asset's signed download_url. Exits
// non-zero with a message naming the failed scenario(s).
import { createReadStream, existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import * as tus from 'tus-js-client'
import { MiB, assert, bytes, fail, head, idOf, upload, verifyStored } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const server = (process.argv[2] || process.env.TUSK_URL || '').replace(/\/+$/, '')
if (!/^https?:\/\//.test(server)) {
  console.error('usage: node suite.mjs <server-url> [scenario ...]   (or set TUSK_URL)')
  process.exit(2)
}
const endpoint = `${server}/files/`
const fixtures = process.env.TUSK_FIXTURES || join(here, '..', '..', 'fixtures', 'media')

const patches = (log) => log.filter((r) => r.method === 'PATCH')

const scenarios = {
  // 24 MiB in 5 MiB chunks: five PATCHes, the last one short.
  async chunked() {
    const data = bytes(24 * MiB + 12345, 1)
    const { url, log } = await upload(endpoint, data, {
      chunkSize: 5 * MiB,
      metadata: { filename: 'chunked.bin', filetype: 'application/octet-stream' },
    })
    const p = patches(log)
    assert(p.length === 5, `expected 5 PATCHes of <= 5 MiB, got ${p.length}: ${JSON.stringify(log)}`)
    assert(p.every((r) => r.status === 204), `a PATCH did not answer 204: ${JSON.stringify(log)}`)
    const asset = await verifyStored(server, url, data)
    assert(asset.name === 'chunked.bin', `asset name ${asset.name}, want chunked.bin`)
  },

  // Default chunkSize (Infinity): the whole file in one PATCH.
  async oneRequest() {
    const data = bytes(9 * MiB + 7, 2)
    const { url, log } = await upload(endpoint, data, { metadata: { filename: 'one.bin' } })
    assert(patches(log).length === 1, `expected one PATCH, got ${JSON.stringify(log)}`)
    await verifyStored(server, url, data)
  },

  // Abort at ~30 %, then a NEW Upload resumes from the stored URL and sends
  // only what the server does not have yet.
  async abortResume() {
    const data = bytes(64 * MiB, 3)
    // one PATCH for the whole file: the abort cuts its body, and the server
    // must keep what arrived
    const firstUrl = await abortMidway(data, 0.3, { metadata: { filename: 'resumed.bin' } })
    assert(firstUrl, 'no upload URL after the first part')
    // No pause: the HEAD must account for whatever the aborted PATCH delivered
    // (it takes the upload's lock, which stops a PATCH still being read).
    const h = await head(firstUrl)
    const stored = Number(h.headers.get('upload-offset'))
    assert(h.status === 200 && stored > 0 && stored <= data.length,
      `HEAD after abort: status ${h.status}, Upload-Offset ${stored}`)

    const { url, log } = await upload(endpoint, data, { uploadUrl: firstUrl })
    assert(url === firstUrl, `the new Upload used ${url}, not the stored ${firstUrl}`)
    assert(!log.some((r) => r.method === 'POST'), `the resumed upload created a new one: ${JSON.stringify(log)}`)
    // (no PATCH at all if the aborted request had delivered everything)
    const firstPatch = patches(log)[0]
    const startOffset = firstPatch ? Number(firstPatch.offset) : data.length
    const sentAgain = data.length - startOffset
    console.log(`  abortResume: stored ${stored} of ${data.length} after abort; resumed at ${startOffset}, sent ${sentAgain} bytes the second time`)
    assert(startOffset === stored, `resumed at ${startOffset}, but HEAD said ${stored}`)
    assert(sentAgain < data.length, `the second Upload sent ${sentAgain} bytes, not fewer than the file's ${data.length}`)
    await verifyStored(server, url, data)

    // Resuming a finished upload: HEAD says offset == length, no PATCH, success.
    const again = await upload(endpoint, data, { uploadUrl: firstUrl })
    assert(again.log.length === 1 && again.log[0].method === 'HEAD',
      `resuming a finished upload sent ${JSON.stringify(again.log)}, want one HEAD`)
  },

  // The IETF draft through tus-js-client's `protocol` option: 64 MiB, aborted
  // mid-way, resumed by a new Upload from the stored URL, bytes verified.
  async ietfDraft03() {
    await ietfAbortResume('ietf-draft-03', 11)
  },
  async ietfDraft05() {
    await ietfAbortResume('ietf-draft-05', 12)
  },

  // A zero-byte file: the POST alone completes it.
  async emptyFile() {
    const data = Buffer.alloc(0)
    const { url, log } = await upload(endpoint, data, { metadata: { filename: 'empty.txt' } })
    assert(log.length === 1 && log[0].method === 'POST', `expected a lone POST, got ${JSON.stringify(log)}`)
    await verifyStored(server, url, data)
  },

  // creation-with-upload: the first chunk rides in the POST.
  async dataDuringCreation() {
    const data = bytes(10 * MiB + 3, 4)
    let postOffset = null
    const { url, log } = await upload(endpoint, data, {
      chunkSize: 4 * MiB,
      uploadDataDuringCreation: true,
      metadata: { filename: 'creation.bin' },
    }, {
      onAfterResponse(req, res) {
        if (req.getMethod() === 'POST') postOffset = res.getHeader('Upload-Offset')
      },
    })
    assert(Number(postOffset) === 4 * MiB, `POST answered Upload-Offset ${postOffset}, want ${4 * MiB}`)
    assert(patches(log).length === 2, `expected 2 PATCHes after the POST, got ${JSON.stringify(log)}`)
    await verifyStored(server, url, data)
  },

  // Four partial uploads and a final concatenation.
  async parallel() {
    const data = bytes(12 * MiB + 5, 5)
    const { url, log } = await upload(endpoint, data, {
      parallelUploads: 4,
      metadata: { filename: 'parallel.bin' },
    })
    const posts = log.filter((r) => r.method === 'POST')
    assert(posts.length === 5, `expected 4 partial POSTs and 1 final, got ${JSON.stringify(log)}`)
    const asset = await verifyStored(server, url, data)
    assert(asset.name === 'parallel.bin', `final asset name ${asset.name}, want parallel.bin`)
  },

  // 8 MiB chunks in four parallel parts: two PATCHes per part (8 MiB and
  // the rest), then the final concatenation.
  async parallelChunked() {
    const data = bytes(40 * MiB + 77, 9)
    const { url, log } = await upload(endpoint, data, {
      chunkSize: 8 * MiB,
      parallelUploads: 4,
      metadata: { filename: 'parallel-chunked.bin' },
    })
    const p = patches(log)
    assert(p.length === 8, `expected 8 PATCHes (2 per part), got ${JSON.stringify(log)}`)
    assert(p.every((r) => r.status === 204), `a PATCH did not answer 204: ${JSON.stringify(log)}`)
    await verifyStored(server, url, data)
  },

  // Upload-Defer-Length from a Node stream; the length rides on the last PATCH.
  async deferredStream() {
    // Not a multiple of chunkSize: the length rides on the short last chunk.
    // A multiple: tus-js-client ends with an empty PATCH declaring the length.
    for (const [size, seed] of [[6 * MiB + 4321, 6], [4 * MiB, 7]]) {
      const data = bytes(size, seed)
      const stream = Readable.from(
        (function* () {
          for (let i = 0; i < data.length; i += 300 * 1024) yield data.subarray(i, i + 300 * 1024)
        })(),
      )
      const sent = []
      const { url, log } = await upload(endpoint, stream, {
        chunkSize: 1 * MiB,
        uploadLengthDeferred: true,
        metadata: { filename: 'deferred.bin' },
      }, {
        onBeforeRequest(req) {
          sent.push([req.getMethod(), req.getHeader('Upload-Length'), req.getHeader('Upload-Defer-Length')])
        },
      })
      assert(sent[0][0] === 'POST' && sent[0][2] === '1', `POST did not defer the length: ${JSON.stringify(sent)}`)
      const declared = sent.filter((s) => s[1] != null)
      assert(declared.length >= 1 && Number(declared[declared.length - 1][1]) === size,
        `Upload-Length ${size} never declared: ${JSON.stringify(sent)}`)
      assert(patches(log).length >= Math.ceil(size / MiB), `too few PATCHes: ${JSON.stringify(log)}`)
      await verifyStored(server, url, data)
    }
  },

  // PATCH tunnelled through POST with X-HTTP-Method-Override.
  async overridePatch() {
    const data = bytes(5 * MiB + 99, 8)
    const methods = []
    const { url } = await upload(endpoint, data, {
      chunkSize: 2 * MiB,
      overridePatchMethod: true,
      metadata: { filename: 'override.bin' },
    }, {
      onBeforeRequest(req) {
        methods.push([req.getMethod(), req.getHeader('X-HTTP-Method-Override') ?? null])
      },
    })
    const tunnelled = methods.filter(([m, o]) => m === 'POST' && o === 'PATCH')
    assert(tunnelled.length === 3, `expected 3 POST+override PATCHes, got ${JSON.stringify(methods)}`)
    assert(!methods.some(([m]) => m === 'PATCH'), `a real PATCH was sent: ${JSON.stringify(methods)}`)
    await verifyStored(server, url, data)
  },

  // terminate(): abort(true) mid-upload and the static Upload.terminate.
  async terminate() {
    const data = bytes(8 * MiB, 9)
    // 1. abort(true) after the first chunk
    const url1 = await new Promise((resolve, reject) => {
      let done = false
      const up = new tus.Upload(data, {
        endpoint,
        retryDelays: null,
        chunkSize: 1 * MiB,
        onChunkComplete() {
          if (done) return
          done = true
          const u = up.url
          up.abort(true).then(() => resolve(u), (e) => reject(new Error(`abort(true) failed: ${e.message}`)))
        },
        onSuccess: () => reject(new Error('the upload finished before it could be terminated')),
        onError: (e) => reject(new Error(`upload before terminate failed: ${e.message}`)),
      })
      up.start()
    })
    // 2. a finished upload, terminated with the static helper
    const small = bytes(64 * 1024, 10)
    const { url: url2 } = await upload(endpoint, small, { metadata: { filename: 'gone.bin' } })
    await tus.Upload.terminate(url2, { retryDelays: null })
    for (const u of [url1, url2]) {
      const h = await head(u)
      assert(h.status === 404 || h.status === 410, `HEAD ${u} after terminate: ${h.status}, want 404 or 410`)
      const a = await fetch(`${server}/v1/assets/${idOf(u)}`)
      assert(a.status === 404, `GET /v1/assets/${idOf(u)} after terminate: ${a.status}, want 404`)
    }
  },

  // A real media file, read from disk as an fs.ReadStream: the asset reports
  // the sniffed type.
  async media() {
    const cases = []
    const manifestPath = join(fixtures, 'MANIFEST.json')
    if (existsSync(manifestPath)) {
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
      for (const name of ['tone.mp3', 'pic.png']) {
        const m = manifest.find((e) => e.file === name)
        if (m && existsSync(join(fixtures, name))) {
          cases.push({ name, path: join(fixtures, name), type: m.type, contentType: m.content_type })
        }
      }
    }
    if (cases.length === 0) {
      // No fixtures: a WAV made here (RIFF/WAVE, 16-bit mono, a 440 Hz tone).
      cases.push({ name: 'tone.wav', data: wav(0.5), type: 'audio', contentType: /^audio\/(x-)?wav$/ })
    }
    for (const c of cases) {
      const data = c.data ?? readFileSync(c.path)
      const input = c.path ? createReadStream(c.path) : data
      const { url } = await upload(endpoint, input, {
        chunkSize: 8 * 1024, // several chunks even for small files
        metadata: { filename: c.name },
      })
      const asset = await verifyStored(server, url, data)
      assert(asset.type === c.type, `${c.name}: asset type ${asset.type}, want ${c.type}: ${JSON.stringify(asset)}`)
      const ok = c.contentType instanceof RegExp ? c.contentType.test(asset.content_type) : asset.content_type === c.contentType
      assert(ok, `${c.name}: content_type ${asset.content_type}, want ${c.contentType}`)
      console.log(`  media: ${c.name} -> type ${asset.type}, content_type ${asset.content_type}`)
    }
  },
}

// Starts uploading `data` in one request and aborts it once `share` of it
// was sent; returns the upload's URL. A server that takes the whole body
// before the client reports that much progress (it happens on a fast
// machine) is no failure: the scenario starts again with a new upload.
async function abortMidway(data, share, options) {
  for (let attempt = 1; ; attempt++) {
    const outcome = await new Promise((resolve, reject) => {
      let aborted = false
      const up = new tus.Upload(data, {
        endpoint,
        retryDelays: null,
        ...options,
        onProgress(sent) {
          if (!aborted && sent >= share * data.length) {
            aborted = true
            const url = up.url
            up.abort(false).then(() => resolve({ url }), reject)
          }
        },
        onSuccess: () => resolve({ finished: true }),
        onError: (e) => reject(new Error(`upload before the abort failed: ${e.message}`)),
      })
      up.start()
    })
    if (outcome.url) return outcome.url
    if (attempt === 5) throw new Error('five uploads finished before they could be aborted')
    console.log(`  the upload finished before the abort (attempt ${attempt}); again`)
  }
}

async function ietfAbortResume(protocol, seed) {
  const data = bytes(64 * MiB, seed)
  const interop = protocol === 'ietf-draft-03' ? '5' : '6'
  // one request for the whole file, so the abort cuts a body mid-way
  const firstUrl = await abortMidway(data, 0.5, { protocol, metadata: { filename: `${protocol}.bin` } })
  assert(firstUrl, `${protocol}: no upload URL before the abort`)
  const h = await fetch(firstUrl, { method: 'HEAD', headers: { 'Upload-Draft-Interop-Version': interop } })
  const stored = Number(h.headers.get('upload-offset'))
  assert((h.status === 204 || h.status === 200) && stored > 0 && stored < data.length,
    `${protocol}: HEAD after abort: status ${h.status}, Upload-Offset ${stored}`)
  assert(h.headers.get('upload-complete') === '?0', `${protocol}: an aborted upload must not be complete`)

  const { url, log } = await upload(endpoint, data, { protocol, uploadUrl: firstUrl, chunkSize: 16 * MiB })
  assert(url === firstUrl, `${protocol}: resumed at ${url}, not ${firstUrl}`)
  assert(!log.some((r) => r.method === 'POST'), `${protocol}: the resume created a new upload: ${JSON.stringify(log)}`)
  const first = patches(log)[0]
  assert(first && Number(first.offset) === stored, `${protocol}: resumed at ${first && first.offset}, HEAD said ${stored}`)
  console.log(`  ${protocol}: ${stored} of ${data.length} stored at the abort; resumed there`)
  await verifyStored(server, url, data)
}

function wav(seconds) {
  const rate = 8000
  const n = Math.round(rate * seconds)
  const b = Buffer.alloc(44 + n * 2)
  b.write('RIFF', 0)
  b.writeUInt32LE(36 + n * 2, 4)
  b.write('WAVEfmt ', 8)
  b.writeUInt32LE(16, 16)
  b.writeUInt16LE(1, 20)
  b.writeUInt16LE(1, 22)
  b.writeUInt32LE(rate, 24)
  b.writeUInt32LE(rate * 2, 28)
  b.writeUInt16LE(2, 32)
  b.writeUInt16LE(16, 34)
  b.write('data', 36)
  b.writeUInt32LE(n * 2, 40)
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2)
  return b
}

const wanted = process.argv.slice(3)
for (const w of wanted) if (!scenarios[w]) fail(`unknown scenario ${w}; known: ${Object.keys(scenarios).join(', ')}`)
const failed = []
for (const [name, run] of Object.entries(scenarios)) {
  if (wanted.length && !wanted.includes(name)) continue
  const t0 = Date.now()
  try {
    await run()
    console.log(`ok   ${name} (${Date.now() - t0} ms)`)
  } catch (e) {
    failed.push(name)
    console.log(`FAIL ${name} (${Date.now() - t0} ms): ${e.stack || e}`)
  }
}
if (failed.length) {
  console.error(`tus-js-client suite: ${failed.length} scenario(s) failed: ${failed.join(', ')}`)
  process.exit(1)
}
console.log('tus-js-client suite: all scenarios passed')
