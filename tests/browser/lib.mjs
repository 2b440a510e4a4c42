// Shared helpers for the browser tests: launching Debian's Chromium through
// playwright-core, small real media files, and assertions.
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import { chromium } from 'playwright-core'

export class Failure extends Error {}

export function assert(cond, msg) {
  if (!cond) throw new Failure(msg)
}

export function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex')
}

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args)
}

/** Reads the test's settings from the environment tests/browser.rs sets. */
export function settings() {
  const need = (k) => {
    const v = process.env[k]
    if (!v) throw new Failure(`${k} is not set (run through cargo test --test browser)`)
    return v
  }
  return { tusk: need('TUSK_URL').replace(/\/$/, ''), out: need('OUT_DIR'), key: process.env.TUSK_KEY || '' }
}

/** Headless Debian Chromium with a fresh profile; never a downloaded browser. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'tusk-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1100, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  const close = async () => {
    await context.close().catch(() => {})
    rmSync(profile, { recursive: true, force: true })
  }
  return { context, close }
}

/** Collects page errors and failed console messages so a test can fail on them. */
export function watchPage(page, name, expected = null) {
  const problems = []
  page.on('pageerror', (e) => problems.push(`${name}: uncaught ${e.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error' && !expected?.test(m.text())) problems.push(`${name}: console.error ${m.text()}`)
    if (process.env.BROWSER_VERBOSE) log(`${name} console.${m.type()}:`, m.text())
  })
  return problems
}

// --- PNG: an RGB gradient with a white diagonal -------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32(buf) {
  let c = 0xffffffff
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk(type, data) {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(td))
  return Buffer.concat([len, td, crc])
}

export function png(width, height) {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: truecolour
  ihdr[10] = 0 // deflate
  ihdr[11] = 0 // adaptive filtering
  ihdr[12] = 0 // no interlace
  const raw = Buffer.alloc((width * 3 + 1) * height)
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1)
    raw[row] = 0 // filter: none
    for (let x = 0; x < width; x++) {
      const p = row + 1 + x * 3
      const diag = Math.abs(x * height - y * width) < width
      raw[p] = diag ? 255 : Math.round((x / (width - 1)) * 255)
      raw[p + 1] = diag ? 255 : Math.round((y / (height - 1)) * 255)
      raw[p + 2] = diag ? 255 : 160
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

// --- WAV: 16-bit PCM mono sine ---------------------------------------------------

export function wav(seconds, rate = 8000, freq = 440) {
  const samples = Math.round(seconds * rate)
  const data = Buffer.alloc(samples * 2)
  for (let i = 0; i < samples; i++) {
    data.writeInt16LE(Math.round(Math.sin((2 * Math.PI * freq * i) / rate) * 12000), i * 2)
  }
  const h = Buffer.alloc(44)
  h.write('RIFF', 0, 'ascii')
  h.writeUInt32LE(36 + data.length, 4)
  h.write('WAVE', 8, 'ascii')
  h.write('fmt ', 12, 'ascii')
  h.writeUInt32LE(16, 16) // fmt chunk size
  h.writeUInt16LE(1, 20) // PCM
  h.writeUInt16LE(1, 22) // mono
  h.writeUInt32LE(rate, 24)
  h.writeUInt32LE(rate * 2, 28) // byte rate
  h.writeUInt16LE(2, 32) // block align
  h.writeUInt16LE(16, 34) // bits per sample
  h.write('data', 36, 'ascii')
  h.writeUInt32LE(data.length, 40)
  return Buffer.concat([h, data])
}

/** Runs `main`, printing PASS/FAIL; exits non-zero on failure. */
export async function run(name, main) {
  const started = Date.now()
  try {
    await main()
    log(`PASS ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } catch (e) {
    log(`FAIL ${name}: ${e instanceof Failure ? e.message : e.stack || e}`)
    process.exitCode = 1
  }
}
