// The runs page and the run page: poll the JSON API and redraw what changed.
"use strict";

const POLL_MS = 1000;

async function getJSON(url) {
  const response = await fetch(url, {cache: "no-store"});
  const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else if (k === "text") el.textContent = v; else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function fmtNum(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e7) return String(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return v.toFixed(a >= 100 ? 1 : 3);
}

function stateBadge(state) {
  return h("span", {class: `badge state-${state}`, "data-state": state}, state);
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// ---- runs page --------------------------------------------------------------------------

async function refreshRuns() {
  try {
    const data = await getJSON("/api/runs");
    document.getElementById("root-url").textContent = data.url;
    const body = document.querySelector("#runs tbody");
    body.innerHTML = "";
    for (const run of data.runs) {
      const link = h("a", {href: `/runs/${encodeURIComponent(run.rid)}`, class: "rid"}, run.rid);
      if (run.error) {
        body.append(h("tr", {"data-rid": run.rid}, h("td", {}, link), h("td", {colspan: 7, class: "bad"}, run.error)));
        continue;
      }
      const draws = run.draws.map(d => `${d.warmup} / ${d.posterior}`).join(", ") || "–";
      body.append(h("tr", {"data-rid": run.rid},
        h("td", {}, link), h("td", {}, fmtDate(run.created_at)), h("td", {}, run.sampler || "–"),
        h("td", {class: "num"}, run.chains), h("td", {class: "draws"}, draws),
        h("td", {class: "vars"}, run.variables.join(", ")), h("td", {class: "num"}, fmtBytes(run.size)),
        h("td", {}, stateBadge(run.state))));
    }
    document.getElementById("empty").hidden = data.runs.length > 0;
    showError("");
  } catch (e) {
    showError(`Cannot list runs: ${e.message}`);
  }
}

// ---- run page ---------------------------------------------------------------------------

const view = {rid: null, meta: null, lengths: "", drawsKey: "", diagKey: "", busy: false, diagBusy: false};

function selectedVariable() {
  const [group, name] = document.getElementById("var").value.split("\u0000");
  const element = Number(document.getElementById("element").value || 0);
  return {group, name, element};
}

function fillVariables(meta) {
  const select = document.getElementById("var");
  select.innerHTML = "";
  for (const [label, list] of [["Variables", meta.variables], ["Sampler stats", meta.sample_stats]]) {
    const group = h("optgroup", {label});
    for (const v of list.filter(v => v.plottable)) {
      group.append(h("option", {value: `${v.group}\u0000${v.name}`}, v.name));
    }
    if (group.children.length) select.append(group);
  }
  const lp = meta.sample_stats.find(v => v.name === "lp" && v.plottable);
  const first = meta.variables.find(v => v.plottable) || lp;
  if (first) select.value = `${first.group}\u0000${first.name}`;
  fillElements();
}

function fillElements() {
  const {group, name} = selectedVariable();
  const list = group === "sample_stats" ? view.meta.sample_stats : view.meta.variables;
  const v = list.find(v => v.name === name);
  const select = document.getElementById("element");
  select.innerHTML = "";
  (v ? v.elements : []).forEach((label, i) => select.append(h("option", {value: i}, label || "(scalar)")));
  select.disabled = !v || v.elements.length <= 1;
}

function keyValueTable(target, entries) {
  target.innerHTML = "";
  if (!entries.length) { target.append(h("tr", {}, h("td", {class: "muted"}, "none"))); return; }
  for (const [k, v] of entries) {
    const text = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
    target.append(h("tr", {}, h("th", {}, k), h("td", {}, text)));
  }
}

function renderMeta(meta) {
  document.getElementById("rid").textContent = meta.rid;
  document.title = `${meta.rid} – mcbackend`;
  document.getElementById("created").textContent = fmtDate(meta.created_at);
  document.getElementById("format").textContent = meta.format;
  document.getElementById("size").textContent = fmtBytes(meta.size);
  document.getElementById("download").href = `/runs/${encodeURIComponent(meta.rid)}/download`;
  keyValueTable(document.querySelector("#sampler tbody"), Object.entries(meta.sampler));
  keyValueTable(document.querySelector("#attributes tbody"), Object.entries(meta.attributes));
  keyValueTable(document.querySelector("#coords tbody"), Object.entries(meta.coords).map(
    ([k, c]) => [k, c.values.join(", ") + (c.size > c.values.length ? ` … (${c.size})` : "")]));
  const vars = document.querySelector("#variables tbody");
  vars.innerHTML = "";
  for (const v of [...meta.variables, ...meta.sample_stats]) {
    vars.append(h("tr", {}, h("td", {}, v.name), h("td", {}, v.group === "posterior" ? (v.deterministic ? "deterministic" : "variable") : "stat"),
      h("td", {}, v.dtype), h("td", {}, v.shape ? `(${v.shape.join(", ")})` : "ragged"), h("td", {}, v.dims.join(", "))));
  }
}

function renderProgress(progress) {
  const body = document.querySelector("#progress tbody");
  body.innerHTML = "";
  const expected = progress.expected_draws_per_chain;
  let total = 0;
  for (const c of progress.chains) {
    total += c.draws;
    const share = expected ? Math.min(1, c.draws / expected) : null;
    const bar = h("div", {class: "bar"}, h("div", {class: "fill", style: `width:${(share === null ? 1 : share) * 100}%`}));
    if (c.in_warmup) bar.firstChild.classList.add("warmup");
    body.append(h("tr", {"data-chain": c.chain},
      h("td", {}, h("i", {class: "swatch", style: `background:${chainColor(c.chain)}`}), ` ${c.chain}`),
      h("td", {class: "num draws"}, c.draws), h("td", {class: "num"}, c.warmup), h("td", {class: "num"}, c.posterior),
      h("td", {class: "num"}, c.draws_per_second ? c.draws_per_second.toFixed(1) : "–"),
      h("td", {class: c.divergences ? "num bad" : "num", title: `${c.warmup_divergences} more during warm-up`},
        c.divergences, h("span", {class: "muted"}, c.warmup_divergences ? ` (+${c.warmup_divergences} warm-up)` : "")),
      h("td", {class: "progress-cell"}, bar, expected ? ` ${Math.round(share * 100)}%` : "")));
  }
  const state = document.getElementById("state");
  state.innerHTML = "";
  state.append(stateBadge(progress.state));
  document.getElementById("total-draws").textContent = total;
}

function renderDraws(data) {
  const label = `${data.var}${(view.meta && elementLabel(data)) || ""}`;
  const series = [], markers = [], bands = [];
  let maxWarmup = 0, divergent = 0;
  for (const t of data.traces) {
    series.push({x: t.x, y: t.y, color: chainColor(t.chain), label: `chain ${t.chain}`, width: 1});
    maxWarmup = Math.max(maxWarmup, t.warmup);
    if (t.divergent && t.divergent.x.length) {
      markers.push({x: t.divergent.x, y: t.divergent.y, color: "#d62728", label: `divergent ${t.chain}`});
      divergent += t.divergent.count;
    }
  }
  if (maxWarmup) bands.push({x0: 0, x1: maxWarmup, fill: "#f3f0e6", label: "warm-up"});
  const maxDraws = Math.max(1, ...data.traces.map(t => t.draws));
  drawChart(document.getElementById("trace"), {series, markers, bands, height: 280,
    xRange: [0, maxDraws - 1], xlabel: "draw", ylabel: label});
  const legend = data.traces.map(t => ({color: chainColor(t.chain), label: `chain ${t.chain}`}));
  if (divergent) legend.push({color: "#d62728", label: `divergent (${divergent})`, cross: true});
  drawLegend(document.getElementById("trace-legend"), legend);

  const rank = data.rank;
  const rankSeries = rank.chains.map((counts, i) => ({
    x: [...counts.map((_, b) => b), counts.length], y: [...counts, counts[counts.length - 1]],
    color: chainColor(data.traces[i].chain), step: true, width: 1.6}));
  drawChart(document.getElementById("rank"), {series: rankSeries.filter(s => s.y.length > 1),
    hlines: [{y: 1 / rank.bins, color: "#666"}], xRange: [0, rank.bins], height: 230,
    xlabel: `rank bin (of ${rank.bins})`, ylabel: "share of chain's draws"});
  const dens = data.density;
  drawChart(document.getElementById("density"), {height: 230, xlabel: label, ylabel: "density",
    series: dens.chains.map((y, i) => ({x: dens.x, y, color: chainColor(data.traces[i].chain), width: 1.6}))});
  const empty = !dens.x.length;
  document.getElementById("posterior-note").hidden = !empty;
}

function elementLabel(data) {
  const list = data.group === "sample_stats" ? view.meta.sample_stats : view.meta.variables;
  const v = list.find(v => v.name === data.var);
  return v && v.elements.length > 1 ? v.elements[data.element] : "";
}

function renderDiagnostics(diag) {
  const table = document.getElementById("diagnostics");
  table.querySelector("thead").innerHTML = "";
  const body = table.querySelector("tbody");
  body.innerHTML = "";
  document.getElementById("diag-note").textContent =
    diag.note || `${diag.chains} chains × ${diag.draws} posterior draws`;
  if (!diag.columns.length) return;
  table.querySelector("thead").append(h("tr", {}, h("th", {}, ""), ...diag.columns.map(c => h("th", {}, c))));
  for (const row of diag.rows) {
    const rhat = diag.columns.indexOf("r_hat");
    const cells = row.values.map((v, i) => h("td", {
      class: i === rhat && v !== null && v > 1.01 ? "num bad" : "num", "data-value": v === null ? "" : String(v)}, fmtNum(v)));
    body.append(h("tr", {"data-label": row.label}, h("th", {}, row.label), ...cells));
  }
}

async function pollRun() {
  if (view.busy) return;
  view.busy = true;
  const rid = encodeURIComponent(view.rid);
  try {
    const progress = await getJSON(`/api/runs/${rid}/progress`);
    renderProgress(progress);
    const lengths = progress.chains.map(c => c.draws).join(",");
    const sel = selectedVariable();
    const drawsKey = `${lengths}|${sel.group}|${sel.name}|${sel.element}`;
    if (sel.name && drawsKey !== view.drawsKey) {
      const points = Math.min(4000, Math.max(200, Math.floor(document.getElementById("trace").clientWidth * 2)));
      const q = new URLSearchParams({var: sel.name, group: sel.group, element: sel.element, points});
      renderDraws(await getJSON(`/api/runs/${rid}/draws?${q}`));
      view.drawsKey = drawsKey;
    }
    view.lengths = lengths;
    if (lengths !== view.diagKey) pollDiagnostics();
    showError("");
  } catch (e) {
    showError(e.message);
  } finally {
    view.busy = false;
  }
}

// The summary takes longer on big runs: fetched on its own, never holding up the plots.
async function pollDiagnostics() {
  if (view.diagBusy) return;
  view.diagBusy = true;
  try {
    const diag = await getJSON(`/api/runs/${encodeURIComponent(view.rid)}/diagnostics`);
    renderDiagnostics(diag);
    view.diagKey = diag.lengths.join(",");  // the draws it summarised: asked again if fewer
  } catch (e) {
    document.getElementById("diag-note").textContent = `Diagnostics failed: ${e.message}`;
    view.diagKey = view.lengths;
  } finally {
    view.diagBusy = false;
  }
}

async function startRunPage() {
  view.rid = document.body.dataset.rid;
  try {
    view.meta = await getJSON(`/api/runs/${encodeURIComponent(view.rid)}`);
  } catch (e) {
    showError(e.message);
    return;
  }
  renderMeta(view.meta);
  fillVariables(view.meta);
  document.getElementById("var").addEventListener("change", () => { fillElements(); view.drawsKey = ""; pollRun(); });
  document.getElementById("element").addEventListener("change", () => { view.drawsKey = ""; pollRun(); });
  window.addEventListener("resize", () => { view.drawsKey = ""; });
  await pollRun();
  setInterval(pollRun, POLL_MS);
}

window.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "runs") {
    refreshRuns();
    setInterval(refreshRuns, 2 * POLL_MS);
  } else if (document.body.dataset.page === "run") {
    startRunPage();
  }
});
