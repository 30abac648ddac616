// Small SVG charts (line, step and marker series with axes), drawn without any library so the
// viewer works offline and ships only what it uses.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHAIN_COLORS = ["#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59",
                      "#e76300", "#b9ac70", "#717581", "#92dadd"];

function chainColor(i) { return CHAIN_COLORS[i % CHAIN_COLORS.length]; }

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

// About `count` round tick values covering [lo, hi].
function niceTicks(lo, hi, count) {
  if (!isFinite(lo) || !isFinite(hi)) return [];
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  const raw = (hi - lo) / Math.max(count, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

function formatTick(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

function extent(values, pad) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v !== null && isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const p = (hi - lo) * (pad || 0);
  return [lo - p, hi + p];
}

// series: [{x: [...], y: [...], color, width, dash, step, label}]
// markers: [{x: [...], y: [...], color, symbol}]; bands: [{x0, x1, fill, label}]
// hlines: [{y, color, dash}]
function drawChart(container, spec) {
  container.innerHTML = "";
  const width = container.clientWidth || 600;
  const height = spec.height || 260;
  const m = {top: 12, right: 14, bottom: 38, left: 58};
  const svg = svgEl("svg", {width, height, viewBox: `0 0 ${width} ${height}`, class: "chart"}, container);
  const allX = [], allY = [];
  for (const s of spec.series || []) { allX.push(...s.x); allY.push(...s.y); }
  for (const h of spec.hlines || []) allY.push(h.y);
  const [x0, x1] = spec.xRange || extent(allX, 0);
  const [y0, y1] = spec.yRange || extent(allY, 0.05);
  const W = width - m.left - m.right, H = height - m.top - m.bottom;
  const sx = x => m.left + (x1 === x0 ? W / 2 : (x - x0) / (x1 - x0) * W);
  const sy = y => m.top + H - (y1 === y0 ? H / 2 : (y - y0) / (y1 - y0) * H);

  for (const b of spec.bands || []) {
    const a = Math.max(sx(b.x0), m.left), z = Math.min(sx(b.x1), m.left + W);
    if (z > a) {
      svgEl("rect", {x: a, y: m.top, width: z - a, height: H, fill: b.fill || "#f1f1f4"}, svg);
      if (b.label) {
        const t = svgEl("text", {x: a + 4, y: m.top + 12, class: "band-label"}, svg);
        t.textContent = b.label;
      }
    }
  }
  const grid = svgEl("g", {class: "grid"}, svg);
  for (const t of niceTicks(y0, y1, 5)) {
    svgEl("line", {x1: m.left, x2: m.left + W, y1: sy(t), y2: sy(t)}, grid);
    const label = svgEl("text", {x: m.left - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick"}, svg);
    label.textContent = formatTick(t);
  }
  for (const t of niceTicks(x0, x1, Math.max(2, Math.floor(W / 90)))) {
    svgEl("line", {x1: sx(t), x2: sx(t), y1: m.top + H, y2: m.top + H + 4, class: "axis"}, svg);
    const label = svgEl("text", {x: sx(t), y: m.top + H + 17, "text-anchor": "middle", class: "tick"}, svg);
    label.textContent = formatTick(t);
  }
  svgEl("rect", {x: m.left, y: m.top, width: W, height: H, class: "frame"}, svg);
  if (spec.xlabel) {
    const t = svgEl("text", {x: m.left + W / 2, y: height - 4, "text-anchor": "middle", class: "axis-label"}, svg);
    t.textContent = spec.xlabel;
  }
  if (spec.ylabel) {
    const t = svgEl("text", {x: 12, y: m.top + H / 2, "text-anchor": "middle", class: "axis-label",
                             transform: `rotate(-90 12 ${m.top + H / 2})`}, svg);
    t.textContent = spec.ylabel;
  }
  const plot = svgEl("g", {class: "plot"}, svg);
  for (const h of spec.hlines || []) {
    svgEl("line", {x1: m.left, x2: m.left + W, y1: sy(h.y), y2: sy(h.y), stroke: h.color || "#555",
                   "stroke-dasharray": h.dash || "4 4", "stroke-width": 1}, plot);
  }
  for (const s of spec.series || []) {
    let d = "";
    let pen = false;
    for (let i = 0; i < s.x.length; i++) {
      const y = s.y[i];
      if (y === null || !isFinite(y)) { pen = false; continue; }
      const X = sx(s.x[i]).toFixed(1), Y = sy(y).toFixed(1);
      if (s.step && pen) d += `H${X}`;
      d += (pen ? "L" : "M") + X + "," + Y;
      pen = true;
    }
    svgEl("path", {d, fill: "none", stroke: s.color, "stroke-width": s.width || 1,
                   "stroke-opacity": s.opacity || 0.9, "stroke-dasharray": s.dash || "",
                   "data-label": s.label || "", class: "series"}, plot);
  }
  for (const mk of spec.markers || []) {
    const g = svgEl("g", {class: "markers", "data-label": mk.label || ""}, plot);
    for (let i = 0; i < mk.x.length; i++) {
      if (mk.y[i] === null) continue;
      const X = sx(mk.x[i]), Y = sy(mk.y[i]);
      svgEl("path", {d: `M${X - 4},${Y + 4}L${X + 4},${Y - 4}M${X - 4},${Y - 4}L${X + 4},${Y + 4}`,
                     stroke: mk.color || "#d00", "stroke-width": 1.6, class: "marker"}, g);
    }
  }
  return svg;
}

function drawLegend(container, items) {
  container.innerHTML = "";
  for (const it of items) {
    const span = document.createElement("span");
    span.className = "legend-item";
    const sw = document.createElement("i");
    sw.style.background = it.color;
    if (it.cross) { sw.className = "cross"; sw.style.background = "none"; sw.style.color = it.color; sw.textContent = "×"; }
    span.append(sw, document.createTextNode(it.label));
    container.appendChild(span);
  }
}
