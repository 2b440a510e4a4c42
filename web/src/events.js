// Server-Sent Events read with fetch(), because EventSource cannot send an
// Authorization header. Parses the text/event-stream format, reconnects with
// Last-Event-ID, and reports what happens through callbacks.

import { apiError, authHeaders } from './api.js'

/** Incremental text/event-stream parser (WHATWG HTML §9.2.6). */
export class SseParser {
  constructor(onEvent, onRetry) {
    this.onEvent = onEvent
    this.onRetry = onRetry
    this.buffer = ''
    this.reset()
    this.lastEventId = ''
  }

  reset() {
    this.type = ''
    this.data = []
    this.sawId = false
  }

  push(text) {
    this.buffer += text
    // Lines end in CRLF, LF or CR; a trailing CR may still be half of a CRLF.
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.buffer)
      if (!m || (m[0] === '\r' && m.index === this.buffer.length - 1)) break
      const line = this.buffer.slice(0, m.index)
      this.buffer = this.buffer.slice(m.index + m[0].length)
      this.line(line)
    }
  }

  line(line) {
    if (line === '') return this.dispatch()
    if (line.startsWith(':')) return // comment (keep-alive)
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.type = value
        break
      case 'data':
        this.data.push(value)
        break
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.onRetry(Number(value))
        break
    }
  }

  dispatch() {
    const { type, data } = this
    this.reset()
    if (data.length === 0) return
    this.onEvent({ id: this.lastEventId, type: type || 'message', data: data.join('\n') })
  }
}

/**
 * Keeps a stream of `url` open until `stop()`.
 * handlers: onOpen({ resumed }), onEvent({ id, type, data }), onError(err, { fatal }).
 * An error with `fatal` (401/403) stops reconnecting until `restart()`.
 */
export function openStream(url, handlers) {
  let lastEventId = ''
  let retryMs = 1000
  let failures = 0
  let controller = null
  let timer = null
  let stopped = false

  async function connect() {
    // Each connection has its own controller, so a connection that ends can
    // tell whether it was stopped or replaced (by `stop()` or `restart()`) or
    // cut off (`drop()`, the network): only the last is a reason to reconnect.
    const ctl = new AbortController()
    controller = ctl
    const headers = { Accept: 'text/event-stream', ...authHeaders() }
    if (lastEventId) headers['Last-Event-ID'] = lastEventId
    let resp
    try {
      resp = await fetch(url, { headers, signal: ctl.signal, cache: 'no-store' })
    } catch (err) {
      return retry(ctl, err)
    }
    if (resp.status !== 200) {
      const err = await apiError(resp)
      if (stopped || ctl !== controller) return
      const fatal = resp.status === 401 || resp.status === 403
      handlers.onError(err, { fatal })
      if (!fatal) schedule()
      return
    }
    failures = 0
    handlers.onOpen({ resumed: Boolean(lastEventId) })
    const parser = new SseParser(
      (ev) => {
        if (ev.id) lastEventId = ev.id
        try {
          handlers.onEvent(ev)
        } catch (err) {
          // A bug in a handler is not a broken stream: report it, read on.
          queueMicrotask(() => {
            throw err
          })
        }
      },
      (ms) => {
        retryMs = ms
      },
    )
    parser.lastEventId = lastEventId
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader()
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        parser.push(value)
      }
      retry(ctl, new Error('the event stream ended'))
    } catch (err) {
      retry(ctl, err)
    }
  }

  /** The connection of `ctl` ended with `err`: reconnect unless it was meant to end. */
  function retry(ctl, err) {
    // Not the error's name: once the response has started, Chromium errors an
    // aborted body with a plain AbortError ("BodyStreamBuffer was aborted")
    // whatever the abort's reason, so a drop() would look like a stop().
    if (stopped || ctl !== controller) return
    // A dropped connection reports why it was dropped, not the bare AbortError.
    if (ctl.signal.aborted && ctl.signal.reason !== undefined) err = ctl.signal.reason
    handlers.onError(err, { fatal: false })
    schedule()
  }

  function schedule() {
    if (stopped) return
    failures++
    // The server's retry hint, backing off to 30 s while it stays away.
    const delay = Math.min(retryMs * 2 ** Math.min(failures - 1, 5), 30000)
    clearTimeout(timer)
    timer = setTimeout(connect, delay)
  }

  connect()
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
      controller?.abort()
    },
    /** Reconnects now (e.g. with a new key), resuming where the stream was. */
    restart() {
      stopped = false
      failures = 0
      clearTimeout(timer)
      controller?.abort()
      connect()
    },
    /** Cuts the connection as a network failure would (reconnects as usual). */
    drop() {
      controller?.abort(new DOMException('the connection was dropped', 'NetworkError'))
    },
    /** Forgets the position: the next connection starts from now. */
    forget() {
      lastEventId = ''
    },
  }
}
