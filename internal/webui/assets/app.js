// Ferry's web UI: a hash router over the views, the token field, the flash
// line. The server only serves these files; all data comes from /v1.

import {h, replace} from './dom.js'
import {token, saveToken, APIError} from './api.js'
import {dashboard, pipelinePage, runPage, runsPage, rejectedPage, driftPage, webhooksPage} from './views.js'

const routes = [
  [/^$/, 'dashboard', dashboard],
  [/^pipelines\/([^/]+)$/, 'dashboard', pipelinePage],
  [/^runs$/, 'runs', runsPage],
  [/^runs\/([^/]+)$/, 'runs', runPage],
  [/^rejected$/, 'rejected', rejectedPage],
  [/^drift$/, 'drift', driftPage],
  [/^webhooks$/, 'webhooks', webhooksPage],
]

const main = document.getElementById('main')
const flashBox = document.getElementById('flash')
let current = null // the AbortController of the view on screen
let flashTimer = 0
let pending = null // a flash to show on the next page, set by ctx.go

function flash(message, kind) {
  clearTimeout(flashTimer)
  flashBox.className = `flash ${kind === 'error' ? 'flash-error' : 'flash-ok'}`
  flashBox.setAttribute('data-kind', kind === 'error' ? 'error' : 'ok')
  flashBox.textContent = message
  if (kind === 'error' && message.includes('API token')) document.getElementById('token').focus()
  flashTimer = setTimeout(() => {
    flashBox.textContent = ''
    flashBox.className = 'flash'
  }, kind === 'error' ? 30000 : 10000)
}

function showError(e) {
  let box = main.querySelector('[data-testid="view-error"]')
  if (!box) {
    box = h('div', {class: 'view-error', role: 'alert', testid: 'view-error'})
    main.prepend(box)
  }
  replace(box, h('p', {}, e instanceof APIError || e instanceof Error ? e.message : String(e)),
    h('button', {type: 'button', testid: 'retry', onclick: () => render()}, 'Try again'))
  if (e instanceof APIError && e.status === 401) document.getElementById('token').focus()
}

function clearError() {
  const box = main.querySelector('[data-testid="view-error"]')
  if (box) box.remove()
}

// parse splits the address after '#/' into the path and its query.
function parse() {
  const raw = location.hash.replace(/^#\/?/, '')
  const [path, qs] = raw.split('?', 2)
  return {path: path.replace(/\/+$/, ''), query: new URLSearchParams(qs || '')}
}

function render() {
  if (current) current.abort()
  clearTimeout(flashTimer)
  flashBox.textContent = ''
  flashBox.className = 'flash'
  if (pending) {
    flash(...pending)
    pending = null
  }
  const ac = new AbortController()
  current = ac
  const {path, query} = parse()
  let found = null
  for (const [re, nav, view] of routes) {
    const m = re.exec(path)
    if (m) {
      found = {nav, view, params: m.slice(1).map((p) => decodeURIComponent(p))}
      break
    }
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.getAttribute('data-nav') === found.nav) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  if (!found) {
    replace(main, h('h1', {testid: 'page-title'}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', {href: '#/'}, 'Back to the pipelines.')))
    return
  }
  const ctx = {
    main,
    query,
    signal: ac.signal,
    flash,
    // go opens another page; a flash given with it shows there.
    go: (href, ...message) => {
      if (message.length) pending = message
      if (location.hash === href) render()
      else location.hash = href
    },
    // poll runs fn now and again every ms after it settles, until the view
    // is left or fn returns false. Errors are shown, and polling goes on.
    poll(fn, ms) {
      const tick = async () => {
        if (ac.signal.aborted) return
        let again = true
        try {
          again = (await fn()) !== false
          if (!ac.signal.aborted) clearError()
        } catch (e) {
          if (!ac.signal.aborted) showError(e)
        }
        if (again && !ac.signal.aborted) setTimeout(tick, ms)
      }
      tick()
    },
  }
  document.title = `Ferry · ${found.params[0] || found.nav}`
  replace(main, h('p', {class: 'muted', testid: 'loading'}, 'Loading…'))
  Promise.resolve()
    .then(() => found.view(ctx, ...found.params))
    .catch((e) => {
      if (!ac.signal.aborted) showError(e)
    })
}

const form = document.getElementById('token-form')
const field = document.getElementById('token')
field.value = token()
form.addEventListener('submit', (e) => {
  e.preventDefault()
  saveToken(field.value.trim())
  flash(field.value.trim() ? 'Token saved in this browser.' : 'Token cleared.')
  render()
})
document.getElementById('token-clear').addEventListener('click', () => {
  field.value = ''
  saveToken('')
  flash('Token cleared.')
  render()
})
document.querySelector('[data-skip]').addEventListener('click', (e) => {
  e.preventDefault()
  main.focus()
})

window.addEventListener('hashchange', () => {
  render()
  // A new page: screen readers start at its content, not the old button.
  main.focus({preventScroll: true})
})
render()
