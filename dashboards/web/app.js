// chokepoint dashboard: plain JavaScript over the HTTP API, no dependencies.
// The map is laid out left to right from the entry points (longest-path layers, then
// barycentre ordering within a layer), drawn in SVG with pan and zoom.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';
const SEV_RANK = { none: 0, low: 1, medium: 2, high: 3, critical: 4 };
const state = {
  config: { trace_url: null, refresh_ms: 5000 },
  graph: null, findings: null, operations: [], history: {},
  selected: null, window: '', hideIdle: false, search: '',
  pos: {}, view: null, fetching: false,
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const fmtMs = (ms) => ms == null ? '–' : ms >= 1000 ? (ms / 1000).toFixed(1) + ' s' : ms >= 10 ? Math.round(ms) + ' ms' : ms.toFixed(1) + ' ms';
const pct = (x) => (x * 100).toFixed(0) + '%';

// With api.bearer_token_file set, data needs the token: asked once, kept for the session.
function token() { return sessionStorage.getItem('chokepoint-token'); }
async function getJSON(path) {
  const headers = token() ? { Authorization: 'Bearer ' + token() } : {};
  let r = await fetch(path, { headers });
  if (r.status === 401) {
    const t = window.prompt('This chokepoint needs its API token (api.bearer_token_file):');
    if (t) { sessionStorage.setItem('chokepoint-token', t.trim()); return getJSON(path); }
  }
  if (!r.ok) throw new Error(path + ': ' + r.status);
  return r.json();
}

// ---- data ------------------------------------------------------------------------------

async function refresh() {
  if (state.fetching) return;
  state.fetching = true;
  try {
    let w = state.window ? '?window=' + encodeURIComponent(state.window) : '';
    if (state.window === 'range') {
      const f = Date.parse($('range-from').value), t = Date.parse($('range-to').value);
      if (!(f < t)) { $('summary').textContent = 'pick a past range: from, then to'; return; }
      w = `?from=${f}&to=${t}`;
    }
    const [graph, findings, operations, history] = await Promise.all([
      getJSON('/graph' + w), getJSON('/findings' + w), getJSON('/operations'),
      getJSON('/findings/history'),
    ]);
    state.graph = graph; state.findings = findings; state.operations = operations;
    state.history = Object.fromEntries(history.map((h) => [h.id, h]));
    render();
  } catch (e) {
    $('summary').textContent = 'cannot reach the API: ' + e.message;
  } finally {
    state.fetching = false;
  }
}

function worstFinding(nodeId) {
  let best = null;
  for (const f of state.findings ? state.findings.findings : []) {
    if (f.node_id !== nodeId) continue;
    const k = [f.active ? 1 : 0, SEV_RANK[f.severity], f.score];
    if (!best || k[0] > best.k[0] || (k[0] === best.k[0] && (k[1] > best.k[1] || (k[1] === best.k[1] && k[2] > best.k[2])))) best = { f, k };
  }
  return best ? best.f : null;
}

function render() {
  const g = state.graph, f = state.findings;
  const active = f.findings.filter((x) => x.active).length;
  $('summary').textContent = `${f.window.start.slice(11, 19)}–${f.window.end.slice(11, 19)} UTC · ` +
    `${f.requests} requests · ${g.nodes.length} nodes · ${f.findings.length} findings` + (active ? ` · ${active} active` : '');
  // Redraw the map only when its structure or colours change (a redraw under the pointer
  // loses clicks and hovers); otherwise refresh its numbers in place.
  const sig = JSON.stringify([g.nodes.map((n) => n.id), g.edges.map((e) => e.from_id + '>' + e.to_id),
    g.nodes.map((n) => { const w = worstFinding(n.id); return w ? w.severity + w.active : ''; }), state.hideIdle]);
  if (sig !== state.sig) { state.sig = sig; drawMap(); } else updateLabels();
  renderFindings();
  renderOperations();
  if (state.selected) renderNode(state.selected, false);
}

// ---- layout ----------------------------------------------------------------------------

function layout(nodes, edges) {
  const ids = nodes.map((n) => n.id);
  const out = new Map(ids.map((id) => [id, []]));
  const indeg = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    if (e.from_id === e.to_id || !out.has(e.from_id) || !out.has(e.to_id)) continue;
    out.get(e.from_id).push(e.to_id);
    indeg.set(e.to_id, indeg.get(e.to_id) + 1);
  }
  // Break cycles: a DFS from the entries keeps only forward and cross edges.
  const roots = ids.filter((id) => indeg.get(id) === 0);
  const order = [], colour = new Map(), dag = new Map(ids.map((id) => [id, []]));
  const visit = (start) => {
    const stack = [[start, 0]];
    colour.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const kids = out.get(top[0]);
      if (top[1] < kids.length) {
        const k = kids[top[1]++];
        const c = colour.get(k) || 0;
        if (c === 0) { colour.set(k, 1); dag.get(top[0]).push(k); stack.push([k, 0]); }
        else if (c === 2) dag.get(top[0]).push(k);
      } else { colour.set(top[0], 2); order.push(top[0]); stack.pop(); }
    }
  };
  for (const r of roots) if (!colour.get(r)) visit(r);
  for (const id of ids) if (!colour.get(id)) visit(id);
  const layer = new Map(ids.map((id) => [id, 0]));
  for (const id of order.reverse()) for (const k of dag.get(id)) layer.set(k, Math.max(layer.get(k), layer.get(id) + 1));
  const layers = [];
  for (const id of ids) (layers[layer.get(id)] ||= []).push(id);
  const parents = new Map(ids.map((id) => [id, []]));
  for (const [a, ks] of dag) for (const k of ks) parents.get(k).push(a);
  const y = new Map();
  layers.forEach((l) => l.sort());
  for (let pass = 0; pass < 3; pass++) {
    for (const l of layers) {
      if (!l) continue;
      l.forEach((id, i) => { if (!y.has(id)) y.set(id, i); });
      const bary = (id) => {
        const ps = parents.get(id).filter((p) => y.has(p));
        return ps.length ? ps.reduce((s, p) => s + y.get(p), 0) / ps.length : y.get(id);
      };
      l.sort((a, b) => bary(a) - bary(b) || (a < b ? -1 : 1));
      l.forEach((id, i) => y.set(id, i));
    }
  }
  const pos = {};
  const tallest = Math.max(1, ...layers.map((l) => (l ? l.length : 0)));
  layers.forEach((l, x) => {
    if (!l) return;
    const offset = (tallest - l.length) / 2;
    l.forEach((id, i) => { pos[id] = { x: 60 + x * 230, y: 50 + (i + offset) * 86 }; });
  });
  return pos;
}

// ---- map -------------------------------------------------------------------------------

function nodeWidth(n) {
  return Math.min(190, 110 + 12 * Math.log10(1 + n.requests));
}

function shape(n, w, h, fill) {
  const g = svg('g');
  let s;
  if (n.type === 'database') {
    s = svg('path', { d: `M0,6 a${w / 2},6 0 0,0 ${w},0 v${h - 12} a${w / 2},6 0 0,1 ${-w},0 z M0,6 a${w / 2},6 0 0,1 ${w},0` });
  } else if (n.type === 'messaging') {
    s = svg('path', { d: `M10,0 h${w - 20} l10,${h / 2} l-10,${h / 2} h${-(w - 20)} l-10,${-h / 2} z` });
  } else if (n.type === 'external') {
    s = svg('rect', { width: w, height: h, rx: h / 2, 'stroke-dasharray': '4 3' });
  } else {
    s = svg('rect', { width: w, height: h, rx: 6 });
  }
  s.setAttribute('class', 'node-shape');
  s.setAttribute('fill', fill);
  g.append(s);
  return g;
}

function drawMap() {
  const g = state.graph;
  const map = $('map');
  const nodes = g.nodes.filter((n) => !state.hideIdle || n.requests > 0);
  const shown = new Set(nodes.map((n) => n.id));
  const edges = g.edges.filter((e) => shown.has(e.from_id) && shown.has(e.to_id) && e.from_id !== e.to_id);
  state.pos = layout(nodes, edges);
  map.replaceChildren();
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: 'var(--edge)' }));
  defs.append(marker);
  map.append(defs);
  const root = svg('g', { id: 'viewport' });
  map.append(root);
  const H = 44;
  const byId = Object.fromEntries(nodes.map((n) => [n.id, n]));
  for (const e of edges) {
    const a = state.pos[e.from_id], b = state.pos[e.to_id];
    const wa = nodeWidth(byId[e.from_id]);
    const x1 = a.x + wa, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const back = x2 <= x1;
    const d = back
      ? `M${x1},${y1} C${x1 + 80},${y1 - 70} ${x2 - 80},${y2 - 70} ${x2},${y2}`
      : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    const asyncEdge = e.connection_type === 'messaging_system';
    const p = svg('path', { d, class: 'edge' + (asyncEdge ? ' async' : '') + (e.error_rate > 0.05 ? ' failing' : ''), 'marker-end': 'url(#arrow)' });
    const title = svg('title');
    const lat = e.client_ms || e.server_ms;
    title.textContent = `${e.from} → ${e.to}: ${e.calls} calls, ${pct(e.error_rate)} errors` +
      (lat ? `, p99 ${fmtMs(lat.p99)}` : '') + (e.queue_ms ? `, queue p50 ${fmtMs(e.queue_ms.p50)}` : '');
    p.append(title);
    root.append(p);
    const label = svg('text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle', class: 'edge-label' });
    label.textContent = asyncEdge && e.queue_ms ? `queue ${fmtMs(e.queue_ms.p50)}`
      : `${e.calls} · ${pct(e.error_rate)} err` + (lat ? ` · p99 ${fmtMs(lat.p99)}` : '');
    root.append(label);
  }
  for (const n of nodes) {
    const { x, y } = state.pos[n.id];
    const w = nodeWidth(n);
    const f = worstFinding(n.id);
    const sev = f ? f.severity : 'none';
    const grp = svg('g', { transform: `translate(${x},${y})`, 'data-id': n.id, 'data-name': n.name, 'data-severity': sev,
      class: 'node' + (f && f.active ? ' active' : '') + (state.selected === n.id ? ' selected' : '') +
        (state.search && n.name.toLowerCase().includes(state.search) ? ' match' : '') });
    grp.append(shape(n, w, H, `var(--${sev})`));
    const name = svg('text', { x: w / 2, y: 19, 'text-anchor': 'middle' });
    name.textContent = n.name.length > 26 ? n.name.slice(0, 25) + '…' : n.name;
    const sub = svg('text', { x: w / 2, y: 34, 'text-anchor': 'middle', class: 'edge-label node-sub' });
    sub.textContent = `${n.requests} req` + (n.latency_ms ? ` · p99 ${fmtMs(n.latency_ms.p99)}` : '');
    const inst = svg('text', { x: w - 4, y: -4, 'text-anchor': 'end', class: 'badge-text' });
    inst.textContent = n.instances == null ? '×?' : '×' + n.instances;
    const title = svg('title');
    title.textContent = `${n.name} (${n.type}), ${n.instances == null ? 'instances unknown' : n.instances + ' serving'}` + (f ? `\n${f.severity} ${f.kind}: ${f.summary}` : '');
    grp.append(name, sub, inst, title);
    root.append(grp);
  }
  // Until the user pans or zooms, the map follows the graph as nodes appear.
  if (!state.view || !state.userMoved) fit(); else applyView();
}

function updateLabels() {
  for (const n of state.graph.nodes) {
    const g = document.querySelector(`#map .node[data-id="${CSS.escape(n.id)}"]`);
    const sub = g && g.querySelector('.node-sub');
    if (sub) sub.textContent = `${n.requests} req` + (n.latency_ms ? ` · p99 ${fmtMs(n.latency_ms.p99)}` : '');
  }
}

function bounds() {
  const xs = Object.values(state.pos);
  if (!xs.length) return { x: 0, y: 0, w: 800, h: 500 };
  const minX = Math.min(...xs.map((p) => p.x)) - 40, minY = Math.min(...xs.map((p) => p.y)) - 40;
  const maxX = Math.max(...xs.map((p) => p.x)) + 240, maxY = Math.max(...xs.map((p) => p.y)) + 90;
  return { x: minX, y: minY, w: maxX - minX, h: maxY - minY };
}
function fit() {
  // The whole map, unless that makes names unreadable: then its left part at 3/4 scale
  // (pan or zoom out for the rest).
  const b = bounds(), r = $('map').getBoundingClientRect();
  const scale = Math.min(r.width / b.w, r.height / b.h);
  if (r.width > 0 && scale < 0.75) {
    const w = r.width / 0.75, h = r.height / 0.75;
    state.view = { x: b.x, y: b.y + b.h / 2 - h / 2, w, h };
  } else {
    state.view = b;
  }
  applyView();
}
function applyView() {
  const v = state.view;
  $('map').setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
}
function zoom(factor, cx, cy) {
  const v = state.view;
  if (cx == null) { cx = v.x + v.w / 2; cy = v.y + v.h / 2; }
  state.view = { x: cx - (cx - v.x) * factor, y: cy - (cy - v.y) * factor, w: v.w * factor, h: v.h * factor };
  applyView();
}

function installPanZoom() {
  const map = $('map');
  let drag = null;
  map.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const r = map.getBoundingClientRect(), v = state.view;
    const cx = v.x + (ev.clientX - r.left) / r.width * v.w, cy = v.y + (ev.clientY - r.top) / r.height * v.h;
    state.userMoved = true;
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
  }, { passive: false });
  map.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, y: ev.clientY, v: { ...state.view } }; map.classList.add('dragging'); });
  window.addEventListener('mouseup', () => { drag = null; map.classList.remove('dragging'); });
  window.addEventListener('mousemove', (ev) => {
    if (!drag) return;
    if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3) state.userMoved = true;
    const r = map.getBoundingClientRect();
    state.view = { ...drag.v, x: drag.v.x - (ev.clientX - drag.x) / r.width * drag.v.w, y: drag.v.y - (ev.clientY - drag.y) / r.height * drag.v.h };
    applyView();
  });
  $('zoom-in').onclick = () => { state.userMoved = true; zoom(1 / 1.3); };
  $('zoom-out').onclick = () => { state.userMoved = true; zoom(1.3); };
  $('zoom-fit').onclick = () => { state.userMoved = false; fit(); };
}

// ---- findings --------------------------------------------------------------------------

function traceLink(id) {
  const t = state.config.trace_url;
  return t ? el('a', { href: t.replace('{trace_id}', id), target: '_blank', rel: 'noopener' }, id.slice(0, 12) + '…')
    : el('code', { title: id }, id.slice(0, 12) + '…');
}

function evidenceTable(ev) {
  const rows = [];
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, prefix + k + '.');
      else if (Array.isArray(v)) rows.push([prefix + k, v.map((x) => typeof x === 'object' ? Object.values(x).join(' ') : x).join('; ')]);
      else rows.push([prefix + k, v]);
    }
  };
  walk(ev, '');
  return el('table', { class: 'kv' }, rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, String(v)))));
}

function keyNumbers(f) {
  const e = f.evidence, out = [];
  if (f.kind === 'bottleneck') {
    out.push(`cause ${e.cause}`, `share ${pct(e.critical_path_share)}`);
    if (e.change) out.push(`${e.change.ratio}× vs baseline`);
    if (e.waiting) out.push(`waits ${fmtMs(e.waiting.gap_p50_ms)} (typical ${fmtMs(e.waiting.typical_gap_ms)})`);
    if (e.what_if_2x_faster) out.push(`2× faster saves ${fmtMs(e.what_if_2x_faster.saves_p50_ms)} p50 / ${fmtMs(e.what_if_2x_faster.saves_p99_ms)} p99`);
    if (e.backlog) out.push(`queue p99 ${fmtMs(e.backlog.queue_delay_ms.p99)}`);
  } else {
    if (f.failed_requests != null) {
      const when = f.since ? ` since ${new Date(f.since).toLocaleTimeString()}` : '';
      const end = f.until ? `, ended ${new Date(f.until).toLocaleTimeString()}` : (f.since ? ', still failing' : '');
      out.push(`${f.failed_requests} requests failed (${pct(f.failed_share)})${when}${end}`);
    }
    out.push(`loss fails ${pct(e.requests_lost_share)} of requests`, `reach ${pct(e.reach)}`,
      e.instances == null ? 'instances unknown' : `${e.instances} serving`);
    if (e.lost_redundancy) out.push('lost a replica');
    if (e.hardness != null) out.push(`hardness ${pct(e.hardness)}${e.fallback_seen ? ' (fallback seen)' : ''}`);
    else out.push('never seen failing');
    out.push(`blast radius ${pct(e.blast_radius)}`);
    if (e.calls_vanished_vs_baseline) out.push(`${pct(e.calls_vanished_vs_baseline.rate)} of requests lost calls`);
  }
  return out.join(' · ');
}

function findingCard(f) {
  const h = state.history[f.id];
  return el('div', { class: `finding ${f.severity}` + (f.active ? ' active' : ''), 'data-finding': f.id },
    el('h3', {},
      el('span', { class: `badge sev-${f.severity}` }, f.severity),
      f.active ? el('span', { class: 'badge active' }, 'active') : null,
      el('span', {}, f.kind === 'spof' ? 'single point of failure' : 'bottleneck'),
      el('a', { class: 'node-link', onclick: () => selectNode(f.node_id) }, f.node)),
    el('div', {}, f.summary),
    el('div', { class: 'muted' }, keyNumbers(f)),
    el('div', { class: 'muted' }, `score ${f.score.toFixed(2)} · confidence ${f.confidence}` + (h ? ` · first seen ${h.first_seen.slice(11, 19)} UTC` : '')),
    el('div', { class: 'cure' }, el('b', {}, 'Cure: '), f.remediation),
    f.exemplar_trace_ids.length ? el('div', { class: 'muted' }, 'traces: ', ...f.exemplar_trace_ids.flatMap((t) => [traceLink(t), ' '])) : null,
    el('details', {}, el('summary', {}, 'evidence'), evidenceTable(f.evidence)));
}

function renderFindings() {
  const f = state.findings;
  const box = $('tab-findings');
  const kids = [];
  for (const n of f.notes || []) kids.push(el('p', { class: 'muted' }, n));
  if (!f.findings.length) kids.push(el('p', {}, 'No findings: nothing stands out as a bottleneck or a single point of failure.'));
  for (const x of f.findings) kids.push(findingCard(x));
  if ((f.background_operations || []).length) {
    kids.push(el('h4', {}, 'Background work (not user requests)'),
      el('ul', { class: 'plain' }, f.background_operations.map((b) => el('li', {}, `${b.operation}: ${b.traces} traces, p50 ${fmtMs(b.p50_ms)}`))));
  }
  box.replaceChildren(...kids);
}

// ---- entry operations ------------------------------------------------------------------

const PALETTE = ['#4f86c6', '#f18f01', '#2e9e4f', '#d7263d', '#8e6bbf', '#c79a2a', '#3aa6a6', '#a05a2c', '#6b7280'];
function colourOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}
function stack(parts, total) {
  return el('div', { class: 'stack' }, parts.map((p) => el('span', { style: `width:${(100 * p.ms / Math.max(total, 1e-9)).toFixed(2)}%;background:${colourOf(p.node)}`, title: `${p.node}: ${fmtMs(p.ms)}` })));
}
function renderOperations() {
  const box = $('tab-operations');
  const kids = [];
  for (const op of state.operations) {
    const now = op.breakdown.map((b) => ({ node: b.node, ms: b.ms_per_request }));
    const base = op.breakdown.filter((b) => b.baseline_ms_per_request != null).map((b) => ({ node: b.node, ms: b.baseline_ms_per_request }));
    const max = Math.max(op.e2e_mean_ms, op.baseline_e2e_mean_ms || 0);
    kids.push(el('div', { class: 'op' },
      el('b', {}, op.operation),
      el('div', { class: 'muted' }, `${op.rate_per_s}/s · p50 ${fmtMs(op.e2e_p50_ms)} · p99 ${fmtMs(op.e2e_p99_ms)} · ${op.error_pct}% errors`),
      el('div', { class: 'stack-label' }, `now: ${fmtMs(op.e2e_mean_ms)} per request on the critical path`), stack(now, max),
      base.length ? [el('div', { class: 'stack-label' }, `baseline: ${fmtMs(op.baseline_e2e_mean_ms)}`), stack(base, max)] : null,
      el('div', { class: 'stack-label' }, op.breakdown.slice(0, 6).map((b) => `${b.node} ${fmtMs(b.ms_per_request)}`).join(' · '))));
  }
  if (!kids.length) kids.push(el('p', { class: 'muted' }, 'No entry operations in the window yet.'));
  box.replaceChildren(...kids);
}

// ---- node panel ------------------------------------------------------------------------

function lineChart(points, series, unit) {
  const W = 400, H = 90, P = 24;
  const s = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
  if (!points.length) return s;
  const xs = points.map((p) => p.t);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const ymax = Math.max(1e-9, ...series.flatMap(([k]) => points.map((p) => p[k] || 0)));
  const X = (t) => P + (W - 2 * P) * (t - x0) / (x1 - x0), Y = (v) => H - 14 - (H - 24) * (v / ymax);
  s.append(svg('line', { x1: P, y1: H - 14, x2: W - P, y2: H - 14, stroke: 'var(--line)' }));
  const top = svg('text', { x: 2, y: 10, class: 'edge-label' });
  top.textContent = ymax.toFixed(ymax < 10 ? 2 : 0) + ' ' + unit;
  s.append(top);
  series.forEach(([k, colour]) => {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${X(p.t).toFixed(1)},${Y(p[k] || 0).toFixed(1)}`).join(' ');
    s.append(svg('path', { d, stroke: colour, fill: 'none', 'stroke-width': 1.6 }));
    if (points.length === 1) s.append(svg('circle', { cx: X(points[0].t), cy: Y(points[0][k] || 0), r: 3, fill: colour }));
  });
  return s;
}

async function renderNode(id, switchTab = true) {
  const box = $('tab-node');
  if (switchTab) showTab('node');
  let d, series;
  try {
    [d, series] = await Promise.all([getJSON('/nodes/' + encodeURIComponent(id)), getJSON('/series/nodes/' + encodeURIComponent(id)).catch(() => ({ points: [] }))]);
  } catch (e) {
    box.replaceChildren(el('p', { class: 'muted' }, 'This node is not in the current window.'));
    return;
  }
  const n = d.node, pts = series.points;
  const bottleneck = d.findings.find((f) => f.kind === 'bottleneck');
  const whatIf = bottleneck && bottleneck.evidence.what_if_2x_faster;
  box.replaceChildren(
    el('h3', { id: 'node-title' }, n.name, ' ', el('span', { class: 'muted' }, `(${n.type})`)),
    el('table', { class: 'kv' },
      el('tr', {}, el('td', {}, 'instances serving'), el('td', {}, n.instances == null ? 'unknown' : n.instances)),
      el('tr', {}, el('td', {}, 'seen in window'), el('td', {}, n.instances_seen == null ? 'unknown' : n.instances_seen)),
      el('tr', {}, el('td', {}, 'instances'), el('td', {}, n.instance_names.join(', ') || '–')),
      el('tr', {}, el('td', {}, 'requests'), el('td', {}, `${n.requests} (${pct(n.error_rate)} errors)`)),
      el('tr', {}, el('td', {}, 'latency'), el('td', {}, n.latency_ms ? `p50 ${fmtMs(n.latency_ms.p50)} · p99 ${fmtMs(n.latency_ms.p99)}` : '–')),
      whatIf ? el('tr', {}, el('td', {}, 'if 2× faster'), el('td', {}, `users save ${fmtMs(whatIf.saves_p50_ms)} at p50, ${fmtMs(whatIf.saves_p99_ms)} at p99`)) : null),
    el('div', { class: 'chart-title' }, 'requests / s'), lineChart(pts, [['requests_per_s', '#4f86c6']], '/s'),
    el('div', { class: 'chart-title' }, 'latency p50 (blue) and p99 (orange)'), lineChart(pts, [['p50_ms', '#4f86c6'], ['p99_ms', '#f18f01']], 'ms'),
    el('div', { class: 'chart-title' }, 'errors %'), lineChart(pts, [['error_pct', '#d7263d']], '%'),
    el('div', { class: 'chart-title' }, 'critical-path share'), lineChart(pts, [['critical_path_share', '#2e9e4f']], ''),
    el('h4', {}, 'Callers'), el('ul', { class: 'plain' }, d.callers.map((e) => el('li', {}, el('a', { class: 'node-link', onclick: () => selectNode(e.from_id) }, e.from), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Callees'), el('ul', { class: 'plain' }, d.callees.map((e) => el('li', {}, el('a', { class: 'node-link', onclick: () => selectNode(e.to_id) }, e.to), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Findings'), d.findings.length ? el('div', {}, d.findings.map(findingCard)) : el('p', { class: 'muted' }, 'none'),
    d.exemplar_trace_ids.length ? el('div', { class: 'muted' }, 'slowest traces: ', ...d.exemplar_trace_ids.flatMap((t) => [traceLink(t), ' '])) : null);
}

function selectNode(id) {
  state.selected = id;
  document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('selected', g.dataset.id === id));
  renderNode(id);
}

// ---- ingest ----------------------------------------------------------------------------

async function renderHealth() {
  const h = await getJSON('/health').catch(() => null);
  if (!h) return;
  $('tab-health').replaceChildren(el('table', { class: 'kv' }, Object.entries(h).map(([k, v]) => el('tr', {}, el('td', {}, k.replaceAll('_', ' ')), el('td', {}, String(v))))));
}

// ---- wiring ----------------------------------------------------------------------------

function showTab(name) {
  document.querySelectorAll('aside nav button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('hidden', t.id !== 'tab-' + name));
  if (name === 'health') renderHealth();
}

function live() {
  const ind = $('live');
  try {
    // EventSource can't send a token: with one, the page polls instead.
    if (token()) throw new Error('polling');
    const es = new EventSource('/events');
    es.addEventListener('refresh', () => { ind.classList.add('on'); if (!state.window) refresh(); });
    es.onerror = () => ind.classList.remove('on');
  } catch (e) { /* no EventSource: poll */ }
  setInterval(() => { if (state.window || !ind.classList.contains('on')) refresh(); }, Math.max(2000, state.config.refresh_ms));
}

async function main() {
  const dark = localStorage.getItem('chokepoint-theme');
  if (dark) document.documentElement.classList.add(dark);
  $('theme').onclick = () => {
    const root = document.documentElement;
    const next = root.classList.contains('dark') ? 'light' : 'dark';
    root.classList.remove('dark', 'light'); root.classList.add(next);
    localStorage.setItem('chokepoint-theme', next);
  };
  document.querySelectorAll('aside nav button').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab)));
  $('window').onchange = (e) => {
    state.window = e.target.value; state.view = null; state.sig = null;
    $('range').classList.toggle('hidden', state.window !== 'range');
    if (state.window === 'range' && !$('range-from').value) {
      const local = (d) => new Date(d - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      $('range-from').value = local(Date.now() - 3600e3); $('range-to').value = local(Date.now() - 1800e3);
    }
    refresh();
  };
  $('range-from').onchange = $('range-to').onchange = () => { state.sig = null; refresh(); };
  $('hide-idle').onchange = (e) => { state.hideIdle = e.target.checked; state.view = null; state.sig = null; render(); };
  $('search').oninput = (e) => {
    state.search = e.target.value.trim().toLowerCase();
    document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('match', !!state.search && g.dataset.name.toLowerCase().includes(state.search)));
    const hit = state.graph && state.graph.nodes.find((n) => state.search && n.name.toLowerCase().includes(state.search));
    if (hit && state.pos[hit.id]) {
      const p = state.pos[hit.id], v = state.view;
      state.view = { ...v, x: p.x + 80 - v.w / 2, y: p.y + 22 - v.h / 2 };
      applyView();
    }
  };
  // One listener for every node, present and future: a redraw cannot lose it.
  $('map').addEventListener('click', (ev) => {
    const g = ev.target.closest && ev.target.closest('.node');
    if (g) selectNode(g.dataset.id);
  });
  installPanZoom();
  state.config = await getJSON('/ui-config').catch(() => state.config);
  await refresh();
  live();
}

main();
