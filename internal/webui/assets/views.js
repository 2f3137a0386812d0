// The pages. Each view gets a context (ctx) from app.js: ctx.main to fill,
// ctx.poll(fn, ms) to refresh until the user navigates away, ctx.flash to
// say what happened, ctx.query for the address's query values.

import {h, replace, ago, duration, between, num, status, table, pretty, link, route} from './dom.js'
import {call, get, seg, FINISHED} from './api.js'
import {throughputChart} from './chart.js'

const MINUTES = 30

// trigger starts a run of a pipeline (some streams, or all) and opens it.
async function trigger(ctx, pipeline, streams, button) {
  if (button) button.disabled = true
  try {
    const run = await call('POST', `/v1/pipelines/${seg(pipeline)}/runs`, streams && streams.length ? {streams} : {})
    ctx.go(route(['runs', run.id]), `Started run ${run.id} of ${pipeline}.`)
  } catch (e) {
    ctx.flash(e.message, 'error')
  } finally {
    if (button) button.disabled = false
  }
}

function runButton(ctx, pipeline) {
  const b = h('button', {type: 'button', class: 'primary', testid: `trigger-${pipeline}`, 'aria-label': `Run ${pipeline} now`,
    onclick: () => trigger(ctx, pipeline, null, b)}, 'Run now')
  return b
}

function runLink(brief, testid) {
  if (!brief) return h('span', {class: 'muted'}, 'never run')
  return h('span', {class: 'run-brief'}, link(['runs', brief.id], status(brief.status, testid), {'aria-label': `Run ${brief.id}: ${brief.status}`}),
    ' ', ago(brief.ended_at || brief.started_at))
}

// running links the runs syncing a pipeline's streams now, other than
// its last run.
function running(streams) {
  const ids = [...new Set((streams || []).map((st) => st.running_run_id).filter(Boolean))]
  if (!ids.length) return null
  return h('div', {class: 'sub'}, 'now: ', ids.map((id, i) => [i ? ', ' : '', link(['runs', id], id)]))
}

function stalest(streams) {
  let worst = null
  for (const st of streams || []) {
    if (st.freshness_seconds === null || st.freshness_seconds === undefined) continue
    if (!worst || st.freshness_seconds > worst.freshness_seconds) worst = st
  }
  return worst
}

function freshness(secs) {
  if (secs === null || secs === undefined) return h('span', {class: 'muted'}, '—')
  return h('span', {title: `data is ${duration(secs)} behind`}, duration(secs))
}

function sum(streams, key) {
  let total = null
  for (const st of streams || []) if (typeof st[key] === 'number') total = (total || 0) + st[key]
  return total
}

function heading(text, ...rest) {
  return h('div', {class: 'heading'}, h('h1', {testid: 'page-title'}, text), ...rest)
}

function runsTable(runs, caption, testid) {
  return table({caption, hideCaption: true, testid, empty: 'No runs yet.',
    head: ['Run', 'Pipeline', 'Trigger', 'Status', 'Started', 'Duration', 'Records'],
    rows: runs.map((r) => h('tr', {testid: `run-row-${r.id}`},
      h('td', {}, link(['runs', r.id], r.id)),
      h('td', {}, link(['pipelines', r.pipeline], r.pipeline)),
      h('td', {}, r.trigger || '—'),
      h('td', {}, status(r.status)),
      h('td', {}, ago(r.started_at)),
      h('td', {}, duration(between(r.started_at, r.ended_at))),
      h('td', {class: 'n'}, num(sum(r.streams, 'records')))))})
}

// dashboard: every pipeline with its last run and freshness, the
// records/s chart, the latest runs.
export function dashboard(ctx) {
  const chart = h('section', {class: 'card', 'aria-labelledby': 'tp-h'}, h('h2', {id: 'tp-h'}, 'Records per second'))
  const chartBody = h('div', {testid: 'throughput'})
  chart.append(chartBody)
  const pipes = h('section', {'aria-labelledby': 'pl-h'}, h('h2', {id: 'pl-h', class: 'sr-only'}, 'Pipelines'))
  const pipesBody = h('div')
  pipes.append(pipesBody)
  const recent = h('section', {'aria-labelledby': 'rr-h'}, h('h2', {id: 'rr-h'}, 'Latest runs'))
  const recentBody = h('div')
  recent.append(recentBody)
  replace(ctx.main, heading('Pipelines'), pipes, chart, recent)

  ctx.poll(async () => {
    const [p, r, tp] = await Promise.all([
      get('/v1/pipelines'),
      get('/v1/runs', {limit: 10}),
      get('/v1/throughput', {minutes: MINUTES}),
    ])
    const list = p.pipelines || []
    replace(pipesBody, table({caption: 'Pipelines', hideCaption: true, testid: 'pipelines-table',
      empty: 'No pipelines: start ferry serve with pipeline files.',
      head: ['Pipeline', 'Schedule', 'Last run', 'Freshness', 'Streams', 'Records', h('span', {class: 'sr-only'}, 'Actions')],
      rows: list.map((pl) => {
        const worst = stalest(pl.streams)
        return h('tr', {testid: `pipeline-${pl.name}`},
          h('th', {scope: 'row'}, link(['pipelines', pl.name], pl.name, {testid: `pipeline-link-${pl.name}`})),
          h('td', {}, pl.schedule ? h('code', {}, pl.schedule) : h('span', {class: 'muted'}, 'manual'),
            pl.next_run_at ? h('div', {class: 'sub'}, 'next ', ago(pl.next_run_at)) : null),
          h('td', {testid: `last-run-${pl.name}`}, runLink(pl.last_run, `last-run-status-${pl.name}`), running(pl.streams)),
          h('td', {testid: `freshness-${pl.name}`}, freshness(worst && worst.freshness_seconds),
            worst && (pl.streams || []).length > 1 ? h('div', {class: 'sub'}, worst.name) : null),
          h('td', {class: 'n'}, num((pl.streams || []).length)),
          h('td', {class: 'n'}, num(sum(pl.streams, 'records_total'))),
          h('td', {class: 'actions'}, runButton(ctx, pl.name)))
      })}))
    replace(chartBody, throughputChart(tp.points, MINUTES))
    replace(recentBody, runsTable(r.runs || [], 'Latest runs', 'recent-runs'))
  }, 5000)
}

// pipelinePage: one pipeline's streams (run some, see or reset their
// state) and its runs.
export function pipelinePage(ctx, name) {
  const body = h('div')
  const runs = h('div')
  replace(ctx.main, heading(name, h('div', {class: 'links'},
    link(['rejected'], 'Rejected records', {}, {pipeline: name}), ' · ',
    link(['drift'], 'Schema drift', {}, {pipeline: name}), ' · ',
    link(['runs'], 'All runs', {}, {pipeline: name}))), body,
  h('section', {'aria-labelledby': 'pr-h'}, h('h2', {id: 'pr-h'}, 'Runs'), runs))
  const selected = new Set()
  const stateBox = h('div', {testid: 'state-box'})

  ctx.poll(async () => {
    const [pl, r] = await Promise.all([get(`/v1/pipelines/${seg(name)}`), get('/v1/runs', {pipeline: name, limit: 20})])
    const streams = pl.streams || []
    const runSel = h('button', {type: 'button', testid: 'trigger-selected', onclick: () => trigger(ctx, name, [...selected], runSel)},
      'Run selected streams')
    replace(body,
      h('dl', {class: 'facts'},
        h('dt', {}, 'File'), h('dd', {}, h('code', {}, pl.file || '—')),
        h('dt', {}, 'Schedule'), h('dd', {}, pl.schedule ? h('code', {}, pl.schedule) : 'manual'),
        h('dt', {}, 'Next run'), h('dd', {}, ago(pl.next_run_at)),
        h('dt', {}, 'Last run'), h('dd', {}, runLink(pl.last_run, 'pipeline-last-status'))),
      h('div', {class: 'toolbar'}, runButton(ctx, name), runSel),
      table({caption: 'Streams', testid: 'streams-table', empty: 'No streams.',
        head: [h('span', {class: 'sr-only'}, 'Select'), 'Stream', 'Table', 'Mode', 'Kind', 'Last run', 'Freshness', 'Records', 'State'],
        rows: streams.map((st) => {
          // A stream that never ends (webhooks, change data capture) runs
          // continuously: it cannot be triggered.
          const box = h('input', {type: 'checkbox', id: `sel-${st.name}`, testid: `select-${st.name}`, checked: selected.has(st.name),
            disabled: !!st.unbounded, onchange: (e) => (e.target.checked ? selected.add(st.name) : selected.delete(st.name))})
          return h('tr', {testid: `stream-${st.name}`},
            h('td', {}, box, h('label', {for: `sel-${st.name}`, class: 'sr-only'}, st.unbounded ? `${st.name} runs continuously` : `Select stream ${st.name}`)),
            h('th', {scope: 'row'}, st.name),
            h('td', {}, st.table ? h('code', {}, st.table) : '—'),
            h('td', {}, st.mode || '—'),
            h('td', {}, st.kind || '—', st.unbounded ? h('div', {class: 'sub'}, 'continuous') : null),
            h('td', {}, runLink(st.last_run), st.running_run_id ? h('div', {class: 'sub'}, 'now: ', link(['runs', st.running_run_id], st.running_run_id)) : null),
            h('td', {}, freshness(st.freshness_seconds)),
            h('td', {class: 'n'}, num(st.records_total)),
            h('td', {class: 'actions'}, stateButtons(ctx, name, st.name, stateBox)))
        })}),
      stateBox)
    replace(runs, runsTable(r.runs || [], `Runs of ${name}`, 'pipeline-runs'))
  }, 5000)
}

function stateButtons(ctx, pipeline, stream, box) {
  const url = `/v1/pipelines/${seg(pipeline)}/streams/${seg(stream)}/state`
  const show = h('button', {type: 'button', testid: `state-show-${stream}`, onclick: async () => {
    try {
      const st = await get(url)
      replace(box, h('section', {class: 'card', 'aria-label': `State of ${stream}`},
        h('h2', {}, `State of ${stream}`),
        st.state === null || st.state === undefined ? h('p', {class: 'muted'}, 'No state: the next run starts from the beginning.')
          : h('pre', {testid: `state-${stream}`}, pretty(st.state))))
    } catch (e) {
      ctx.flash(e.message, 'error')
    }
  }}, 'State')
  let armed = false
  const reset = h('button', {type: 'button', class: 'danger', testid: `state-reset-${stream}`, onclick: async () => {
    if (!armed) {
      armed = true
      reset.textContent = `Confirm reset of ${stream}`
      return
    }
    armed = false
    reset.textContent = 'Reset'
    try {
      await call('DELETE', url)
      ctx.flash(`The state of ${stream} is reset: its next run starts from the beginning.`)
      replace(box)
    } catch (e) {
      ctx.flash(e.message, 'error')
    }
  }}, 'Reset')
  return [show, ' ', reset]
}

// runPage: one run, polled while it is queued or running: per stream
// counters, partitions, errors, drift; its log.
export function runPage(ctx, id) {
  const summary = h('div')
  const streams = h('div')
  const logBox = h('pre', {class: 'log', role: 'log', 'aria-label': 'Run log', testid: 'run-log'})
  const logNote = h('p', {class: 'muted'})
  let after = 0
  let logsOff = false
  replace(ctx.main, heading(`Run ${id}`), summary,
    h('section', {'aria-labelledby': 'rs-h'}, h('h2', {id: 'rs-h'}, 'Streams'), streams),
    h('section', {'aria-labelledby': 'rl-h'}, h('h2', {id: 'rl-h'}, 'Log'), logNote, logBox))

  async function logs() {
    if (logsOff) return
    try {
      const l = await get(`/v1/runs/${seg(id)}/logs`, {after})
      for (const line of l.lines || []) {
        after = Math.max(after, Number(line.seq) || after)
        logBox.append(h('span', {class: `lvl-${String(line.level || '').toLowerCase().replace(/[^a-z]/g, '')}`, title: line.time || null},
          `${clockTime(line.time)} ${line.level || ''} ${line.stream ? `[${line.stream}] ` : ''}${line.msg || ''}\n`))
      }
      while (logBox.childNodes.length > 1000) logBox.firstChild.remove()
    } catch (e) {
      logsOff = true
      logNote.textContent = `The log is not available: ${e.message}`
    }
  }

  ctx.poll(async () => {
    const run = await get(`/v1/runs/${seg(id)}`)
    const running = !FINISHED.has(run.status)
    const cancel = running && h('button', {type: 'button', class: 'danger', testid: 'run-cancel', onclick: async () => {
      cancel.disabled = true
      try {
        await call('POST', `/v1/runs/${seg(id)}/cancel`)
        ctx.flash(`Cancelling run ${id}.`)
      } catch (e) {
        ctx.flash(e.message, 'error')
        cancel.disabled = false
      }
    }}, 'Cancel run')
    replace(summary,
      h('dl', {class: 'facts', testid: 'run-facts'},
        h('dt', {}, 'Status'), h('dd', {}, status(run.status, 'run-status')),
        h('dt', {}, 'Pipeline'), h('dd', {}, link(['pipelines', run.pipeline], run.pipeline)),
        h('dt', {}, 'Trigger'), h('dd', {}, run.trigger || '—'),
        h('dt', {}, 'Started'), h('dd', {}, ago(run.started_at)),
        h('dt', {}, running ? 'Running for' : 'Took'), h('dd', {}, duration(between(run.started_at, run.ended_at)))),
      run.error ? h('p', {class: 'error-text', testid: 'run-error'}, run.error) : null,
      h('div', {class: 'toolbar'}, cancel || null,
        !running && h('button', {type: 'button', testid: 'run-again', onclick: (e) => trigger(ctx, run.pipeline, null, e.target)}, 'Run again')))
    replace(streams, table({caption: `Streams of run ${id}`, hideCaption: true, testid: 'run-streams', empty: 'No streams yet.',
      head: ['Stream', 'Status', 'Records', 'Rejected', 'Requests', 'Retries', 'Partitions', 'Problems'],
      rows: (run.streams || []).map((st) => h('tr', {testid: `run-stream-${st.name}`},
        h('th', {scope: 'row'}, st.name),
        h('td', {}, status(st.status, `run-stream-status-${st.name}`)),
        h('td', {class: 'n', testid: `run-stream-records-${st.name}`}, num(st.records)),
        h('td', {class: 'n'}, st.rejected ? link(['rejected'], num(st.rejected), {testid: `run-stream-rejected-${st.name}`}, {pipeline: run.pipeline, stream: st.name}) : num(st.rejected)),
        h('td', {class: 'n'}, num(st.requests)),
        h('td', {class: 'n'}, num(st.retries)),
        h('td', {}, partitions(st)),
        h('td', {}, st.error ? h('div', {class: 'error-text'}, st.error) : null,
          (st.drift || []).length ? h('ul', {class: 'drift', 'aria-label': 'Schema drift'},
            st.drift.map((d) => h('li', {}, h('code', {}, d.table), ' ', d.change))) : null)))}))
    await logs()
    return running
  }, 1000)
}

// clockTime writes an RFC 3339 time as the local HH:MM:SS.
function clockTime(iso) {
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso || ''
  return new Date(t).toTimeString().slice(0, 8)
}

function partitions(st) {
  const total = Number(st.partitions_total) || 0
  const done = Number(st.partitions_done) || 0
  if (!total) return h('span', {class: 'muted'}, done ? num(done) : '—')
  return h('span', {class: 'parts'},
    h('progress', {max: total, value: Math.min(done, total), 'aria-label': `${st.name}: ${done} of ${total} partitions`}),
    ` ${num(done)} / ${num(total)}`)
}

// runsPage: run history, filtered by pipeline and status.
export function runsPage(ctx) {
  const q = ctx.query
  const body = h('div')
  const filters = h('form', {class: 'filters', 'aria-label': 'Filter runs', onsubmit: (e) => e.preventDefault()},
    h('label', {for: 'f-pipeline'}, 'Pipeline'), h('input', {id: 'f-pipeline', value: q.get('pipeline') || '', testid: 'filter-pipeline',
      onchange: (e) => ctx.go(route(['runs'], {pipeline: e.target.value, status: q.get('status')}))}),
    h('label', {for: 'f-status'}, 'Status'),
    h('select', {id: 'f-status', testid: 'filter-status', onchange: (e) => ctx.go(route(['runs'], {pipeline: q.get('pipeline'), status: e.target.value}))},
      ['', 'queued', 'running', 'succeeded', 'partial', 'failed', 'stopped', 'cancelled'].map((v) =>
        h('option', {value: v, selected: (q.get('status') || '') === v}, v || 'any'))))
  replace(ctx.main, heading('Runs'), filters, body)
  ctx.poll(async () => {
    const r = await get('/v1/runs', {pipeline: q.get('pipeline'), status: q.get('status'), limit: 50})
    replace(body, runsTable(r.runs || [], 'Runs', 'runs-table'))
  }, 5000)
}

async function pipelineNames() {
  const p = await get('/v1/pipelines')
  return (p.pipelines || []).map((pl) => ({name: pl.name, streams: (pl.streams || []).map((st) => st.name)}))
}

// rejectedPage: the records a pipeline could not type, with their reasons;
// open one, replay some or all of a stream after a fix.
export async function rejectedPage(ctx) {
  const q = ctx.query
  const names = await pipelineNames()
  if (ctx.signal.aborted) return
  if (!names.length) {
    replace(ctx.main, heading('Rejected records'), h('p', {class: 'empty'}, 'No pipelines.'))
    return
  }
  const current = names.find((n) => n.name === q.get('pipeline')) || names[0]
  const stream = current.streams.includes(q.get('stream')) ? q.get('stream') : ''
  const body = h('div')
  const filters = h('form', {class: 'filters', 'aria-label': 'Choose records', onsubmit: (e) => e.preventDefault()},
    h('label', {for: 'r-pipeline'}, 'Pipeline'),
    h('select', {id: 'r-pipeline', testid: 'rejected-pipeline', onchange: (e) => ctx.go(route(['rejected'], {pipeline: e.target.value}))},
      names.map((n) => h('option', {value: n.name, selected: n.name === current.name}, n.name))),
    h('label', {for: 'r-stream'}, 'Stream'),
    h('select', {id: 'r-stream', testid: 'rejected-stream', onchange: (e) => ctx.go(route(['rejected'], {pipeline: current.name, stream: e.target.value}))},
      h('option', {value: ''}, 'all streams'),
      current.streams.map((n) => h('option', {value: n, selected: n === stream}, n))))
  replace(ctx.main, heading('Rejected records'), h('p', {class: 'help'},
    'Records that could not become rows, with the reason. After fixing the connector or the table, replay them: those that now fit land in their table and leave this list.'),
  filters, body)

  async function replay(req, button) {
    button.disabled = true
    try {
      const res = await call('POST', `/v1/pipelines/${seg(current.name)}/rejected/replay`, req)
      const repeats = res.filtered ? `, ${num(res.filtered)} dropped as repeats of another` : ''
      ctx.flash(`Replayed ${num(res.replayed)} record${res.replayed === 1 ? '' : 's'}: ${num(res.rejected_again)} rejected again${repeats}${res.run_id ? ` (run ${res.run_id})` : ''}.`)
      await load()
    } catch (e) {
      ctx.flash(e.message, 'error')
      button.disabled = false
    }
  }

  async function load() {
    const r = await get(`/v1/pipelines/${seg(current.name)}/rejected`, {stream, limit: 100})
    const list = r.rejected || []
    const selected = new Set()
    const replaySel = h('button', {type: 'button', class: 'primary', testid: 'replay-selected', disabled: true,
      onclick: () => replay({ids: [...selected]}, replaySel)}, 'Replay selected')
    const count = () => {
      replaySel.disabled = selected.size === 0
      replaySel.textContent = selected.size ? `Replay ${selected.size} selected` : 'Replay selected'
    }
    const replayAll = stream && list.length ? h('button', {type: 'button', testid: 'replay-stream',
      onclick: (e) => replay({stream}, e.target)}, `Replay every rejected record of ${stream}`) : null
    const cols = 7
    const rows = []
    for (const rec of list) {
      const rid = String(rec.id)
      const detailID = `rec-${rid.replace(/[^A-Za-z0-9_-]/g, '_')}`
      const detail = h('tr', {class: 'detail', id: detailID, hidden: true, testid: `rejected-detail-${rid}`},
        h('td', {colspan: cols}, h('pre', {testid: `rejected-record-${rid}`}, pretty(rec.record))))
      const box = h('input', {type: 'checkbox', id: `${detailID}-sel`, testid: `rejected-select-${rid}`,
        onchange: (e) => {
          e.target.checked ? selected.add(rec.id) : selected.delete(rec.id)
          count()
        }})
      const open = h('button', {type: 'button', 'aria-expanded': 'false', 'aria-controls': detailID, testid: `rejected-open-${rid}`,
        onclick: () => {
          detail.hidden = !detail.hidden
          open.setAttribute('aria-expanded', String(!detail.hidden))
          open.textContent = detail.hidden ? 'Show record' : 'Hide record'
        }}, 'Show record')
      const one = h('button', {type: 'button', testid: `rejected-replay-${rid}`, onclick: (e) => replay({ids: [rec.id]}, e.target)}, 'Replay')
      rows.push(h('tr', {testid: `rejected-${rid}`},
        h('td', {}, box, h('label', {for: `${detailID}-sel`, class: 'sr-only'}, `Select rejected record ${rid}`)),
        h('td', {}, ago(rec.at)),
        h('td', {}, rec.stream),
        h('td', {}, rec.table ? h('code', {}, rec.table) : '—'),
        h('td', {}, rec.run_id ? link(['runs', rec.run_id], rec.run_id) : '—'),
        h('td', {class: 'reason', testid: `rejected-reason-${rid}`}, rec.reason),
        h('td', {class: 'actions'}, open, ' ', one)), detail)
    }
    replace(body,
      h('div', {class: 'toolbar'}, replaySel, replayAll),
      list.length >= 100 ? h('p', {class: 'help', testid: 'rejected-more'}, 'Showing 100 records; there may be more: replay these, or a whole stream, to see the rest.') : null,
      table({caption: `Rejected records of ${current.name}${stream ? `, stream ${stream}` : ''}`, testid: 'rejected-table',
        empty: 'No rejected records.', head: [h('span', {class: 'sr-only'}, 'Select'), 'When', 'Stream', 'Table', 'Run', 'Reason', h('span', {class: 'sr-only'}, 'Actions')],
        rows}))
  }
  await load()
}

// driftPage: schema changes runs made to their tables.
export function driftPage(ctx) {
  const q = ctx.query
  const body = h('div')
  replace(ctx.main, heading('Schema drift'),
    h('p', {class: 'help'}, 'Changes runs made to their tables as the data changed shape: new columns, widened types.'),
    h('form', {class: 'filters', 'aria-label': 'Filter drift', onsubmit: (e) => e.preventDefault()},
      h('label', {for: 'd-pipeline'}, 'Pipeline'),
      h('input', {id: 'd-pipeline', testid: 'drift-pipeline', value: q.get('pipeline') || '',
        onchange: (e) => ctx.go(route(['drift'], {pipeline: e.target.value}))})),
    body)
  ctx.poll(async () => {
    const d = await get('/v1/drift', {pipeline: q.get('pipeline'), limit: 200})
    replace(body, table({caption: 'Schema changes, newest first', testid: 'drift-table', empty: 'No schema drift.',
      head: ['When', 'Pipeline', 'Stream', 'Table', 'Change', 'Run'],
      rows: (d.drift || []).map((x) => [ago(x.at), link(['pipelines', x.pipeline], x.pipeline), x.stream,
        h('code', {}, x.table), x.change, x.run_id ? link(['runs', x.run_id], x.run_id) : '—'])}))
  }, 10000)
}

// webhooksPage: each endpoint's counters and its latest deliveries with
// their verification result.
export function webhooksPage(ctx) {
  const body = h('div')
  replace(ctx.main, heading('Webhooks'), body)
  ctx.poll(async () => {
    const w = await get('/v1/webhooks')
    const eps = w.endpoints || []
    if (!eps.length) {
      replace(body, h('p', {class: 'empty', testid: 'webhooks-empty'}, 'No webhook endpoints: add a webhook source to a pipeline.'))
      return
    }
    replace(body, eps.map((ep) => h('section', {class: 'card', testid: `webhook-${ep.path}`, 'aria-label': `Endpoint ${ep.path}`},
      h('h2', {}, h('code', {}, ep.path), ' ', h('span', {class: 'sub'}, link(['pipelines', ep.pipeline], ep.pipeline))),
      h('dl', {class: 'counters'},
        h('div', {}, h('dt', {}, 'Verification'), h('dd', {}, ep.verify || 'none')),
        h('div', {}, h('dt', {}, 'Received'), h('dd', {}, num(ep.received))),
        h('div', {}, h('dt', {}, 'Rejected'), h('dd', {}, num(ep.rejected))),
        h('div', {}, h('dt', {}, 'Applied'), h('dd', {}, num(ep.applied))),
        h('div', {}, h('dt', {}, 'Queued'), h('dd', {}, num(ep.queue_depth)))),
      table({caption: `Latest deliveries to ${ep.path}`, testid: `deliveries-${ep.path}`, empty: 'No deliveries yet.',
        head: ['Received', 'Event', 'Signature', 'Status', 'Reason', 'Stream'],
        rows: (ep.recent || []).map((d) => h('tr', {testid: `delivery-${d.id}`},
          h('td', {}, ago(d.received_at)),
          h('td', {}, d.event_id ? h('code', {}, d.event_id) : '—'),
          h('td', {}, h('span', {class: d.verified ? 'status status-succeeded' : 'status status-failed', testid: `delivery-verified-${d.id}`},
            d.verified ? 'verified' : 'not verified')),
          h('td', {class: 'n'}, d.status),
          h('td', {class: 'reason'}, d.reason || ''),
          h('td', {}, d.stream || '—')))}))))
  }, 5000)
}
