// tusk's upload page: Uppy's Dashboard uploading over tus to /files/, an API
// key field, and the project's assets kept live from GET /v1/events. Opened
// from an upload link (`/?token=ut_…`) it runs in link mode instead: no key,
// no /v1 (a token cannot read it), and a list of what this browser uploaded
// with the link (link.js).

import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

import { authHeaders, getJson, getKey, setKey } from './api.js'
import { AssetList } from './assets.js'
import { openStream } from './events.js'
import { describeError, LinkUploads, linkToken } from './link.js'

// The server fills in its --base-path when it serves the page.
const BASE_PATH = document.querySelector('meta[name="tusk-base-path"]')?.content || '/files/'
const TUS_ENDPOINT = new URL(BASE_PATH, location.href).href
const LINK_TOKEN = linkToken(location.search)

const $ = (id) => document.getElementById(id)

// --- Uploads ---------------------------------------------------------------

const uppy = new Uppy({ autoProceed: false, debug: false })
  .use(Dashboard, {
    inline: true,
    target: '#dashboard',
    width: '100%',
    height: 340,
    proudlyDisplayPoweredByUppy: false,
    showRemoveButtonAfterComplete: true,
    note: 'Uploads resume where they stopped, even after a reload.',
  })
  .use(Tus, {
    endpoint: TUS_ENDPOINT,
    // Read at upload time, so a key saved after adding files still counts.
    headers: () => (LINK_TOKEN ? { Authorization: `Bearer ${LINK_TOKEN}` } : authHeaders()),
    removeFingerprintOnSuccess: true,
    // tusk stores (and reports as received_bytes / asset.progress) what a
    // PATCH carried when the PATCH ends, so chunks keep the list's progress moving.
    chunkSize: 5 * 1024 * 1024,
    allowedMetaFields: ['name', 'type'],
    limit: 4,
  })

// Tell the Dashboard the server's size limit, so too-large files are refused
// before they are sent.
fetch(TUS_ENDPOINT, { method: 'OPTIONS' })
  .then((r) => {
    const max = Number(r.headers.get('Tus-Max-Size'))
    if (max > 0) uppy.setOptions({ restrictions: { ...uppy.opts.restrictions, maxFileSize: max } })
  })
  .catch(() => {})

if (LINK_TOKEN) startLinkMode()
else startKeyMode()

// --- Link mode -------------------------------------------------------------

function startLinkMode() {
  document.title = 'tusk · upload files'
  $('key-panel').hidden = true
  $('assets-panel').hidden = true
  $('link-intro').hidden = false
  $('link-panel').hidden = false
  document.querySelector('.tagline').textContent = 'Resumable uploads: drop files below to send them.'
  const problem = $('link-problem')

  const uploads = new LinkUploads(LINK_TOKEN, $('link-uploads'), $('link-empty'))
  uppy.on('upload-start', (files) => {
    for (const f of files) uploads.started(f)
  })
  uppy.on('upload-progress', (file, progress) => {
    if (file) uploads.progress(file, progress)
  })
  uppy.on('upload-success', (file, response) => {
    if (file) uploads.succeeded(file, response?.uploadURL)
  })
  uppy.on('upload-error', (file, err) => {
    if (file) uploads.failed(file, err)
    // The link itself no longer works (unknown, expired, revoked, used up):
    // say so once, above the Dashboard, rather than only on each file.
    const { status, message } = describeError(err)
    if (status === 401 || (status === 403 && /all of them have been made/.test(message))) {
      problem.textContent = `This link cannot take more uploads: ${message}`
      problem.hidden = false
    }
  })
  uppy.on('file-removed', (file) => uploads.removed(file))

  // For tests and the curious.
  window.tusk = { uppy, linkMode: true, uploads }
}

// --- Key mode: the API key and the live asset list -------------------------

function startKeyMode() {
  const list = new AssetList($('assets'), $('assets-empty'))
  const live = $('live')

  function setLive(state, text) {
    live.dataset.state = state
    live.textContent = text
  }

  // --- API key -------------------------------------------------------------

  const keyDetails = $('key-details')
  const keyStatus = $('key-status')
  const keyInput = $('key-input')
  keyInput.value = getKey()

  function showKeyState(state, message) {
    keyStatus.textContent = message
    keyStatus.dataset.state = state
    // Open the panel only when the server wants a key it does not have.
    if (state === 'needed') keyDetails.open = true
  }

  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault()
    setKey(keyInput.value.trim())
    refresh()
  })
  $('key-clear').addEventListener('click', () => {
    keyInput.value = ''
    setKey('')
    refresh()
  })

  uppy.on('upload-error', (file, err) => {
    const status = err?.originalResponse?.getStatus?.()
    if (status === 401 || status === 403) showKeyState('needed', 'a valid key is needed to upload')
  })

  // --- The live asset list -------------------------------------------------

  let stream = null

  /** (Re)loads the list, then follows the event stream from where the list left off. */
  async function loadList() {
    try {
      list.beginSnapshot()
      const page = await getJson('/v1/assets?limit=100')
      list.reset(page.data)
      scheduleLinkRefresh()
      showKeyState('ok', getKey() ? 'key saved in this browser' : 'not needed: this server runs open')
      return true
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        showKeyState('needed', err.message)
        setLive('off', 'key needed')
      } else {
        setLive('off', `list failed: ${err.message}`)
      }
      return false
    }
  }

  // Download URLs are signed for a while (--download-ttl); reload the list
  // shortly before the first one expires so links and previews keep working.
  let linkTimer = null
  function scheduleLinkRefresh() {
    clearTimeout(linkTimer)
    let earliest = Infinity
    for (const a of list.assets.values()) {
      if (a.download_expires_at) earliest = Math.min(earliest, Date.parse(a.download_expires_at))
    }
    if (earliest === Infinity) return
    const left = earliest - Date.now()
    linkTimer = setTimeout(loadList, Math.max(Math.min(left - 60000, left / 2), 5000))
  }

  function follow() {
    stream?.stop()
    stream = openStream('/v1/events', {
      onOpen({ resumed }) {
        setLive('on', 'live')
        // A fresh stream starts from now: (re)load the list so nothing that
        // happened before it is missed. A resumed one replays what was missed.
        if (!resumed) loadList()
      },
      onEvent(ev) {
        let body
        try {
          body = JSON.parse(ev.data)
        } catch {
          return
        }
        if (ev.type === 'stream.gap') {
          // Too much happened while away to replay: start over from a fresh list.
          stream.forget()
          loadList()
          return
        }
        if (!body.asset) return
        if (ev.type === 'asset.deleted') list.remove(body.asset.id)
        else list.upsert(body.asset)
        if (ev.type === 'asset.ready') scheduleLinkRefresh()
      },
      onError(err, { fatal }) {
        if (fatal) {
          showKeyState('needed', err.message)
          setLive('off', 'key needed')
        } else {
          setLive('connecting', 'reconnecting…')
        }
      },
    })
  }

  /** Starts over, e.g. with a new key: the stream opens first, then the list loads. */
  function refresh() {
    setLive('connecting', 'connecting…')
    follow()
  }

  refresh()

  // For tests and the curious.
  window.tusk = { uppy, linkMode: false, list, dropStream: () => stream?.drop() }
}
