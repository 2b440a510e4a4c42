// Test C: tusk's page opened from an upload link (`tusk upload-link`, i.e.
// `/?token=ut_…`). The page must work without a key: it never calls /v1 (an
// upload token cannot read it), sends the token on its tus requests, hides the
// key panel and the project's assets, and lists what this browser uploaded
// with the link. A PNG goes through the Dashboard; the key, from Node, then
// sees it become a ready asset of the project with the same bytes.
//
// Env: TUSK_URL, TUSK_KEY (to check from Node), OUT_DIR, LINK (the link the
// CLI printed), OTHER_ASSET_NAME (an asset of the same project uploaded with
// the key beforehand, which the page must never show).
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Failure, assert, launch, log, run, settings, sha256, watchPage } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const { tusk, out, key } = settings()
const need = (k) => {
  const v = process.env[k]
  if (!v) throw new Failure(`${k} is not set (run through cargo test --test browser)`)
  return v
}
const link = need('LINK')
const otherName = need('OTHER_ASSET_NAME')
const fixtures = process.env.TUSK_FIXTURES || join(here, '..', 'fixtures', 'media')
const NAME = 'pic.png'

/** GET a /v1 resource with the key, from Node (the page must not). */
async function api(path) {
  const res = await fetch(`${tusk}${path}`, { headers: { Authorization: `Bearer ${key}` } })
  const text = await res.text()
  if (res.status !== 200) throw new Failure(`GET ${path}: ${res.status} ${text}`)
  return JSON.parse(text)
}

await run('upload link page', async () => {
  assert(key, 'TUSK_KEY is not set: upload links need a server with keys')
  const token = new URL(link).searchParams.get('token') ?? ''
  assert(token.startsWith('ut_'), `LINK has no ut_ token: ${link}`)
  const file = join(fixtures, NAME)
  const bytes = readFileSync(file)

  // The other asset is really there, or "the page does not show it" proves nothing.
  const before = await api('/v1/assets?limit=100')
  assert(
    before.data.some((a) => a.name === otherName),
    `OTHER_ASSET_NAME ${otherName} is not in the project: ${before.data.map((a) => a.name).join(', ')}`,
  )

  const { context, close } = await launch()
  try {
    // Every request of the page (any origin), and what the tus ones carried.
    const requests = []
    context.on('request', (r) => {
      const u = new URL(r.url())
      requests.push({ method: r.method(), path: u.pathname, auth: r.headers().authorization ?? null })
    })
    // Whether the other asset's name ever reaches the DOM, even for a moment.
    await context.addInitScript((name) => {
      window.sawOtherAsset = []
      const check = (where, text) => {
        if (text && text.includes(name)) window.sawOtherAsset.push(where)
      }
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === 'childList') {
            for (const n of r.addedNodes) check('node', n.nodeType === 1 ? n.outerHTML : n.textContent)
          } else if (r.type === 'characterData') {
            check('text', r.target.data)
          } else {
            check(`@${r.attributeName}`, r.target.getAttribute(r.attributeName))
          }
        }
      }).observe(document, { childList: true, subtree: true, characterData: true, attributes: true })
    }, otherName)

    const page = context.pages()[0] ?? (await context.newPage())
    const problems = watchPage(page, 'page')
    page.setDefaultTimeout(20000)
    await page.goto(link)
    await page.locator('.uppy-Dashboard').waitFor()
    await page.locator('#link-panel').waitFor()

    assert(await page.evaluate(() => window.tusk?.linkMode === true), 'window.tusk.linkMode should be true')
    assert(!(await page.locator('#key-panel').isVisible()), 'the key panel should be hidden in link mode')
    assert(!(await page.locator('#assets-panel').isVisible()), 'the asset list should be hidden in link mode')
    assert(!(await page.locator('#live').isVisible()), 'the live stream status should be hidden in link mode')
    log('page opened from the link: link mode, no key panel, no asset list')

    await page.locator('input.uppy-Dashboard-input[type="file"]').first().setInputFiles(file)
    await page.locator('.uppy-Dashboard-Item').first().waitFor()
    await page.locator('.uppy-StatusBar-actionBtn--upload').click()
    log('upload started')

    const item = page.locator(`.link-upload[data-name="${NAME}"]`)
    await page.locator(`.link-upload[data-name="${NAME}"][data-state="done"]`).waitFor({ timeout: 30000 })
    await page.locator('.uppy-StatusBar.is-complete').waitFor()
    const status = (await item.locator('.link-status').textContent()).trim()
    assert(status === 'uploaded', `${NAME} status on the page: ${status}`)
    assert((await item.count()) === 1, `${NAME} is listed ${await item.count()} times`)
    log(`${NAME} is uploaded on the page`)

    // The tus requests carried the link's token; nothing went to /v1.
    const tusRequests = requests.filter((r) => r.path.startsWith('/files/') && r.method !== 'OPTIONS')
    assert(tusRequests.some((r) => r.method === 'POST'), `no tus POST seen: ${JSON.stringify(requests)}`)
    assert(tusRequests.some((r) => r.method === 'PATCH'), `no tus PATCH seen: ${JSON.stringify(requests)}`)
    for (const r of tusRequests) {
      assert(r.auth === `Bearer ${token}`, `${r.method} ${r.path} sent Authorization ${r.auth}, want the link's token`)
    }

    // The key sees the upload as a ready asset of the project, with the same bytes.
    const want = sha256(bytes)
    const deadline = Date.now() + 30000
    let asset
    for (;;) {
      const list = await api('/v1/assets?limit=100')
      asset = list.data.find((a) => a.name === NAME)
      if (asset?.state === 'ready') break
      assert(asset?.state !== 'failed', `${NAME} failed on the server: ${JSON.stringify(asset)}`)
      assert(Date.now() < deadline, `${NAME} not ready after 30 s: ${JSON.stringify(asset ?? list.data.map((a) => a.name))}`)
      await new Promise((r) => setTimeout(r, 200))
    }
    assert(asset.type === 'image', `${NAME}: type ${asset.type}`)
    assert(asset.size_bytes === bytes.length, `${NAME}: size_bytes ${asset.size_bytes}, want ${bytes.length}`)
    assert(asset.sha256 === want, `${NAME}: sha256 ${asset.sha256}, want ${want}`)
    const uploadUrl = await page.evaluate((n) => window.tusk.uploads.entries.find((e) => e.name === n)?.url, NAME)
    assert(uploadUrl && uploadUrl.endsWith(`/${asset.id}`), `the page uploaded to ${uploadUrl}, not asset ${asset.id}`)
    log(`the key sees ${NAME} as asset ${asset.id}: ready, ${asset.size_bytes} bytes, sha256 matches`)

    // (the observer starts over on reload: read it now, and again at the end)
    const sawBefore = await page.evaluate(() => window.sawOtherAsset)
    assert(sawBefore.length === 0, `the page showed ${otherName} (${sawBefore.join(', ')})`)

    // The list is this browser's: kept in localStorage under a hash of the
    // token (never the token itself), so it is still there after a reload.
    const stored = await page.evaluate(() => Object.keys(localStorage))
    const linkKeys = stored.filter((k) => k.startsWith('tusk.link.'))
    assert(linkKeys.length === 1, `expected one tusk.link.* entry in localStorage, got ${JSON.stringify(stored)}`)
    assert(!stored.some((k) => k.includes(token)), 'the token should not be a localStorage key')
    await page.reload()
    await page.locator(`.link-upload[data-name="${NAME}"][data-state="done"]`).waitFor()
    log('after a reload the page still lists the upload')

    const shot = join(out, 'upload-link.png')
    await page.screenshot({ path: shot, fullPage: true })
    log(`screenshot: ${shot}`)

    const v1 = requests.filter((r) => r.path.startsWith('/v1'))
    assert(v1.length === 0, `the page called /v1: ${v1.map((r) => `${r.method} ${r.path}`).join(', ')}`)
    const saw = await page.evaluate(() => window.sawOtherAsset)
    assert(saw.length === 0, `the page showed ${otherName} (${saw.join(', ')})`)
    assert(!(await page.content()).includes(otherName), `the page contains ${otherName}`)
    log(`${requests.length} requests, none to /v1; ${otherName} never appeared`)
    assert(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)
  } finally {
    await close()
  }
})
