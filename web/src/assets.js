// The live list of the project's assets: a map by id, rendered as cards.

const STATE_LABELS = {
  pending_upload: 'uploading',
  processing: 'processing',
  ready: 'ready',
  failed: 'failed',
}

export class AssetList {
  constructor(listEl, emptyEl) {
    this.listEl = listEl
    this.emptyEl = emptyEl
    this.assets = new Map() // id -> asset JSON
    this.cards = new Map() // id -> <li>
    this.deleted = new Set() // ids deleted while a list fetch may still return them
    this.touched = null // ids events changed since the list request went out
  }

  /** Call before requesting GET /v1/assets; then `reset` with its answer. */
  beginSnapshot() {
    this.touched = new Set()
  }

  /**
   * Replaces everything with a fresh GET /v1/assets page. Event data newer
   * than the page wins, and assets events brought in after the request went
   * out stay even though the page does not have them.
   */
  reset(assets) {
    const fresh = new Map()
    for (const a of assets) {
      if (this.deleted.has(a.id)) continue
      const known = this.assets.get(a.id)
      fresh.set(a.id, known && newer(known, a) ? known : a)
    }
    for (const [id, a] of this.assets) {
      if (fresh.has(id)) continue
      if (this.touched?.has(id)) fresh.set(id, a)
      else this.removeCard(id)
    }
    this.touched = null
    this.assets = fresh
    for (const a of fresh.values()) this.render(a)
    this.order()
  }

  /** Applies one event's asset. */
  upsert(asset) {
    this.touched?.add(asset.id)
    const known = this.assets.get(asset.id)
    if (known && newer(known, asset)) return
    const isNew = !known
    this.assets.set(asset.id, asset)
    this.render(asset)
    if (isNew) this.order()
  }

  remove(id) {
    this.deleted.add(id)
    this.assets.delete(id)
    this.removeCard(id)
    this.updateEmpty()
  }

  removeCard(id) {
    this.cards.get(id)?.remove()
    this.cards.delete(id)
  }

  /** Newest first. */
  order() {
    const sorted = [...this.assets.values()].sort(
      (a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id),
    )
    for (const a of sorted) this.listEl.append(this.cards.get(a.id))
    this.updateEmpty()
  }

  updateEmpty() {
    this.emptyEl.hidden = this.assets.size > 0
  }

  render(a) {
    let li = this.cards.get(a.id)
    if (!li) {
      li = document.createElement('li')
      li.className = 'asset'
      li.dataset.id = a.id
      this.cards.set(a.id, li)
    }
    const children = [preview(a), details(a)]
    li.replaceChildren(...children)
    li.dataset.state = a.state
    li.dataset.name = a.name ?? ''
    li.dataset.type = a.type ?? ''
  }
}

/** True if `a` is a later state of the same asset than `b`. */
function newer(a, b) {
  if (a.updated_at !== b.updated_at) return a.updated_at > b.updated_at
  return rank(a) > rank(b) || (rank(a) === rank(b) && (a.received_bytes ?? 0) > (b.received_bytes ?? 0))
}

function rank(a) {
  return { pending_upload: 0, processing: 1, ready: 2, failed: 2 }[a.state] ?? 0
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v
    else if (k.startsWith('data-')) node.setAttribute(k, v)
    else node[k] = v
  }
  node.append(...children.filter((c) => c != null && c !== false))
  return node
}

function preview(a) {
  const box = el('div', { class: 'preview' })
  if (a.type === 'image' && a.state === 'ready' && a.download_url) {
    box.append(el('img', { src: a.download_url, alt: a.name ?? 'image preview', loading: 'lazy' }))
  } else {
    box.append(el('span', { class: 'kind' }, a.extension || a.type || '…'))
  }
  return box
}

function details(a) {
  const body = el('div', { class: 'body' })
  body.append(
    el(
      'div',
      { class: 'title' },
      el('span', { class: 'name', title: a.name ?? a.id }, a.name ?? a.id),
      el('span', { class: `state state-${a.state}` }, STATE_LABELS[a.state] ?? a.state),
    ),
  )
  body.append(progress(a))

  const facts = el('dl', { class: 'facts' })
  const fact = (label, value, cls) => {
    if (value == null || value === '') return
    facts.append(el('dt', {}, label), el('dd', { class: cls ?? '' }, value))
  }
  fact('Type', a.type ? `${a.type}${a.content_type ? ` · ${a.content_type}` : ''}` : null)
  fact('Size', a.size_bytes != null ? formatBytes(a.size_bytes) : 'unknown yet')
  fact('Duration', a.duration_seconds != null ? formatDuration(a.duration_seconds) : null)
  fact('Dimensions', a.width != null && a.height != null ? `${a.width} × ${a.height}` : null)
  if (a.sha256) {
    facts.append(el('dt', {}, 'SHA-256'), el('dd', { class: 'hash', title: a.sha256, 'data-sha256': a.sha256 }, a.sha256))
  }
  if (a.state === 'failed') fact('Error', `${a.error_message ?? ''}${a.error_code ? ` (${a.error_code})` : ''}`, 'error')
  body.append(facts)

  if (a.state === 'ready' && a.download_url) {
    body.append(
      el(
        'div',
        { class: 'actions' },
        el('a', { class: 'download', href: a.download_url, download: a.name ?? '', rel: 'noopener' }, 'Download'),
      ),
    )
  }
  return body
}

function progress(a) {
  const received = a.received_bytes ?? 0
  const total = a.size_bytes
  const done = a.state !== 'pending_upload'
  const pct = done ? 100 : total ? Math.floor((received / total) * 100) : 0
  const label = done
    ? `${formatBytes(received)} received`
    : total != null
      ? `${formatBytes(received)} of ${formatBytes(total)} · ${pct} %`
      : `${formatBytes(received)} of unknown`
  return el(
    'div',
    { class: 'progress' },
    el('progress', { max: 100, value: pct }),
    el('span', { class: 'progress-label' }, label),
  )
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = -1
  do {
    v /= 1024
    i++
  } while (v >= 1024 && i < units.length - 1)
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`
}

/** `duration_seconds` is a decimal string such as "324.412". */
export function formatDuration(value) {
  const s = Number(value)
  if (!Number.isFinite(s)) return String(value)
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = Math.floor(s % 60)
  const mm = h ? String(m).padStart(2, '0') : String(m)
  return `${h ? `${h}:` : ''}${mm}:${String(sec).padStart(2, '0')}`
}
