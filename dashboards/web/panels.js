// The side panels: findings, entry operations, a node's details, ingest health.
import { state, getJSON, capacityOf, headroomBand } from './api.js';
import { $, el, svg, fmtMs, fmtRate, pct } from './format.js';

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

export function renderFindings() {
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

const PALETTE = ['#4f86c6', '#f18f01', '#2e9e4f', '#d7263d', '#8e6bbf', '#c79a2a', '#3aa6a6', '#a05a2c', '#6b7280'];

function colourOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

function stack(parts, total) {
  return el('div', { class: 'stack' }, parts.map((p) => el('span', { style: `width:${(100 * p.ms / Math.max(total, 1e-9)).toFixed(2)}%;background:${colourOf(p.node)}`, title: `${p.node}: ${fmtMs(p.ms)}` })));
}

export function renderOperations() {
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

export async function renderNode(id, switchTab = true) {
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
      whatIf ? el('tr', {}, el('td', {}, 'if 2× faster'), el('td', {}, `users save ${fmtMs(whatIf.saves_p50_ms)} at p50, ${fmtMs(whatIf.saves_p99_ms)} at p99`)) : null,
      ...capacityRows(id)),
    capacityWhatIf(id),
    el('div', { class: 'chart-title' }, 'requests / s'), lineChart(pts, [['requests_per_s', '#4f86c6']], '/s'),
    el('div', { class: 'chart-title' }, 'latency p50 (blue) and p99 (orange)'), lineChart(pts, [['p50_ms', '#4f86c6'], ['p99_ms', '#f18f01']], 'ms'),
    el('div', { class: 'chart-title' }, 'errors %'), lineChart(pts, [['error_pct', '#d7263d']], '%'),
    el('div', { class: 'chart-title' }, 'critical-path share'), lineChart(pts, [['critical_path_share', '#2e9e4f']], ''),
    el('h4', {}, 'Callers'), el('ul', { class: 'plain' }, d.callers.map((e) => el('li', {}, el('a', { class: 'node-link', onclick: () => selectNode(e.from_id) }, e.from), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Callees'), el('ul', { class: 'plain' }, d.callees.map((e) => el('li', {}, el('a', { class: 'node-link', onclick: () => selectNode(e.to_id) }, e.to), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Findings'), d.findings.length ? el('div', {}, d.findings.map(findingCard)) : el('p', { class: 'muted' }, 'none'),
    d.exemplar_trace_ids.length ? el('div', { class: 'muted' }, 'slowest traces: ', ...d.exemplar_trace_ids.flatMap((t) => [traceLink(t), ' '])) : null);
}

// Rate, capacity and headroom, with how the capacity was found.
function capacityRows(id) {
  const c = capacityOf(id);
  if (!c) return [];
  const rate = fmtRate;
  return [
    el('tr', {}, el('td', {}, 'rate'), el('td', {}, `${rate(c.rate_rps)} asked, ${rate(c.completed_rps)} completed`)),
    el('tr', {}, el('td', {}, 'capacity'), el('td', { id: 'node-capacity' }, c.capacity_rps == null ? 'unknown'
      : `${rate(c.capacity_rps)} (${c.limit} limit, ${c.confidence} confidence)`)),
    el('tr', {}, el('td', {}, 'headroom'), el('td', { id: 'node-headroom', class: 'headroom ' + headroomBand(c.headroom) },
      c.headroom == null ? '–' : `${c.headroom.toFixed(2)}×` + (c.queue_growing ? ' · its queue grows' : ''))),
    el('tr', {}, el('td', {}, 'how'), el('td', { class: 'muted' }, c.reason)),
  ];
}

// What if entry traffic were N× today's: this node's load and expected latency (GET /capacity?load=N).
function capacityWhatIf(id) {
  const c = capacityOf(id);
  if (!c || c.capacity_rps == null) return null;
  const out = el('span', { id: 'whatif-result', class: 'muted' });
  const input = el('input', { id: 'whatif-load', type: 'number', min: '0.1', step: '0.1', value: '2' });
  const run = async () => {
    const load = Number(input.value);
    if (!(load > 0)) return;
    const d = await getJSON('/capacity?load=' + encodeURIComponent(load)).catch(() => null);
    const me = d && d.what_if ? d.what_if.find((n) => n.node_id === id) : null;
    if (!me) { out.textContent = 'no answer'; return; }
    const over = d.what_if.filter((n) => n.over_capacity).map((n) => n.node);
    out.textContent = `${me.rate_rps.toFixed(1)}/s of ${me.capacity_rps.toFixed(1)}/s (${pct(me.utilisation)}): ` +
      (me.expected_latency_ms == null ? 'over capacity, its queue grows' : `expected latency ${fmtMs(me.expected_latency_ms)}`) +
      (over.length ? ` · over capacity at ${load}×: ${over.join(', ')}` : ` · no node over capacity at ${load}×`);
  };
  input.onchange = run;
  run();
  return el('div', { class: 'whatif' }, 'what if traffic were ', input, '× today\'s: ', out);
}

export function selectNode(id) {
  state.selected = id;
  document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('selected', g.dataset.id === id));
  renderNode(id);
}

async function renderHealth() {
  const h = await getJSON('/health').catch(() => null);
  if (!h) return;
  $('tab-health').replaceChildren(el('table', { class: 'kv' }, Object.entries(h).map(([k, v]) => el('tr', {}, el('td', {}, k.replaceAll('_', ' ')), el('td', {}, String(v))))));
}

export function showTab(name) {
  document.querySelectorAll('aside nav button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('hidden', t.id !== 'tab-' + name));
  if (name === 'health') renderHealth();
}
