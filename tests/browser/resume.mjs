// Test A2: an upload through the page resumes after a reload. The upload is
// slowed down (Chromium's network throttling) so the page can be reloaded in
// the middle; the live list shows the partial asset; the same file added
// again continues from the server's offset (HEAD, then PATCH from there) and
// ends as the same asset, ready, with the right sha256.
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { assert, launch, log, run, settings, sha256, watchPage } from './lib.mjs'

const { tusk, out } = settings()
const SIZE = 3 * 1024 * 1024

await run('upload page resume', async () => {
  const bytes = randomBytes(SIZE)
  const path = join(out, 'big.bin')
  writeFileSync(path, bytes)

  const { context, close } = await launch()
  try {
    const page = context.pages()[0] ?? (await context.newPage())
    const problems = watchPage(page, 'page', /net::ERR_ABORTED|ERR_NETWORK_CHANGED/)
    page.setDefaultTimeout(20000)
    const cdp = await context.newCDPSession(page)
    await cdp.send('Network.enable')
    const throttle = (bytesPerSecond) =>
      cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: bytesPerSecond,
      })

    const tusRequests = []
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/files/')) {
        tusRequests.push({ method: r.method(), offset: r.headers()['upload-offset'] })
      }
    })

    const addAndStart = async () => {
      await page.locator('#live[data-state="on"]').waitFor({ state: 'attached' })
      await page.locator('input.uppy-Dashboard-input[type="file"]').first().setInputFiles(path)
      await page.locator('.uppy-StatusBar-actionBtn--upload').click()
    }
    const card = page.locator('.asset[data-name="big.bin"]')
    const shownProgress = () => card.locator('progress').evaluate((p) => p.value)

    await page.goto(`${tusk}/`)
    await throttle(256 * 1024)
    await addAndStart()
    // Wait until a good part has gone out (Uppy's own progress), then reload.
    await page.waitForFunction(
      () => {
        const f = window.tusk.uppy.getFiles()[0]
        const pct = f?.progress?.percentage ?? 0
        return pct >= 20 && pct < 70
      },
      null,
      { timeout: 30000 },
    )
    const sent = await page.evaluate(() => window.tusk.uppy.getFiles()[0].progress.percentage)
    const id = await card.getAttribute('data-id')
    log(`big.bin ${sent} % sent; reloading in the middle of the upload`)

    await page.reload()
    const stored = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tus::')))
    assert(stored.length === 1, `tus-js-client should have kept the upload URL (${JSON.stringify(stored)})`)
    await card.waitFor()
    assert((await card.getAttribute('data-state')) === 'pending_upload', 'the partial asset should be listed')
    assert((await card.getAttribute('data-id')) === id, 'the list shows another asset')
    // The bytes that arrived before the reload are kept and shown.
    await page.waitForFunction(() => document.querySelector('.asset[data-name="big.bin"] progress')?.value > 0)
    log(`after the reload the list shows big.bin at ${await shownProgress()} %`)

    await throttle(-1)
    tusRequests.length = 0
    await addAndStart()
    await page.locator('.asset[data-name="big.bin"][data-state="ready"]').waitFor({ timeout: 30000 })
    log('resumed requests:', JSON.stringify(tusRequests))
    assert(tusRequests[0]?.method === 'HEAD', `the resume should start with HEAD, saw ${JSON.stringify(tusRequests)}`)
    assert(!tusRequests.some((r) => r.method === 'POST'), 'the resume created a new upload')
    const patch = tusRequests.find((r) => r.method === 'PATCH')
    assert(patch && Number(patch.offset) > 0, `the resume should PATCH from the stored offset, saw ${JSON.stringify(patch)}`)
    assert((await page.locator('.asset[data-name="big.bin"]').count()) === 1, 'one asset, not two')
    assert((await card.getAttribute('data-id')) === id, 'the resumed upload ended as another asset')
    const hash = await card.locator('[data-sha256]').getAttribute('data-sha256')
    assert(hash === sha256(bytes), `sha256 on the page ${hash} != ${sha256(bytes)}`)
    log(`resumed from byte ${patch.offset} of ${SIZE}; ready with the right sha256`)

    await page.screenshot({ path: join(out, 'resume.png'), fullPage: true })
    assert(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)
  } finally {
    await close()
  }
})
