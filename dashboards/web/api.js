// The daemon's HTTP API, and its answers as the page keeps them.

const SEV_RANK = { none: 0, low: 1, medium: 2, high: 3, critical: 4 };

export const state = {
  config: { trace_url: null, refresh_ms: 5000 },
  graph: null, findings: null, operations: [], history: {},
  selected: null, finding: null, tab: 'findings', window: '', from: null, to: null,
  hideIdle: false, search: '', collapsed: new Set(),
  pos: {}, view: null, bounds: null, fetching: false, refreshedAt: 0,
  rerender: () => {},
};

// The view in the URL (node, finding, tab, window, collapsed groups): a link shares it,
// reload and the back button restore it. Each change of view is a history entry.
let restoring = false;
export function urlOf() {
  const q = new URLSearchParams();
  if (state.selected) q.set('node', state.selected);
  if (state.finding) q.set('finding', state.finding);
  if (state.tab && state.tab !== 'findings') q.set('tab', state.tab);
  if (state.window) q.set('window', state.window);
  if (state.window === 'range' && state.from != null && state.to != null) { q.set('from', state.from); q.set('to', state.to); }
  if (state.collapsed.size) q.set('collapse', [...state.collapsed].sort().join(','));
  const s = q.toString();
  return location.pathname + (s ? '?' + s : '');
}

export function saveUrl() {
  if (restoring) return;
  const url = urlOf();
  if (url !== location.pathname + location.search) history.pushState(null, '', url);
}

export function readUrl() {
  const q = new URLSearchParams(location.search);
  state.selected = q.get('node');
  state.finding = q.get('finding');
  state.tab = q.get('tab') || (state.selected && !state.finding ? 'node' : 'findings');
  state.window = q.get('window') || '';
  state.from = q.has('from') ? Number(q.get('from')) : null;
  state.to = q.has('to') ? Number(q.get('to')) : null;
  state.collapsed = new Set((q.get('collapse') || '').split(',').filter(Boolean));
}

// Runs `f` without writing history (while the view is rebuilt from the URL).
export async function quietly(f) {
  restoring = true;
  try { return await f(); } finally { restoring = false; }
}

// With api.bearer_token_file set, data needs the token: asked once, kept for the session.
export function token() { return sessionStorage.getItem('chokepoint-token'); }

export async function getJSON(path) {
  const headers = token() ? { Authorization: 'Bearer ' + token() } : {};
  let r = await fetch(path, { headers });
  if (r.status === 401) {
    const t = window.prompt('This chokepoint needs its API token (api.bearer_token_file):');
    if (t) { sessionStorage.setItem('chokepoint-token', t.trim()); return getJSON(path); }
  }
  if (!r.ok) throw new Error(path + ': ' + r.status);
  return r.json();
}

export function worstFinding(nodeId) {
  let best = null;
  for (const f of state.findings ? state.findings.findings : []) {
    if (f.node_id !== nodeId) continue;
    const k = [f.active ? 1 : 0, SEV_RANK[f.severity], f.score];
    if (!best || k[0] > best.k[0] || (k[0] === best.k[0] && (k[1] > best.k[1] || (k[1] === best.k[1] && k[2] > best.k[2])))) best = { f, k };
  }
  return best ? best.f : null;
}

// A node's capacity entry (rate, capacity, headroom, limit, confidence), if it has one.
export function capacityOf(nodeId) {
  const caps = state.findings && state.findings.capacity ? state.findings.capacity : [];
  return caps.find((c) => c.node_id === nodeId) || null;
}

// Headroom as a band: beyond capacity, within 20% of it, or with room.
export function headroomBand(h) {
  return h == null ? 'unknown' : h < 1 ? 'beyond' : h <= 1.25 ? 'near' : 'room';
}
