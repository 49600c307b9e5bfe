// The map: laid out left to right from the entry points (longest-path layers, then
// barycentre ordering within a layer), drawn in SVG with pan and zoom.
import { state, worstFinding, capacityOf, headroomBand } from './api.js';
import { $, svg, fmtMs, pct } from './format.js';

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

export function drawMap() {
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
    // Headroom: a bar along the node's foot, as full as the node is loaded (rate over
    // capacity), coloured by how close it runs; the factor beside it.
    const c = capacityOf(n.id);
    if (c && c.headroom != null) {
      const band = headroomBand(c.headroom);
      grp.dataset.headroom = c.headroom;
      const used = Math.min(1, 1 / c.headroom);
      grp.append(svg('rect', { x: 0, y: H + 3, width: w, height: 4, rx: 2, class: 'headroom-track' }),
        svg('rect', { x: 0, y: H + 3, width: Math.max(2, w * used), height: 4, rx: 2, class: 'headroom-bar ' + band }));
      const hr = svg('text', { x: 0, y: H + 17, class: 'badge-text headroom-text' });
      hr.textContent = `headroom ${c.headroom.toFixed(c.headroom < 10 ? 1 : 0)}×`;
      grp.append(hr);
      title.textContent += `\nheadroom ${c.headroom}× (capacity ${c.capacity_rps}/s, ${c.limit}, ${c.confidence} confidence)`;
    }
    root.append(grp);
  }
  // Until the user pans or zooms, the map follows the graph as nodes appear.
  if (!state.view || !state.userMoved) fit(); else applyView();
}

export function updateLabels() {
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

export function applyView() {
  const v = state.view;
  $('map').setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
}

function zoom(factor, cx, cy) {
  const v = state.view;
  if (cx == null) { cx = v.x + v.w / 2; cy = v.y + v.h / 2; }
  state.view = { x: cx - (cx - v.x) * factor, y: cy - (cy - v.y) * factor, w: v.w * factor, h: v.h * factor };
  applyView();
}

export function installPanZoom() {
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
