// The side panels: findings with their evidence drawn, entry operations, a node's details
// and charts, the ingest board.
import { state, getJSON, capacityOf, headroomBand, saveUrl } from './api.js';
import { $, el, fmtMs, fmtRate, pct } from './format.js';
import { timeChart, scatterChart, barsChart, legend } from './chart.js';

const BLUE = '#3f7fc4', ORANGE = '#e07b00', RED = '#d7263d', GREEN = '#2e9e4f', GREY = '#8a919c';

function traceLink(id) {
  const t = state.config.trace_url;
  // Without a trace UI configured, the trace's critical path as chokepoint computed it.
  const href = t ? t.replace('{trace_id}', id) : '/traces/' + id + '/critical-path';
  return el('a', { href, target: '_blank', rel: 'noopener', class: 'trace-link', title: id }, id.slice(0, 12) + '…');
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
    if (e.capacity) out.push(`capacity ${fmtRate(e.capacity.capacity_rps)}, headroom ${e.capacity.headroom}×`);
  } else {
    if (f.failed_requests != null) {
      const when = f.since ? ` since ${f.since.slice(11, 19)} UTC` : '';
      const end = f.until ? `, ended ${f.until.slice(11, 19)} UTC` : (f.since ? ', still failing' : '');
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

// When the baseline ends and the window starts (ms), if there is a baseline.
function baselineSpan() {
  const f = state.findings;
  if (!f || !f.baseline) return null;
  return { from: Date.parse(f.baseline.window.start), to: Date.parse(f.window.start) };
}

// Where each of a node's findings started: the failure's start, else when first seen.
function findingMarks(nodeId) {
  return (state.findings ? state.findings.findings : []).filter((f) => f.node_id === nodeId).map((f) => {
    const h = state.history[f.id];
    const t = f.since ? Date.parse(f.since) : h ? Date.parse(h.first_seen) : null;
    return t == null ? null : { t, label: `${f.severity} ${f.kind}` };
  }).filter(Boolean);
}

const seriesCache = new Map();
async function nodeSeries(id) {
  const hit = seriesCache.get(id);
  if (hit && hit.at === state.refreshedAt) return hit.points;
  const s = await getJSON('/series/nodes/' + encodeURIComponent(id)).catch(() => ({ points: [], bucket_seconds: 60 }));
  const points = s.points.map((p) => ({ ...p, failed: Math.round(p.requests * p.error_pct / 100) }));
  points.bucketMs = (s.bucket_seconds || 60) * 1000;
  seriesCache.set(id, { at: state.refreshedAt, points });
  return points;
}

const chartWidth = () => Math.max(260, ($('tab-findings').clientWidth || $('tab-node').clientWidth || 420) - 30);

// The evidence drawn: share of the critical path now against the baseline, latency
// against load, failures over time, capacity used.
async function drawEvidence(f, box) {
  const e = f.evidence, kids = [];
  if (f.kind === 'bottleneck') {
    const rows = [{ label: 'now', value: e.critical_path_share, colour: BLUE }];
    if (e.change) {
      const base = e.change.baseline_ms_per_request / Math.max(1e-9, e.change.baseline_e2e_ms_per_request);
      rows.push({ label: 'baseline', value: base, colour: GREY });
    }
    kids.push(el('div', { class: 'chart-title' }, 'share of the critical path'), barsChart(rows, 'share', 'share'),
      legend(rows.map((r) => ({ label: r.label === 'now' ? 'current window' : 'baseline window', colour: r.colour }))));
    if (e.change) {
      kids.push(el('div', { class: 'chart-title' }, 'its time on the critical path, per request'),
        barsChart([{ label: 'now', value: e.change.now_ms_per_request, colour: BLUE }, { label: 'baseline', value: e.change.baseline_ms_per_request, colour: GREY }], 'ms', 'change'));
    }
    if (e.saturation || e.cause === 'capacity') {
      const pts = await nodeSeries(f.node_id);
      kids.push(el('div', { class: 'chart-title' }, 'latency p50 against load (one dot per time bucket)'),
        scatterChart(pts, 'requests_per_s', 'p50_ms', { xUnit: '/s', yUnit: 'ms', xLabel: 'requests / s', width: chartWidth(), id: 'saturation' }));
    }
    if (e.capacity && e.capacity.capacity_rps) {
      kids.push(el('div', { class: 'chart-title' }, 'rate against capacity'),
        barsChart([{ label: 'rate', value: e.capacity.rate_rps, colour: ORANGE }, { label: 'capacity', value: e.capacity.capacity_rps, colour: GREEN }], '/s', 'capacity'));
    }
  }
  if (f.kind === 'spof' || f.active) {
    const pts = await nodeSeries(f.node_id);
    const marks = [];
    if (f.since) marks.push({ t: Date.parse(f.since), label: 'failing since' });
    if (f.until) marks.push({ t: Date.parse(f.until), label: 'ended' });
    kids.push(el('div', { class: 'chart-title' }, 'requests failed at this node, per time bucket'),
      timeChart(pts, [{ key: 'failed', label: 'failed', colour: RED }], { unit: 'count', width: chartWidth(), bucketMs: pts.bucketMs, marks, baseline: baselineSpan(), id: 'failures' }));
  }
  if (f.exemplar_trace_ids.length) kids.push(el('div', { class: 'muted' }, 'example traces: ', ...f.exemplar_trace_ids.flatMap((t) => [traceLink(t), ' '])));
  kids.push(el('details', {}, el('summary', {}, 'all evidence'), evidenceTable(e)));
  box.replaceChildren(...kids);
}

function findingCard(f) {
  const h = state.history[f.id];
  const open = state.finding === f.id;
  const detail = el('div', { class: 'evidence' + (open ? '' : ' hidden') });
  const card = el('div', { class: `finding ${f.severity}` + (f.active ? ' active' : '') + (open ? ' open' : ''), 'data-finding': f.id },
    el('h3', {},
      el('span', { class: `badge sev-${f.severity}` }, f.severity),
      f.active ? el('span', { class: 'badge active' }, 'active') : null,
      el('span', {}, f.kind === 'spof' ? 'single point of failure' : 'bottleneck'),
      el('a', { class: 'node-link', href: '#', onclick: (ev) => { ev.preventDefault(); selectNode(f.node_id); } }, f.node)),
    el('div', {}, f.summary),
    el('div', { class: 'muted' }, keyNumbers(f)),
    el('div', { class: 'muted' }, `score ${f.score.toFixed(2)} · confidence ${f.confidence}` + (h ? ` · first seen ${h.first_seen.slice(11, 19)} UTC` : '')),
    el('div', { class: 'cure' }, el('b', {}, 'Cure: '), f.remediation),
    el('button', { class: 'evidence-toggle', onclick: () => selectFinding(open ? null : f.id) }, open ? 'hide evidence' : 'show evidence'),
    detail);
  if (open) drawEvidence(f, detail);
  return card;
}

export function selectFinding(id) {
  state.finding = id;
  if (id) state.tab = 'findings';
  saveUrl();
  renderFindings();
  if (id) showTab('findings');
  const card = id && document.querySelector(`[data-finding="${CSS.escape(id)}"]`);
  if (card) card.scrollIntoView({ block: 'nearest' });
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

// Distinct colours, given to nodes in the order they first appear in the breakdowns, so one
// node keeps its colour across operations.
const PALETTE = ['#3f7fc4', '#e07b00', '#2e9e4f', '#d7263d', '#8e6bbf', '#b8860b', '#2a9d9d', '#a0522d', '#c2185b', '#5c6bc0', '#7cb342', '#6d4c41'];
const OTHER = '#9aa1ad';

function colours(ops) {
  const by = new Map();
  for (const op of ops) for (const b of op.breakdown) if (!by.has(b.node_id) && by.size < PALETTE.length) by.set(b.node_id, PALETTE[by.size]);
  return by;
}

function stack(parts, total, colourOf) {
  return el('div', { class: 'stack' }, parts.map((p) => el('span', {
    style: `width:${(100 * p.ms / Math.max(total, 1e-9)).toFixed(2)}%;background:${colourOf.get(p.node_id) || OTHER}`,
    title: `${p.node}: ${fmtMs(p.ms)} per request`, 'data-node-id': p.node_id, class: 'segment',
    onclick: () => selectNode(p.node_id),
  })));
}

export function renderOperations() {
  const box = $('tab-operations');
  const kids = [];
  const cmap = colours(state.operations);
  for (const op of state.operations) {
    const now = op.breakdown.map((b) => ({ node: b.node, node_id: b.node_id, ms: b.ms_per_request }));
    const base = op.breakdown.filter((b) => b.baseline_ms_per_request != null).map((b) => ({ node: b.node, node_id: b.node_id, ms: b.baseline_ms_per_request }));
    const max = Math.max(op.e2e_mean_ms, op.baseline_e2e_mean_ms || 0);
    kids.push(el('div', { class: 'op' },
      el('b', {}, op.operation),
      el('div', { class: 'muted' }, `${fmtRate(op.rate_per_s)} · p50 ${fmtMs(op.e2e_p50_ms)} · p99 ${fmtMs(op.e2e_p99_ms)} · ${op.error_pct}% errors`),
      el('div', { class: 'stack-label' }, `now: ${fmtMs(op.e2e_mean_ms)} per request on the critical path`), stack(now, max, cmap),
      base.length ? [el('div', { class: 'stack-label' }, `baseline: ${fmtMs(op.baseline_e2e_mean_ms)}`), stack(base, max, cmap)] : null,
      el('div', { class: 'chart-legend' }, op.breakdown.map((b) => el('a', { href: '#', class: 'legend-node', onclick: (ev) => { ev.preventDefault(); selectNode(b.node_id); } },
        el('i', { class: 'swatch', style: `background:${cmap.get(b.node_id) || OTHER}` }), `${b.node} ${fmtMs(b.ms_per_request)}`)))));
  }
  if (!kids.length) kids.push(el('p', { class: 'muted' }, 'No entry operations in the window yet.'));
  box.replaceChildren(...kids);
}

export async function renderNode(id, switchTab = true) {
  const box = $('tab-node');
  if (switchTab) showTab('node');
  let d;
  try {
    d = await getJSON('/nodes/' + encodeURIComponent(id));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'muted' }, 'This node is not in the current window.'));
    return;
  }
  const pts = await nodeSeries(id);
  const n = d.node;
  const bottleneck = d.findings.find((f) => f.kind === 'bottleneck');
  const whatIf = bottleneck && bottleneck.evidence.what_if_2x_faster;
  const w = Math.max(260, (box.clientWidth || 420) - 30);
  const opts = (unit, cid) => ({ unit, width: w, bucketMs: pts.bucketMs, marks: findingMarks(id), baseline: baselineSpan(), id: cid });
  const base = baselineSpan();
  const chartLegend = (items) => legend([...items, ...(base ? [{ label: 'baseline mean', colour: GREY, dashed: true }] : []),
    ...(findingMarks(id).length ? [{ label: 'finding starts', colour: RED }] : [])]);
  box.replaceChildren(...[
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
    el('div', { class: 'chart-title' }, 'requests per second'),
    timeChart(pts, [{ key: 'requests_per_s', label: 'requests', colour: BLUE }], opts('/s', 'rate')), chartLegend([{ label: 'requests / s', colour: BLUE }]),
    el('div', { class: 'chart-title' }, 'latency'),
    timeChart(pts, [{ key: 'p50_ms', label: 'p50', colour: BLUE }, { key: 'p99_ms', label: 'p99', colour: ORANGE }], opts('ms', 'latency')),
    chartLegend([{ label: 'p50', colour: BLUE }, { label: 'p99', colour: ORANGE }]),
    el('div', { class: 'chart-title' }, 'errors'),
    timeChart(pts, [{ key: 'error_pct', label: 'errors', colour: RED }], opts('%', 'errors')), chartLegend([{ label: 'errors %', colour: RED }]),
    el('div', { class: 'chart-title' }, 'share of the critical path'),
    timeChart(pts, [{ key: 'critical_path_share', label: 'share', colour: GREEN }], opts('share', 'share')), chartLegend([{ label: 'critical-path share', colour: GREEN }]),
    el('h4', {}, 'Callers'), el('ul', { class: 'plain' }, d.callers.map((e) => el('li', {}, el('a', { class: 'node-link', href: '#', onclick: (ev) => { ev.preventDefault(); selectNode(e.from_id); } }, e.from), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Callees'), el('ul', { class: 'plain' }, d.callees.map((e) => el('li', {}, el('a', { class: 'node-link', href: '#', onclick: (ev) => { ev.preventDefault(); selectNode(e.to_id); } }, e.to), ` · ${e.calls} calls · ${pct(e.error_rate)} errors`))),
    el('h4', {}, 'Findings'), d.findings.length ? el('div', {}, d.findings.map(findingCard)) : el('p', { class: 'muted' }, 'none'),
    d.exemplar_trace_ids.length ? el('div', { class: 'muted' }, 'slowest traces: ', ...d.exemplar_trace_ids.flatMap((t) => [traceLink(t), ' '])) : null,
  ].filter((x) => x != null));
  box.dataset.node = id;
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
  // A collapsed group opens instead.
  if (id.startsWith('group:')) {
    state.collapsed.delete(id.slice(6));
    state.sig = null;
    saveUrl();
    state.rerender();
    return;
  }
  state.selected = id;
  state.tab = 'node';
  saveUrl();
  document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('selected', g.dataset.id === id));
  document.querySelectorAll('#map .edge').forEach((p) => {
    const [a, b] = p.dataset.edgePath.split('>');
    p.classList.toggle('selected', a === id || b === id);
  });
  return renderNode(id);
}

// The books: what came in, what was analysed, what was dropped and why, memory against
// the budget. Rates from the change since the last look.
let lastHealth = null;
export async function renderHealth() {
  const h = await getJSON('/health').catch(() => null);
  if (!h) return;
  const now = Date.now();
  const rate = (k) => lastHealth && now > lastHealth.at ? Math.max(0, (h[k] - lastHealth.h[k]) / ((now - lastHealth.at) / 1000)) : null;
  const tile = (label, value, sub, cls) => el('div', { class: 'tile' + (cls ? ' ' + cls : '') }, el('div', { class: 'tile-value' }, value), el('div', { class: 'tile-label' }, label), sub ? el('div', { class: 'tile-sub' }, sub) : null);
  const n = (x) => x == null ? '–' : x.toLocaleString('en');
  const r = (k) => { const x = rate(k); return x == null ? 'rate after the next refresh' : fmtRate(x).replace('/s', ' /s'); };
  const drops = [['spans dropped (queue full or budget)', h.spans_dropped], ['spans rejected (malformed)', h.spans_rejected],
    ['spans refused (not ready or over the limit)', h.spans_refused], ['requests invalid', h.requests_invalid],
    ['names folded (name table full)', h.names_overflowed], ['nodes folded (node table full)', h.nodes_overflowed]];
  const mem = h.memory_budget_bytes ? h.aggregate_bytes / h.memory_budget_bytes : null;
  const mb = (b) => (b / 1048576).toFixed(b < 10485760 ? 1 : 0) + ' MB';
  $('tab-health').replaceChildren(
    el('div', { class: 'board' },
      tile('spans received', n(h.spans_received), r('spans_received')),
      tile('spans analysed', n(h.spans_analysed), r('spans_analysed')),
      tile('export requests', n(h.export_requests), r('export_requests')),
      tile('in flight', n(h.spans_in_flight) + ' spans', `${n(h.traces_in_flight)} traces assembling · queue ${n(h.queue_depth)}`),
      tile('traces completed', n(h.traces_completed), r('traces_completed')),
      tile('ready', h.ready ? 'yes' : 'no', `view refreshed ${h.view_refreshed_at.slice(11, 19)} UTC`, h.ready ? '' : 'bad')),
    el('h4', {}, 'Dropped, by reason'),
    el('table', { class: 'kv drops' }, drops.map(([k, v]) => el('tr', { class: v ? 'bad' : '' }, el('td', {}, k), el('td', {}, n(v))))),
    el('h4', {}, 'Memory'),
    mem == null ? el('p', { class: 'muted' }, 'no budget reported') : el('div', {},
      el('div', { class: 'meter' }, el('span', { class: 'meter-fill' + (mem > 0.9 ? ' bad' : mem > 0.7 ? ' warn' : ''), style: `width:${Math.min(100, 100 * mem).toFixed(1)}%` })),
      el('div', { class: 'muted' }, `aggregates ${mb(h.aggregate_bytes)} of the ${mb(h.memory_budget_bytes)} budget (${pct(mem)})` + (h.rss_bytes ? ` · process resident ${mb(h.rss_bytes)}` : ''))));
  lastHealth = { h, at: now };
}

export function showTab(name) {
  state.tab = name;
  saveUrl();
  document.querySelectorAll('aside nav button').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  document.querySelectorAll('.tab').forEach((t) => t.classList.toggle('hidden', t.id !== 'tab-' + name));
  if (name === 'health') renderHealth();
}
