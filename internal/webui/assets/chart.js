// The dashboard's records-per-second chart: inline SVG from the
// /v1/throughput points, no library.

import {h, s, num} from './dom.js'

const W = 640
const H = 160
const PAD = {l: 48, r: 12, t: 12, b: 24}

function clock(ms) {
  const d = new Date(ms)
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`
}

function rate(v) {
  return v >= 100 ? num(Math.round(v)) : num(Math.round(v * 10) / 10)
}

// throughputChart draws points [{t, records_per_s}] over the last minutes.
export function throughputChart(points, minutes) {
  const pts = (points || [])
    .map((p) => ({t: Date.parse(p.t), v: Number(p.records_per_s) || 0}))
    .filter((p) => !Number.isNaN(p.t))
    .sort((a, b) => a.t - b.t)
  const end = Math.max(Date.now(), pts.length ? pts[pts.length - 1].t : 0)
  const start = Math.min(end - minutes * 60000, pts.length ? pts[0].t : end)
  const peak = pts.reduce((m, p) => Math.max(m, p.v), 0)
  const top = peak > 0 ? peak * 1.1 : 1
  const x = (t) => PAD.l + ((t - start) / Math.max(1, end - start)) * (W - PAD.l - PAD.r)
  const y = (v) => PAD.t + (1 - v / top) * (H - PAD.t - PAD.b)
  const latest = pts.length ? pts[pts.length - 1].v : 0
  const summary = pts.length
    ? `Records per second over the last ${minutes} minutes: peak ${rate(peak)}, latest ${rate(latest)}.`
    : `No records synced in the last ${minutes} minutes.`

  const line = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')
  const area = pts.length
    ? `M${x(pts[0].t).toFixed(1)},${y(0)} L${line.replaceAll(' ', ' L')} L${x(pts[pts.length - 1].t).toFixed(1)},${y(0)} Z`
    : ''
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': summary, testid: 'throughput-chart', 'data-points': pts.length},
    s('title', {}, summary),
    [0, 0.5, 1].map((f) => s('line', {x1: PAD.l, x2: W - PAD.r, y1: y(top * f), y2: y(top * f), class: 'grid'})),
    s('text', {x: PAD.l - 6, y: y(0) + 4, class: 'axis', 'text-anchor': 'end'}, '0'),
    s('text', {x: PAD.l - 6, y: y(top) + 8, class: 'axis', 'text-anchor': 'end'}, rate(top)),
    s('text', {x: PAD.l, y: H - 6, class: 'axis'}, clock(start)),
    s('text', {x: W - PAD.r, y: H - 6, class: 'axis', 'text-anchor': 'end'}, clock(end)),
    area && s('path', {d: area, class: 'area'}),
    pts.length > 1 && s('polyline', {points: line, class: 'line'}),
    pts.map((p) => s('circle', {cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 2.5, class: 'dot'},
      s('title', {}, `${clock(p.t)}: ${rate(p.v)} records/s`))))
  return h('figure', {class: 'chart-box'}, svg, h('figcaption', {testid: 'throughput-summary'}, summary))
}
