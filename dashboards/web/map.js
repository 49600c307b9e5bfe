// The map: laid out left to right from the entry points (longest-path layers, barycentre
// order within a layer; a tall layer wraps into sub-columns so the map keeps the window's
// shape), drawn in SVG, fitted to the window at load and on resize. Labels never collide:
// nodes are sized to their names, and each edge label takes the first free place along
// its curve or stays hidden (the edge's tooltip has it). Text shrinks with the zoom; below
// a legible size it is hidden until you zoom in (tooltips carry every name in full).
import { state, worstFinding, capacityOf, headroomBand } from './api.js';
import { $, svg, fmtMs, pct } from './format.js';

const H = 44, ROW = 88, GAP = 150, TB_ROW = 112, TB_GAP = 40, NAME_MAX = 260;
const NAME_FONT = '600 12px system-ui, -apple-system, "Segoe UI", sans-serif';
const SMALL_FONT = '10px system-ui, -apple-system, "Segoe UI", sans-serif';

let ctx2d = null;
function textWidth(text, font) {
  ctx2d ||= document.createElement('canvas').getContext('2d');
  ctx2d.font = font;
  return ctx2d.measureText(text).width;
}

// The layer of each node: longest path from an entry, cycles broken by a DFS.
function layers(ids, edges) {
  const out = new Map(ids.map((id) => [id, []]));
  const indeg = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    if (e.from_id === e.to_id || !out.has(e.from_id) || !out.has(e.to_id)) continue;
    out.get(e.from_id).push(e.to_id);
    indeg.set(e.to_id, indeg.get(e.to_id) + 1);
  }
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
  for (const id of ids) if (indeg.get(id) === 0 && !colour.get(id)) visit(id);
  for (const id of ids) if (!colour.get(id)) visit(id);
  const layer = new Map(ids.map((id) => [id, 0]));
  for (const id of order.reverse()) for (const k of dag.get(id)) layer.set(k, Math.max(layer.get(k), layer.get(id) + 1));
  const ls = [];
  for (const id of ids) (ls[layer.get(id)] ||= []).push(id);
  const parents = new Map(ids.map((id) => [id, []]));
  for (const [a, ks] of dag) for (const k of ks) parents.get(k).push(a);
  return { layers: ls.filter(Boolean), parents };
}

function layout(nodes, edges, widths, aspect) {
  const ids = nodes.map((n) => n.id);
  const { layers: ls, parents } = layers(ids, edges);
  // Barycentre ordering, a few sweeps.
  const rank = new Map();
  ls.forEach((l) => l.sort());
  for (let pass = 0; pass < 4; pass++) {
    for (const l of ls) {
      l.forEach((id, i) => { if (!rank.has(id)) rank.set(id, i); });
      const bary = (id) => {
        const ps = parents.get(id).filter((p) => rank.has(p));
        return ps.length ? ps.reduce((s, p) => s + rank.get(p), 0) / ps.length : rank.get(id);
      };
      const b = new Map(l.map((id) => [id, bary(id)]));
      l.sort((x, y) => b.get(x) - b.get(y) || (x < y ? -1 : 1));
      l.forEach((id, i) => rank.set(id, i / Math.max(1, l.length - 1)));
    }
  }
  // Two placements: layers as columns (left to right) or as rows (top to bottom), a tall
  // layer wrapped so the map keeps the window's shape; the one that fits the window at the
  // larger scale wins (a long chain reads top to bottom, a wide fan left to right).
  const lr = columns(ls, widths, aspect), tb = rowsOf(ls, widths, aspect);
  const scale = (p) => Math.min(aspect / p.w, 1 / p.h);
  return scale(tb) > scale(lr) * 1.05 ? tb : lr;
}

// The count per column (or row) whose map is closest to the window's shape.
function wrapCount(ls, size, aspect) {
  const longest = Math.max(...ls.map((l) => l.length));
  let best = longest, bestErr = Infinity;
  for (let k = 1; k <= longest; k++) {
    const [w, h] = size(k);
    const err = Math.abs(Math.log(w / h / aspect));
    if (err < bestErr - 1e-9) { bestErr = err; best = k; }
  }
  return Math.max(best, Math.min(longest, 3));
}

function columns(ls, widths, aspect) {
  const colW = Math.max(...Object.values(widths), 120) + GAP;
  const rows = wrapCount(ls, (r) => [ls.reduce((s, l) => s + Math.ceil(l.length / r), 0) * colW, r * ROW], aspect);
  const pos = {};
  let x = 0;
  for (const l of ls) {
    for (let c = 0; c < Math.ceil(l.length / rows); c++) {
      const col = l.slice(c * rows, (c + 1) * rows);
      const w = Math.max(...col.map((id) => widths[id]));
      const offset = (rows - col.length) / 2;
      col.forEach((id, i) => { pos[id] = { x: x + (w - widths[id]) / 2, y: (i + offset) * ROW, w: widths[id] }; });
      x += w + GAP;
    }
  }
  return { pos, orient: 'lr', w: x, h: rows * ROW };
}

function rowsOf(ls, widths, aspect) {
  const cellW = Math.max(...Object.values(widths), 120) + TB_GAP;
  const per = wrapCount(ls, (k) => [Math.min(k, Math.max(...ls.map((l) => l.length))) * cellW, ls.reduce((s, l) => s + Math.ceil(l.length / k), 0) * TB_ROW], aspect);
  const pos = {};
  let y = 0, maxW = 0;
  const rowW = (row) => row.reduce((s, id) => s + widths[id], 0) + TB_GAP * (row.length - 1);
  const rowsAll = [];
  for (const l of ls) for (let r = 0; r < Math.ceil(l.length / per); r++) rowsAll.push(l.slice(r * per, (r + 1) * per));
  for (const row of rowsAll) maxW = Math.max(maxW, rowW(row));
  for (const row of rowsAll) {
    let x = (maxW - rowW(row)) / 2;
    for (const id of row) { pos[id] = { x, y, w: widths[id] }; x += widths[id] + TB_GAP; }
    y += TB_ROW;
  }
  return { pos, orient: 'tb', w: maxW, h: y };
}

// Name prefixes shared by three or more nodes (and not by all): the groups one can collapse.
export function groupsOf(nodes) {
  const count = new Map();
  for (const n of nodes) {
    const p = prefix(n.name);
    if (p) count.set(p, (count.get(p) || 0) + 1);
  }
  return [...count].filter(([, k]) => k >= 3 && k < nodes.length).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}

function prefix(name) {
  const m = /^([A-Za-z0-9]+)[-_.]/.exec(name);
  return m ? m[1] : null;
}

// The graph with collapsed groups folded into one node each, their edges merged.
function folded(nodes, edges) {
  const groups = new Set(groupsOf(nodes).map(([p]) => p).filter((p) => state.collapsed.has(p)));
  if (!groups.size) return { nodes, edges };
  const into = new Map(), members = new Map();
  for (const n of nodes) {
    const p = prefix(n.name);
    if (p && groups.has(p)) { into.set(n.id, 'group:' + p); (members.get(p) || members.set(p, []).get(p)).push(n); }
  }
  const out = nodes.filter((n) => !into.has(n.id));
  for (const [p, ms] of members) {
    out.push({ id: 'group:' + p, name: `${p}-* (${ms.length})`, type: 'group', group: p, members: ms.map((m) => m.id),
      requests: ms.reduce((s, m) => s + m.requests, 0), instances: null, latency_ms: null });
  }
  const merged = new Map();
  for (const e of edges) {
    const a = into.get(e.from_id) || e.from_id, b = into.get(e.to_id) || e.to_id;
    if (a === b) continue;
    const k = a + '>' + b, m = merged.get(k);
    if (m) { m.errors += e.errors; m.calls += e.calls; m.error_rate = m.errors / Math.max(1, m.calls); }
    else merged.set(k, { ...e, from_id: a, to_id: b, from: a === e.from_id ? e.from : a.slice(6) + '-*', to: b === e.to_id ? e.to : b.slice(6) + '-*', client_ms: a === e.from_id && b === e.to_id ? e.client_ms : null, server_ms: null, queue_ms: null });
  }
  return { nodes: out, edges: [...merged.values()] };
}

function worstOf(n) {
  if (n.type !== 'group') return worstFinding(n.id);
  const RANK = { low: 1, medium: 2, high: 3, critical: 4 };
  let best = null;
  for (const id of n.members) {
    const f = worstFinding(id);
    if (f && (!best || (f.active && !best.active) || RANK[f.severity] > RANK[best.severity])) best = f;
  }
  return best;
}

const ICONS = {
  service: 'M0,2 h14 v4 h-14 z M0,8 h14 v4 h-14 z',
  database: 'M0,3 a7,2.5 0 0,0 14,0 a7,2.5 0 0,0 -14,0 v9 a7,2.5 0 0,0 14,0 v-9',
  messaging: 'M0,2 h10 M0,7 h14 M0,12 h10 M10,0 l4,2 l-4,2 M10,10 l4,2 l-4,2',
  external: 'M7,0 a7,7 0 1,0 0.01,0 z M0,7 h14 M7,0 c-4,4 -4,10 0,14 c4,-4 4,-10 0,-14',
  group: 'M0,0 h6 v6 h-6 z M8,0 h6 v6 h-6 z M0,8 h6 v6 h-6 z M8,8 h6 v6 h-6 z',
};

export function icon(type) {
  return svg('path', { d: ICONS[type] || ICONS.service, class: 'glyph', transform: 'translate(9,15)' });
}

function shape(n, w) {
  let s;
  if (n.type === 'database') {
    s = svg('path', { d: `M0,6 a${w / 2},6 0 0,0 ${w},0 v${H - 12} a${w / 2},6 0 0,1 ${-w},0 z M0,6 a${w / 2},6 0 0,1 ${w},0` });
  } else if (n.type === 'messaging') {
    s = svg('path', { d: `M10,0 h${w - 20} l10,${H / 2} l-10,${H / 2} h${-(w - 20)} l-10,${-H / 2} z` });
  } else if (n.type === 'external') {
    s = svg('rect', { width: w, height: H, rx: H / 2, 'stroke-dasharray': '4 3' });
  } else if (n.type === 'group') {
    s = svg('rect', { width: w, height: H, rx: 10, 'stroke-dasharray': '6 2' });
  } else {
    s = svg('rect', { width: w, height: H, rx: 6 });
  }
  s.setAttribute('class', 'node-shape');
  return s;
}

const subText = (n) => n.type === 'group' ? `${n.members.length} nodes · ${n.requests} req`
  : `${n.requests} req` + (n.latency_ms ? ` · p99 ${fmtMs(n.latency_ms.p99)}` : '');

function displayName(n) {
  let s = n.name;
  if (textWidth(s, NAME_FONT) <= NAME_MAX - 40) return s;
  while (s.length > 4 && textWidth(s + '…', NAME_FONT) > NAME_MAX - 40) s = s.slice(0, -1);
  return s + '…';
}

const edgeText = (e) => {
  const lat = e.client_ms || e.server_ms;
  return e.connection_type === 'messaging_system' && e.queue_ms ? `queue ${fmtMs(e.queue_ms.p50)}`
    : `${e.calls} · ${pct(e.error_rate)} err` + (lat ? ` · p99 ${fmtMs(lat.p99)}` : '');
};

const edgeTip = (e) => {
  const lat = e.client_ms || e.server_ms;
  return `${e.from} → ${e.to}\n${e.calls} calls, ${pct(e.error_rate)} errors` +
    (lat ? `, p50 ${fmtMs(lat.p50)}, p99 ${fmtMs(lat.p99)}` : '') + (e.queue_ms ? `\nqueue p50 ${fmtMs(e.queue_ms.p50)}, p99 ${fmtMs(e.queue_ms.p99)}` : '');
};

const bez = (p, t) => {
  const u = 1 - t;
  return [u * u * u * p[0] + 3 * u * u * t * p[2] + 3 * u * t * t * p[4] + t * t * t * p[6],
    u * u * u * p[1] + 3 * u * u * t * p[3] + 3 * u * t * t * p[5] + t * t * t * p[7]];
};

// Axis-aligned boxes in a grid of cells, for "is this place free".
class Boxes {
  constructor() { this.cells = new Map(); }
  *keys(b) {
    for (let i = Math.floor(b.x / 100); i <= Math.floor((b.x + b.w) / 100); i++) for (let j = Math.floor(b.y / 100); j <= Math.floor((b.y + b.h) / 100); j++) yield i + ',' + j;
  }
  add(b) { for (const k of this.keys(b)) (this.cells.get(k) || this.cells.set(k, []).get(k)).push(b); }
  free(b) {
    for (const k of this.keys(b)) for (const o of this.cells.get(k) || []) {
      if (b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h) return false;
    }
    return true;
  }
}

export function drawMap() {
  const t0 = performance.now();
  const g = state.graph;
  const map = $('map');
  const live = g.nodes.filter((n) => !state.hideIdle || n.requests > 0);
  const shownIds = new Set(live.map((n) => n.id));
  const { nodes, edges: all } = folded(live, g.edges.filter((e) => shownIds.has(e.from_id) && shownIds.has(e.to_id) && e.from_id !== e.to_id));
  const edges = all.filter((e) => e.from_id !== e.to_id);
  const widths = {}, names = {};
  for (const n of nodes) {
    names[n.id] = displayName(n);
    widths[n.id] = Math.ceil(Math.max(130, textWidth(names[n.id], NAME_FONT) + 40, textWidth(subText(n), SMALL_FONT) + 40));
  }
  const r = map.getBoundingClientRect();
  const placed = layout(nodes, edges, widths, r.width > 0 && r.height > 0 ? r.width / r.height : 1.6);
  state.pos = placed.pos;
  const tb = placed.orient === 'tb';
  map.dataset.orient = placed.orient;
  state.drawn = nodes;
  map.replaceChildren();
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }));
  defs.append(marker);
  map.append(defs);
  const root = svg('g', { id: 'viewport' });
  const edgeLayer = svg('g', { class: 'edges' }), labelLayer = svg('g', { class: 'edge-labels' }), nodeLayer = svg('g', { class: 'nodes' });
  root.append(edgeLayer, nodeLayer, labelLayer);
  map.append(root);
  // Obstacles: every node with its badge above and headroom below.
  const boxes = new Boxes();
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  const grow = (b) => { minX = Math.min(minX, b.x); minY = Math.min(minY, b.y); maxX = Math.max(maxX, b.x + b.w); maxY = Math.max(maxY, b.y + b.h); };
  for (const n of nodes) {
    const p = state.pos[n.id];
    const b = { x: p.x - 4, y: p.y - 16, w: p.w + 8, h: H + 38 };
    boxes.add(b); grow(b);
  }
  const selected = state.selected;
  for (const e of edges) {
    const a = state.pos[e.from_id], b = state.pos[e.to_id];
    if (!a || !b) continue;
    let c;
    if (tb) {
      const x1 = a.x + a.w / 2, y1 = a.y + H, x2 = b.x + b.w / 2, y2 = b.y;
      c = y2 <= y1 ? [x1, y1, x1 + a.w / 2 + 60, y1 + 60, x2 + b.w / 2 + 60, y2 - 60, x2, y2]
        : [x1, y1, x1, (y1 + y2) / 2, x2, (y1 + y2) / 2, x2, y2];
    } else {
      const x1 = a.x + a.w, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      c = x2 <= x1 ? [x1, y1, x1 + 90, y1 - 80, x2 - 90, y2 - 80, x2, y2]
        : [x1, y1, (x1 + x2) / 2, y1, (x1 + x2) / 2, y2, x2, y2];
    }
    const d = `M${c[0]},${c[1]} C${c[2]},${c[3]} ${c[4]},${c[5]} ${c[6]},${c[7]}`;
    const asyncEdge = e.connection_type === 'messaging_system';
    const key = `${e.from_id}>${e.to_id}`;
    const touches = selected && (e.from_id === selected || e.to_id === selected);
    const p = svg('path', { d, class: 'edge' + (asyncEdge ? ' async' : '') + (e.error_rate > 0.05 ? ' failing' : '') + (touches ? ' selected' : ''), 'marker-end': 'url(#arrow)', 'data-edge-path': key });
    const hit = svg('path', { d, class: 'edge-hit', 'data-edge-path': key });
    hit.dataset.tip = edgeTip(e);
    edgeLayer.append(p, hit);
    const text = edgeText(e);
    const w = textWidth(text, SMALL_FONT) + 6, h = 14;
    for (const t of [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78]) {
      const [px, py] = bez(c, t);
      const box = { x: px - w / 2, y: py - h - 1, w, h };
      if (!boxes.free(box)) continue;
      boxes.add(box); grow(box);
      const label = svg('text', { x: px, y: py - 4, 'text-anchor': 'middle', class: 'edge-label', 'data-edge': key });
      label.textContent = text;
      label.dataset.tip = edgeTip(e);
      labelLayer.append(label);
      break;
    }
  }
  for (const n of nodes) {
    const { x, y, w } = state.pos[n.id];
    const f = worstOf(n);
    const sev = f ? f.severity : 'none';
    const grp = svg('g', { transform: `translate(${x},${y})`, 'data-id': n.id, 'data-node': n.name, 'data-name': n.name, 'data-type': n.type, 'data-severity': sev,
      class: `node sev-${sev}` + (f && f.active ? ' active' : '') + (selected === n.id ? ' selected' : '') +
        (state.search && n.name.toLowerCase().includes(state.search) ? ' match' : '') });
    grp.append(shape(n, w), icon(n.type));
    const name = svg('text', { x: 28, y: 19, class: 'node-name' });
    name.textContent = names[n.id];
    const sub = svg('text', { x: 28, y: 34, class: 'node-sub' });
    sub.textContent = subText(n);
    grp.append(name, sub);
    if (n.type !== 'group') {
      const inst = svg('text', { x: w - 2, y: -4, 'text-anchor': 'end', class: 'node-badge' });
      inst.textContent = n.instances == null ? '×?' : '×' + n.instances;
      grp.append(inst);
    }
    let tip = `${n.name} (${n.type === 'group' ? 'group, click to expand' : n.type})` +
      (n.type === 'group' ? '' : `\n${n.instances == null ? 'instances unknown' : n.instances + ' instance(s) serving'}`) +
      `\n${subText(n)}` + (f ? `\n${f.severity}${f.active ? ' active' : ''} ${f.kind}: ${f.summary}` : '');
    // Headroom: a bar along the node's foot, as full as the node is loaded (rate over
    // capacity), coloured by how close it runs; the factor beside it.
    const cap = n.type === 'group' ? null : capacityOf(n.id);
    if (cap && cap.headroom != null) {
      const band = headroomBand(cap.headroom);
      grp.dataset.headroom = cap.headroom;
      const used = Math.min(1, 1 / cap.headroom);
      grp.append(svg('rect', { x: 0, y: H + 3, width: w, height: 4, rx: 2, class: 'headroom-track' }),
        svg('rect', { x: 0, y: H + 3, width: Math.max(2, w * used), height: 4, rx: 2, class: 'headroom-bar ' + band }));
      const hr = svg('text', { x: 0, y: H + 18, class: 'node-badge headroom-text' });
      hr.textContent = `headroom ${cap.headroom.toFixed(cap.headroom < 10 ? 1 : 0)}×`;
      grp.append(hr);
      tip += `\nheadroom ${cap.headroom}× (capacity ${cap.capacity_rps}/s, ${cap.limit}, ${cap.confidence} confidence)`;
    }
    grp.dataset.tip = tip;
    nodeLayer.append(grp);
  }
  state.bounds = nodes.length ? { x: minX - 20, y: minY - 20, w: maxX - minX + 40, h: maxY - minY + 40 } : { x: 0, y: 0, w: 800, h: 500 };
  // Until the user pans or zooms, the map follows the graph as nodes appear.
  if (!state.view || !state.userMoved) fit(); else applyView();
  // For whoever measures the page (the browser tests): when the map was drawn, how big.
  performance.mark('chokepoint-map-drawn', { detail: { nodes: nodes.length, layout_ms: performance.now() - t0 } });
}

export function updateLabels() {
  for (const n of state.graph.nodes) {
    const g = document.querySelector(`#map .node[data-id="${CSS.escape(n.id)}"]`);
    const sub = g && g.querySelector('.node-sub');
    if (sub) sub.textContent = subText(n);
  }
}

// The whole map in the window.
export function fit() {
  state.view = { ...state.bounds };
  applyView();
}

// The view box, and which text is legible at this scale (hidden below 7 px for names, 8 px
// for edge labels: the tooltips still have them).
export function applyView() {
  const v = state.view, map = $('map');
  map.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
  const r = map.getBoundingClientRect();
  const scale = r.width > 0 ? Math.min(r.width / v.w, r.height / v.h) : 1;
  map.classList.toggle('lod-names', scale * 12 < 7);
  map.classList.toggle('lod-edges', scale * 10 < 8);
  map.dataset.scale = scale.toFixed(3);
}

function zoom(factor, cx, cy) {
  const v = state.view;
  if (cx == null) { cx = v.x + v.w / 2; cy = v.y + v.h / 2; }
  state.view = { x: cx - (cx - v.x) * factor, y: cy - (cy - v.y) * factor, w: v.w * factor, h: v.h * factor };
  applyView();
}

// Centre the view on a node, keeping the zoom.
export function centreOn(id) {
  const p = state.pos[id], v = state.view;
  if (!p || !v) return;
  state.view = { ...v, x: p.x + p.w / 2 - v.w / 2, y: p.y + H / 2 - v.h / 2 };
  applyView();
}

export function installPanZoom() {
  const map = $('map'), tip = $('tip');
  let drag = null;
  map.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const r = map.getBoundingClientRect(), v = state.view;
    // The view box is letter-boxed (meet): map the pointer through the actual scale.
    const s = Math.min(r.width / v.w, r.height / v.h);
    const ox = (r.width - v.w * s) / 2, oy = (r.height - v.h * s) / 2;
    const cx = v.x + (ev.clientX - r.left - ox) / s, cy = v.y + (ev.clientY - r.top - oy) / s;
    state.userMoved = true;
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
  }, { passive: false });
  map.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, y: ev.clientY, v: { ...state.view } }; map.classList.add('dragging'); });
  window.addEventListener('mouseup', () => { drag = null; map.classList.remove('dragging'); });
  window.addEventListener('mousemove', (ev) => {
    if (!drag) return;
    if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3) state.userMoved = true;
    const r = map.getBoundingClientRect();
    const s = Math.min(r.width / drag.v.w, r.height / drag.v.h);
    state.view = { ...drag.v, x: drag.v.x - (ev.clientX - drag.x) / s, y: drag.v.y - (ev.clientY - drag.y) / s };
    applyView();
  });
  // Tooltips: every node's full name and numbers, every edge's label even where hidden.
  map.addEventListener('mousemove', (ev) => {
    const t = ev.target.closest && ev.target.closest('[data-tip]');
    if (!t || drag) { tip.classList.add('hidden'); return; }
    tip.textContent = t.dataset.tip;
    tip.classList.remove('hidden');
    const pane = $('map-pane').getBoundingClientRect();
    const x = Math.min(ev.clientX - pane.left + 14, pane.width - tip.offsetWidth - 6);
    tip.style.left = Math.max(4, x) + 'px';
    tip.style.top = Math.max(4, ev.clientY - pane.top + 14) + 'px';
  });
  map.addEventListener('mouseleave', () => tip.classList.add('hidden'));
  $('zoom-in').onclick = () => { state.userMoved = true; zoom(1 / 1.3); };
  $('zoom-out').onclick = () => { state.userMoved = true; zoom(1.3); };
  $('zoom-fit').onclick = () => { state.userMoved = false; fit(); };
  // Fit again when the window changes size, unless the user has moved the map.
  new ResizeObserver(() => { if (state.bounds && !state.userMoved) fit(); else if (state.view) applyView(); }).observe(map);
}
