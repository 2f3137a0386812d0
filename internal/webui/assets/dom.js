// DOM building. Every value from the API reaches the page through h() or
// text(): as text nodes and attribute values, never as markup. Nothing in
// the UI assigns innerHTML (a test in webui_test.go keeps it that way).

const SVG = 'http://www.w3.org/2000/svg'

// h builds an element: h('a', {href: '#/', testid: 'x', onclick: fn}, 'text', child…).
// Attributes: class, testid (data-testid), on<event> functions as listeners,
// true for boolean attributes, null/false/undefined for none.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children)
}

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children)
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue
    if (k.startsWith('on')) {
      if (typeof v !== 'function') throw new TypeError(`${k} must be a function`)
      el.addEventListener(k.slice(2), v)
    } else if (k === 'testid') {
      el.setAttribute('data-testid', v)
    } else if (k === 'href' && !/^(#|\/|\.\/)/.test(String(v))) {
      throw new TypeError('links stay inside the UI and the API')
    } else {
      el.setAttribute(k, v === true ? '' : String(v))
    }
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else if (c instanceof Node) el.appendChild(c)
    else el.appendChild(document.createTextNode(String(c)))
  }
}

// replace swaps el's children for new ones, keeping the focus on the element
// with the same data-testid, so a refresh does not steal a keyboard user's
// place.
export function replace(el, ...children) {
  const focused = el.contains(document.activeElement) ? document.activeElement.getAttribute('data-testid') : null
  el.replaceChildren()
  append(el, children)
  if (focused) {
    const again = el.querySelector(`[data-testid="${CSS.escape(focused)}"]`)
    if (again) again.focus()
  }
}

// ago says how long ago an RFC 3339 time was, as a <time> element.
export function ago(iso) {
  if (!iso) return h('span', {class: 'muted'}, '—')
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return h('span', {}, String(iso))
  const secs = Math.round((Date.now() - t) / 1000)
  const label = secs >= 0 ? `${duration(secs)} ago` : `in ${duration(-secs)}`
  return h('time', {datetime: iso, title: new Date(t).toISOString()}, label)
}

// duration writes a number of seconds as "1h 5m", "3m 2s", "12s".
export function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return '—'
  secs = Math.max(0, Math.round(secs))
  if (secs < 60) return `${secs}s`
  const m = Math.floor(secs / 60)
  if (m < 60) return `${m}m ${secs % 60}s`
  const hr = Math.floor(m / 60)
  if (hr < 48) return `${hr}h ${m % 60}m`
  return `${Math.floor(hr / 24)}d ${hr % 24}h`
}

// between is the duration from start to end (or now), in seconds.
export function between(start, end) {
  if (!start) return null
  const a = Date.parse(start)
  const b = end ? Date.parse(end) : Date.now()
  return (b - a) / 1000
}

const fmt = new Intl.NumberFormat('en')

// num formats a count, or a dash for none.
export function num(n) {
  return n === null || n === undefined ? '—' : fmt.format(n)
}

// status is a run or stream status as a badge; text carries the meaning,
// the colour only repeats it.
export function status(value, testid) {
  const v = String(value || 'unknown')
  return h('span', {class: `status status-${v.replace(/[^a-z]/g, '')}`, 'data-status': v, testid}, v)
}

// table builds a table with a caption (visible or not), header cells and
// rows; a row is an array of cells or an element already built.
export function table({caption, hideCaption, head, rows, testid, empty}) {
  if (!rows.length && empty) return h('p', {class: 'empty', testid: testid && `${testid}-empty`}, empty)
  return h('div', {class: 'scroll'},
    h('table', {testid},
      caption && h('caption', {class: hideCaption ? 'sr-only' : null}, caption),
      h('thead', {}, h('tr', {}, head.map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, rows.map((r) => (r instanceof Node ? r : h('tr', {}, r.map((c) => (c instanceof Node && c.tagName === 'TD' ? c : h('td', {}, c)))))))))
}

// pretty writes a JSON value indented, for a <pre>.
export function pretty(v) {
  try {
    return JSON.stringify(v, null, 2)
  } catch {
    return String(v)
  }
}

// route is an in-UI address built from path segments and query values,
// each encoded: route(['runs', id]) is "#/runs/<id>".
export function route(segments, query) {
  let href = '#/' + segments.map((p) => encodeURIComponent(p)).join('/')
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(query || {})) if (v !== null && v !== undefined && v !== '') q.set(k, v)
  if ([...q].length) href += '?' + q
  return href
}

// link is an in-UI link: link(['runs', id], text, attrs, query).
export function link(segments, text, attrs, query) {
  return h('a', {...attrs, href: route(segments, query)}, text)
}
