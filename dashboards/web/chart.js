// Charts drawn in SVG at their real pixel size (text is never stretched): a time series with
// a UTC time axis, a value axis with its unit, a hover crosshair reading every series, the
// baseline beside now and the start of each finding marked; a scatter of latency against
// load; bars of now against the baseline. No library: what Grafana's panels show, small.
import { svg, el } from './format.js';

const UNIT_FMT = {
  ms: (v) => (v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s' : trim(v) + ' ms'),
  '/s': (v) => trim(v) + '/s',
  '%': (v) => trim(v) + '%',
  share: (v) => Math.round(v * 100) + '%',
  count: (v) => trim(v),
};

function trim(v) {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(a % 1 ? 1 : 0).replace(/\.0$/, '') : +v.toFixed(2) + '';
}

export const fmtUnit = (unit, v) => (UNIT_FMT[unit] || UNIT_FMT.count)(v);

// Ticks at 1, 2 or 5 × 10^k covering [0, max].
export function valueTicks(max, want = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / want, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
  const out = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);

// Time ticks on round UTC minutes or hours, about `want` of them.
export function timeTicks(t0, t1, want = 5) {
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= want) || TIME_STEPS[TIME_STEPS.length - 1];
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return { ticks: out, step };
}

export function timeLabel(t, step) {
  const iso = new Date(t).toISOString();
  return step < 60000 ? iso.slice(11, 19) : step >= 86400000 ? iso.slice(5, 10) : iso.slice(11, 16);
}

const M = { l: 46, r: 10, t: 8, b: 22 };

// series: [{ key, label, colour }]; opts: { unit, width, height, bucketMs, baseline: {from,
// to} (the baseline period, shaded, its mean dashed across now), marks: [{ t, label }],
// id }. Points: [{ t (ms), [key]: value }].
export function timeChart(points, series, opts) {
  const W = Math.max(240, opts.width || 400), H = opts.height || 130;
  const root = svg('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-unit': opts.unit, 'data-chart': opts.id || '' });
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const half = (opts.bucketMs || 60000) / 2;
  const ts = points.map((p) => p.t);
  for (const m of opts.marks || []) ts.push(m.t);
  let t0 = Math.min(...ts) - half, t1 = Math.max(...ts) + half;
  if (!points.length) { t1 = Date.now(); t0 = t1 - 300000; }
  const vmax = Math.max(1e-9, ...series.flatMap((s) => points.map((p) => p[s.key] || 0)));
  const vt = valueTicks(vmax);
  const top = vt[vt.length - 1];
  const X = (t) => M.l + pw * (t - t0) / (t1 - t0), Y = (v) => M.t + ph - ph * v / top;
  const grid = svg('g', { class: 'grid' });
  const yAxis = svg('g', { class: 'axis', 'data-axis': 'y' });
  for (const v of vt) {
    grid.append(svg('line', { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v) }));
    const tx = svg('text', { x: M.l - 5, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick' });
    tx.textContent = fmtUnit(opts.unit, v);
    yAxis.append(tx);
  }
  const xAxis = svg('g', { class: 'axis', 'data-axis': 'x' });
  const { ticks, step } = timeTicks(t0, t1, Math.max(2, Math.floor(pw / 70)));
  for (const t of ticks) {
    xAxis.append(svg('line', { x1: X(t), x2: X(t), y1: M.t + ph, y2: M.t + ph + 4, class: 'tick-mark' }));
    const tx = svg('text', { x: X(t), y: H - 6, 'text-anchor': 'middle', class: 'tick' });
    tx.textContent = timeLabel(t, step);
    xAxis.append(tx);
  }
  root.append(grid);
  if (opts.baseline && opts.baseline.to > t0) {
    const bx0 = Math.max(X(opts.baseline.from), M.l), bx1 = Math.min(X(opts.baseline.to), W - M.r);
    if (bx1 > bx0) root.append(svg('rect', { x: bx0, y: M.t, width: bx1 - bx0, height: ph, class: 'baseline-band' }));
  }
  root.append(yAxis, xAxis, svg('line', { x1: M.l, x2: W - M.r, y1: M.t + ph, y2: M.t + ph, class: 'axis-line' }));
  for (const s of series) {
    const pts = points.filter((p) => p[s.key] != null);
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${X(p.t).toFixed(1)},${Y(p[s.key]).toFixed(1)}`).join(' ');
    if (d) root.append(svg('path', { d, stroke: s.colour, fill: 'none', 'stroke-width': 1.8, class: 'series' }));
    if (pts.length === 1) root.append(svg('circle', { cx: X(pts[0].t), cy: Y(pts[0][s.key]), r: 3, fill: s.colour }));
    // The baseline's mean, dashed across the current part.
    if (opts.baseline) {
      const base = pts.filter((p) => p.t < opts.baseline.to);
      const now = pts.filter((p) => p.t >= opts.baseline.to);
      if (base.length && now.length) {
        const mean = base.reduce((a, p) => a + p[s.key], 0) / base.length;
        root.append(svg('line', { x1: X(now[0].t), x2: W - M.r, y1: Y(mean), y2: Y(mean), stroke: s.colour, class: 'baseline-line' }));
      }
    }
  }
  for (const m of opts.marks || []) {
    if (m.t < t0 || m.t > t1) continue;
    const g = svg('g', { class: 'finding-mark', 'data-mark': m.label });
    g.append(svg('line', { x1: X(m.t), x2: X(m.t), y1: M.t, y2: M.t + ph }));
    const title = svg('title');
    title.textContent = `${m.label} from ${new Date(m.t).toISOString().slice(11, 19)} UTC`;
    g.append(title);
    root.append(g);
  }
  crosshair(root, points, series, { X, t0, t1, M, W, H, ph, unit: opts.unit });
  return root;
}

// A vertical line under the pointer and the values of the nearest point, in a box that
// stays inside the chart.
function crosshair(root, points, series, g) {
  if (!points.length) return;
  const line = svg('line', { y1: g.M.t, y2: g.M.t + g.ph, class: 'crosshair hidden' });
  const box = svg('g', { class: 'crosshair-box hidden' });
  const bg = svg('rect', { rx: 3 });
  const text = svg('text', {});
  box.append(bg, text);
  const hit = svg('rect', { x: g.M.l, y: g.M.t, width: g.W - g.M.l - g.M.r, height: g.ph, fill: 'transparent' });
  root.append(line, box, hit);
  const show = (ev) => {
    const r = root.getBoundingClientRect();
    const x = (ev.clientX - r.left) * (g.W / r.width);
    let best = points[0];
    for (const p of points) if (Math.abs(g.X(p.t) - x) < Math.abs(g.X(best.t) - x)) best = p;
    const px = g.X(best.t);
    line.setAttribute('x1', px); line.setAttribute('x2', px);
    const rows = [new Date(best.t).toISOString().slice(11, 19) + ' UTC',
      ...series.map((s) => `${s.label}: ${best[s.key] == null ? '–' : fmtUnit(g.unit, best[s.key])}`)];
    text.replaceChildren(...rows.map((row, i) => { const t = svg('tspan', { x: 6, dy: i ? 13 : 12 }); t.textContent = row; return t; }));
    const w = 8 + 6.5 * Math.max(...rows.map((x) => x.length)), h = 6 + 13 * rows.length;
    bg.setAttribute('width', w); bg.setAttribute('height', h);
    const bx = px + 8 + w > g.W ? px - 8 - w : px + 8;
    box.setAttribute('transform', `translate(${bx},${g.M.t})`);
    line.classList.remove('hidden'); box.classList.remove('hidden');
  };
  hit.addEventListener('mousemove', show);
  hit.addEventListener('mouseleave', () => { line.classList.add('hidden'); box.classList.add('hidden'); });
}

// Latency against load: one dot per time bucket, rate across, latency up.
export function scatterChart(points, xKey, yKey, opts) {
  const W = Math.max(240, opts.width || 400), H = opts.height || 140;
  const root = svg('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-unit': opts.yUnit, 'data-chart': opts.id || '' });
  const pw = W - M.l - M.r, ph = H - M.t - M.b - 10;
  const xt = valueTicks(Math.max(1e-9, ...points.map((p) => p[xKey] || 0)));
  const yt = valueTicks(Math.max(1e-9, ...points.map((p) => p[yKey] || 0)));
  const xTop = xt[xt.length - 1], yTop = yt[yt.length - 1];
  const X = (v) => M.l + pw * v / xTop, Y = (v) => M.t + ph - ph * v / yTop;
  const yAxis = svg('g', { class: 'axis', 'data-axis': 'y' }), xAxis = svg('g', { class: 'axis', 'data-axis': 'x' });
  const grid = svg('g', { class: 'grid' });
  for (const v of yt) {
    grid.append(svg('line', { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v) }));
    const t = svg('text', { x: M.l - 5, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick' }); t.textContent = fmtUnit(opts.yUnit, v); yAxis.append(t);
  }
  for (const v of xt) {
    const t = svg('text', { x: X(v), y: M.t + ph + 14, 'text-anchor': 'middle', class: 'tick' }); t.textContent = fmtUnit(opts.xUnit, v); xAxis.append(t);
  }
  const title = svg('text', { x: M.l + pw / 2, y: H - 3, 'text-anchor': 'middle', class: 'tick' });
  title.textContent = opts.xLabel;
  root.append(grid, yAxis, xAxis, title, svg('line', { x1: M.l, x2: W - M.r, y1: M.t + ph, y2: M.t + ph, class: 'axis-line' }));
  for (const p of points) {
    if (p[xKey] == null || p[yKey] == null) continue;
    const c = svg('circle', { cx: X(p[xKey]), cy: Y(p[yKey]), r: 3.5, class: 'dot' });
    const tt = svg('title');
    tt.textContent = `${new Date(p.t).toISOString().slice(11, 19)} UTC: ${fmtUnit(opts.xUnit, p[xKey])}, ${fmtUnit(opts.yUnit, p[yKey])}`;
    c.append(tt);
    root.append(c);
  }
  return root;
}

// Horizontal bars with a legend: [{ label, value, colour, pattern }] against one scale.
export function barsChart(rows, unit, id) {
  const max = Math.max(1e-9, ...rows.map((r) => r.value));
  return el('div', { class: 'bars', 'data-chart': id || '' },
    rows.map((r) => el('div', { class: 'bar-row' },
      el('span', { class: 'bar-label' }, r.label),
      el('span', { class: 'bar-track' }, el('span', { class: 'bar-fill' + (r.pattern ? ' ' + r.pattern : ''), style: `width:${(100 * r.value / max).toFixed(1)}%;background:${r.colour}` })),
      el('span', { class: 'bar-value' }, fmtUnit(unit, r.value)))));
}

// A legend of coloured swatches.
export function legend(items) {
  return el('div', { class: 'chart-legend' }, items.map((i) => el('span', {}, el('i', { class: 'swatch' + (i.dashed ? ' dashed' : ''), style: `background:${i.colour}` }), i.label)));
}
