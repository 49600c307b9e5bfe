// chokepoint dashboard: plain JavaScript modules over the HTTP API, no dependencies and no
// build step. This one starts the page and wires it: data in, map and panels out.
import { state, token, getJSON, worstFinding } from './api.js';
import { $ } from './format.js';
import { drawMap, updateLabels, applyView, installPanZoom } from './map.js';
import { renderFindings, renderOperations, renderNode, selectNode, showTab } from './panels.js';

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
