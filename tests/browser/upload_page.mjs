// Test A: tusk's own page at / in headless Chromium. Two real files (a PNG
// and a WAV made here) go through Uppy's Dashboard; both must reach `ready` in
// the page's live list with the right facts; one is downloaded through its
// link and compared byte for byte; a screenshot is saved.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { assert, launch, log, png, run, settings, sha256, wav, watchPage } from './lib.mjs'

const { tusk, out, key } = settings()

await run('upload page', async () => {
  const files = {
    'gradient.png': png(64, 48),
    'tone.wav': wav(1.5),
  }
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(out, name), bytes)

  const { context, close } = await launch()
  try {
    const page = context.pages()[0] ?? (await context.newPage())
    const problems = watchPage(page, 'page')
    page.setDefaultTimeout(20000)
    await page.goto(`${tusk}/`)
    await page.locator('.uppy-Dashboard').waitFor()

    if (key) {
      // Keys are in use: the page must ask for one, then work with it.
      await page.locator('#key-status[data-state="needed"]').waitFor()
      assert(await page.locator('#key-details').evaluate((d) => d.open), 'the key panel should open by itself')
      await page.fill('#key-input', key)
      await page.click('#key-form button[type="submit"]')
      await page.locator('#key-status[data-state="ok"]').waitFor({ state: 'attached' })
      assert(
        (await page.evaluate(() => localStorage.getItem('tusk.apiKey'))) === key,
        'the key should be kept in localStorage',
      )
      // Chromium logs the 401s that made the page ask; nothing else may fail.
      const before = problems.splice(0)
      const unexpected = before.filter((p) => !/status of 401/.test(p))
      assert(unexpected.length === 0, `the page reported errors:\n${unexpected.join('\n')}`)
    } else {
      // Open mode: the key is optional, its panel stays folded.
      await page.locator('#key-status[data-state="ok"]').waitFor({ state: 'attached' })
      assert(!(await page.locator('#key-details').evaluate((d) => d.open)), 'the key panel should stay folded')
      const status = await page.locator('#key-status').textContent()
      assert(/not needed/.test(status), `key status in open mode: ${status}`)
    }
    await page.locator('#live[data-state="on"]').waitFor()
    log('page loaded, event stream open')

    // Every state each card shows, to prove the list follows the stream
    // (the page fetched the list once, before any upload existed).
    await page.evaluate(() => {
      window.seenStates = {}
      new MutationObserver((records) => {
        // Several changes can land before this runs: replay them from the
        // old values, then the current one.
        const touched = new Set()
        const push = (li, state) => {
          const seen = (window.seenStates[li.dataset.name] ??= [])
          if (seen[seen.length - 1] !== state) seen.push(state)
        }
        for (const r of records) {
          if (r.type === 'childList') {
            for (const n of r.addedNodes) if (n.classList?.contains('asset')) touched.add(n)
          } else if (r.target.classList.contains('asset') && r.oldValue) {
            push(r.target, r.oldValue)
            touched.add(r.target)
          }
        }
        for (const li of touched) push(li, li.dataset.state)
      }).observe(document.getElementById('assets'), {
        childList: true,
        subtree: true,
        attributes: true,
        attributeOldValue: true,
        attributeFilter: ['data-state'],
      })
    })

    // Uppy's hidden file input (the first one; the second picks folders).
    await page.locator('input.uppy-Dashboard-input[type="file"]').first().setInputFiles(
      Object.keys(files).map((n) => join(out, n)),
    )
    await page.locator('.uppy-Dashboard-Item').nth(1).waitFor()
    await page.locator('.uppy-StatusBar-actionBtn--upload').click()
    log('upload started')

    for (const name of Object.keys(files)) {
      await page.locator(`.asset[data-name="${name}"][data-state="ready"]`).waitFor({ timeout: 30000 })
      log(`${name} is ready on the page`)
    }
    await page.locator('.uppy-StatusBar.is-complete').waitFor()
    const seen = await page.evaluate(() => window.seenStates)
    log('states seen on the page:', JSON.stringify(seen))
    for (const name of Object.keys(files)) {
      const states = seen[name] ?? []
      assert(
        states[0] === 'pending_upload' && states[states.length - 1] === 'ready',
        `${name} should appear as pending_upload and end ready, saw ${states.join(' → ')}`,
      )
    }

    // What the list shows for each asset.
    const card = (name) => page.locator(`.asset[data-name="${name}"]`)
    const facts = async (name) =>
      card(name).evaluate((li) => {
        const out = { type: li.dataset.type }
        const dts = li.querySelectorAll('dt')
        for (const dt of dts) out[dt.textContent] = dt.nextElementSibling.textContent
        out.sha256 = li.querySelector('[data-sha256]')?.dataset.sha256
        out.progress = li.querySelector('progress')?.value
        out.download = li.querySelector('a.download')?.href
        const img = li.querySelector('.preview img')
        out.img = img && { w: img.naturalWidth, h: img.naturalHeight, complete: img.complete }
        return out
      })

    const image = await facts('gradient.png')
    log('gradient.png:', JSON.stringify(image))
    assert(image.type === 'image', `gradient.png should be sniffed as image, got ${image.type}`)
    assert(image.Dimensions === '64 × 48', `gradient.png dimensions: ${image.Dimensions}`)
    assert(image.sha256 === sha256(files['gradient.png']), 'gradient.png sha256 on the page differs')
    assert(image.progress === 100, `gradient.png progress: ${image.progress}`)
    assert(image.Size?.includes('B'), `gradient.png size: ${image.Size}`)
    await page.waitForFunction(
      () => document.querySelector('.asset[data-name="gradient.png"] .preview img')?.naturalWidth === 64,
    )

    const audio = await facts('tone.wav')
    log('tone.wav:', JSON.stringify(audio))
    assert(audio.type === 'audio', `tone.wav should be sniffed as audio, got ${audio.type}`)
    assert(audio.sha256 === sha256(files['tone.wav']), 'tone.wav sha256 on the page differs')
    assert(audio.Duration === '1.50 s', `tone.wav duration: ${audio.Duration}`)
    assert(audio.download, 'tone.wav has no download link')
    assert(!audio.img, 'tone.wav should have no image preview')

    // Download through the link, as a person would, and compare bytes.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      card('tone.wav').locator('a.download').click(),
    ])
    const path = join(out, `downloaded-${download.suggestedFilename()}`)
    await download.saveAs(path)
    const got = readFileSync(path)
    assert(got.equals(files['tone.wav']), `downloaded tone.wav differs (sha256 ${sha256(got)})`)
    log(`downloaded ${download.suggestedFilename()} via its link: ${got.length} bytes, sha256 matches`)

    const shot = join(out, 'upload-page.png')
    await page.screenshot({ path: shot, fullPage: true })
    log(`screenshot: ${shot}`)

    assert(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)

    // A dropped stream resumes with Last-Event-ID: while the page is cut off,
    // the image is deleted through the API; on reconnect the replayed
    // asset.deleted removes its card, without refetching the list.
    const eventRequests = []
    let listRequests = 0
    page.on('request', (r) => {
      const path = new URL(r.url()).pathname
      if (path === '/v1/events') eventRequests.push(r.headers()['last-event-id'] ?? '')
      if (path === '/v1/assets') listRequests++
    })
    await page.route('**/v1/events', (route) => route.abort('connectionfailed'))
    await page.evaluate(() => window.tusk.dropStream())
    await page.locator('#live[data-state="connecting"]').waitFor({ state: 'attached' })
    const imageId = await card('gradient.png').getAttribute('data-id')
    const del = await fetch(`${tusk}/v1/assets/${imageId}`, {
      method: 'DELETE',
      headers: key ? { Authorization: `Bearer ${key}` } : {},
    })
    assert(del.status === 204, `DELETE /v1/assets/${imageId}: ${del.status}`)
    await page.unroute('**/v1/events')
    await page.locator('#live[data-state="on"]').waitFor({ state: 'attached' })
    await card('gradient.png').waitFor({ state: 'detached' })
    assert(await card('tone.wav').count() === 1, 'tone.wav should still be listed')
    const resumedWith = eventRequests[eventRequests.length - 1]
    assert(resumedWith, `the page reconnected without Last-Event-ID (${JSON.stringify(eventRequests)})`)
    assert(listRequests === 0, `a resumed stream should not refetch the list (${listRequests} list requests)`)
    log(`stream dropped and resumed with Last-Event-ID ${resumedWith}; the deleted image left the list`)
    const stray = problems.filter((p) => !/ERR_CONNECTION_FAILED|ERR_FAILED/.test(p))
    assert(stray.length === 0, `the page reported errors:\n${stray.join('\n')}`)
  } finally {
    await close()
  }
})
