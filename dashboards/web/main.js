// chokepoint dashboard: plain JavaScript modules over the HTTP API, no dependencies and no
// build step. This one starts the page and wires it: data in, map and panels out, the view
// kept in the URL.
import { state, token, getJSON, worstFinding, readUrl, saveUrl, quietly } from './api.js';
import { $, el } from './format.js';
import { drawMap, updateLabels, installPanZoom, centreOn, groupsOf } from './map.js';
import { renderFindings, renderOperations, renderNode, renderHealth, selectNode, showTab } from './panels.js';

const local = (ms) => new Date(ms - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);

async function refresh() {
  if (state.fetching) return;
  state.fetching = true;
  try {
    let w = state.window ? '?window=' + encodeURIComponent(state.window) : '';
    if (state.window === 'range') {
      const f = Date.parse($('range-from').value), t = Date.parse($('range-to').value);
      if (!(f < t)) { $('summary').textContent = 'pick a past range: from, then to'; return; }
      state.from = f; state.to = t;
      w = `?from=${f}&to=${t}`;
    }
    const [graph, findings, operations, history] = await Promise.all([
      getJSON('/graph' + w), getJSON('/findings' + w), getJSON('/operations'),
      getJSON('/findings/history'),
    ]);
    state.graph = graph; state.findings = findings; state.operations = operations;
    state.history = Object.fromEntries(history.map((h) => [h.id, h]));
    state.refreshedAt = Date.now();
    render();
  } catch (e) {
    $('summary').textContent = 'cannot reach the API: ' + e.message;
  } finally {
    state.fetching = false;
  }
}

function render() {
  const g = state.graph, f = state.findings;
  if (!g || !f) return;
  const active = f.findings.filter((x) => x.active).length;
  $('summary').textContent = `${f.window.start.slice(11, 19)}–${f.window.end.slice(11, 19)} UTC · ` +
    `${f.requests} requests · ${g.nodes.length} nodes · ${f.findings.length} findings` + (active ? ` · ${active} active` : '');
  // Redraw the map only when its structure or colours change (a redraw under the pointer
  // loses clicks and hovers); otherwise refresh its numbers in place.
  const sig = JSON.stringify([g.nodes.map((n) => n.id), g.edges.map((e) => e.from_id + '>' + e.to_id),
    g.nodes.map((n) => { const w = worstFinding(n.id); return w ? w.severity + w.active : ''; }),
    (f.capacity || []).map((c) => c.headroom == null ? '' : c.headroom.toFixed(1)), state.hideIdle, [...state.collapsed].sort()]);
  if (sig !== state.sig) { state.sig = sig; drawMap(); renderGroups(); } else updateLabels();
  panels();
}
state.rerender = render;

// The side panels, rebuilt with fresh numbers, but not under the pointer: a rebuild while
// one reads a chart or reaches for a button would pull it away. They catch up when the
// pointer leaves.
function panels(force = false) {
  if (!force && document.querySelector('aside:hover')) { state.panelsStale = true; return; }
  state.panelsStale = false;
  const box = document.querySelector('aside .tab:not(.hidden)');
  const top = box ? box.scrollTop : 0;
  renderFindings();
  renderOperations();
  const done = state.selected ? renderNode(state.selected, false) : Promise.resolve();
  if (state.tab === 'health') renderHealth();
  Promise.resolve(done).then(() => { if (box) box.scrollTop = top; });
}

// The groups one can collapse into a node (names sharing a prefix), as checkboxes.
function renderGroups() {
  const groups = groupsOf(state.graph.nodes);
  $('groups').classList.toggle('hidden', !groups.length);
  const box = $('groups-list');
  const toggle = (p, on) => { if (on) state.collapsed.add(p); else state.collapsed.delete(p); state.sig = null; saveUrl(); render(); };
  box.replaceChildren(
    el('div', {}, el('button', { onclick: () => { groups.forEach(([p]) => state.collapsed.add(p)); state.sig = null; saveUrl(); render(); } }, 'collapse all'),
      ' ', el('button', { onclick: () => { state.collapsed.clear(); state.sig = null; saveUrl(); render(); } }, 'expand all')),
    ...groups.map(([p, k]) => {
      const cb = el('input', { type: 'checkbox', 'data-group': p, onchange: (ev) => toggle(p, ev.target.checked) });
      cb.checked = state.collapsed.has(p);
      return el('label', { class: 'group-row' }, cb, ` ${p}-* (${k})`);
    }));
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

function windowControls() {
  $('window').value = state.window;
  $('range').classList.toggle('hidden', state.window !== 'range');
  if (state.window === 'range') {
    $('range-from').value = local(state.from != null ? state.from : Date.now() - 3600e3);
    $('range-to').value = local(state.to != null ? state.to : Date.now() - 1800e3);
  }
}

// The view the URL names: window, node, finding, tab.
async function restore() {
  await quietly(async () => {
    windowControls();
    state.sig = null; state.view = null; state.userMoved = false;
    await refresh();
    // The view asked for now, even under the pointer.
    panels(true);
    centreOnSelected();
    showTab(state.tab);
    if (state.finding) {
      const card = document.querySelector(`[data-finding="${CSS.escape(state.finding)}"]`);
      if (card) card.scrollIntoView({ block: 'nearest' });
    }
  });
}

function centreOnSelected() {
  document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('selected', g.dataset.id === state.selected));
}

async function main() {
  const dark = localStorage.getItem('chokepoint-theme');
  if (dark) document.documentElement.classList.add(dark);
  $('theme').onclick = () => {
    const root = document.documentElement;
    const isDark = root.classList.contains('dark') || (!root.classList.contains('light') && matchMedia('(prefers-color-scheme: dark)').matches);
    const next = isDark ? 'light' : 'dark';
    root.classList.remove('dark', 'light'); root.classList.add(next);
    localStorage.setItem('chokepoint-theme', next);
  };
  document.querySelectorAll('aside nav button').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab)));
  $('window').onchange = (e) => {
    state.window = e.target.value; state.view = null; state.sig = null;
    if (state.window !== 'range') { state.from = null; state.to = null; }
    windowControls();
    refresh().then(saveUrl);
  };
  $('range-from').onchange = $('range-to').onchange = () => { state.sig = null; refresh().then(saveUrl); };
  $('hide-idle').onchange = (e) => { state.hideIdle = e.target.checked; state.view = null; state.sig = null; render(); };
  $('search').oninput = (e) => {
    state.search = e.target.value.trim().toLowerCase();
    document.querySelectorAll('#map .node').forEach((g) => g.classList.toggle('match', !!state.search && g.dataset.name.toLowerCase().includes(state.search)));
    const hit = state.graph && state.graph.nodes.find((n) => state.search && n.name.toLowerCase().includes(state.search));
    if (hit) centreOn(hit.id);
  };
  // One listener for every node, present and future: a redraw cannot lose it.
  $('map').addEventListener('click', (ev) => {
    const g = ev.target.closest && ev.target.closest('.node');
    if (g) selectNode(g.dataset.id);
  });
  window.addEventListener('popstate', () => { readUrl(); restore(); });
  document.querySelector('aside').addEventListener('mouseleave', () => { if (state.panelsStale) panels(); });
  installPanZoom();
  state.config = await getJSON('/ui-config').catch(() => state.config);
  readUrl();
  await restore();
  live();
}

main();
