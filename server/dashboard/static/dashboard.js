// Perennial admin dashboard: reads the gateway's admin JSON API, draws tables and inline SVG
// line charts, and promotes / rolls back through the same API.
//
// Security: the admin key lives in this tab's sessionStorage only and travels as an
// Authorization header to this origin (the page's CSP allows no other). Everything from the
// database (suite names, reasons, errors) is rendered with textContent, never innerHTML.
"use strict";

const KEY_STORE = "perennial.adminKey";
const REFRESH_MS = 10000;
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

const $ = (id) => document.getElementById(id);
const state = { versions: [], rounds: [], serving: null, selectedRound: null, pending: null,
  busy: false, refreshing: false, again: false, openChecks: new Set() };

class AuthError extends Error {}

// ---- small helpers ------------------------------------------------------------------------

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k === "className" ? "class" : k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

// A finite number or null (JSON may hold null, strings or nothing).
const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);

function fmtNum(x) {
  const v = num(x);
  if (v === null) return "—";
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

const fmtTime = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "—");

function showBanner(text, kind) {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = `banner ${kind}`;
  banner.hidden = !text;
}

// ---- the admin API ----------------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY_STORE) || ""}` };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    // not JSON: the status below says what happened
  }
  const message = payload && payload.error && payload.error.message;
  if (response.status === 401) {
    signOut(`The gateway refused the key: ${message || "unauthorized"}`);
    throw new AuthError(message || "unauthorized");
  }
  if (!response.ok) throw new Error(message || `HTTP ${response.status} from ${path}`);
  return payload;
}

// ---- key prompt ---------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  clearData();
  for (const id of ["dashboard", "status", "controls"]) $(id).hidden = true;
  $("login").hidden = false;
  $("key-error").textContent = message || "";
  $("key-error").hidden = !message;
  $("key-input").value = "";
  $("key-input").focus();
}

function clearData() {
  for (const id of ["versions-table", "rounds-table", "audit-table", "iterations-table"]) {
    $(id).tBodies[0].replaceChildren();
  }
  const emptied = ["chart-rounds", "chart-rounds-kl", "forgetting-plot", "chart-iter-fitness",
    "chart-iter-update", "round-select"];
  for (const id of emptied) {
    $(id).replaceChildren();
  }
  for (const id of ["served-version", "model-name", "engine-state", "learner-state"]) {
    $(id).textContent = "";
  }
  Object.assign(state, { versions: [], rounds: [], serving: null, selectedRound: null });
  showBanner("", "");
}

function showDashboard() {
  $("login").hidden = true;
  $("key-error").hidden = true;
  for (const id of ["dashboard", "status", "controls"]) $(id).hidden = false;
}

// ---- loading everything -------------------------------------------------------------------

async function refresh() {
  if (!sessionStorage.getItem(KEY_STORE)) return signOut("");
  if (state.refreshing) {
    state.again = true; // e.g. a promote finished during an auto-refresh: load once more
    return;
  }
  state.refreshing = true;
  try {
    const [versions, rounds, audit, engine, learner] = await Promise.all([
      api("/admin/versions"), api("/admin/learner/rounds?limit=100"),
      api("/admin/audit?limit=50"), api("/admin/engine"), api("/admin/learner"),
    ]);
    Object.assign(state, { versions: versions.data, rounds: rounds.data, serving: versions.serving });
    renderStatus(versions.serving, engine, learner);
    renderVersions(versions.data);
    renderRoundsChart();
    renderForgettingPlot();
    renderRounds(rounds.data);
    renderAudit(audit.data);
    showDashboard();
    await renderRoundDetail();
  } catch (err) {
    if (!(err instanceof AuthError)) showBanner(`Could not load the dashboard: ${err.message}`, "error");
  } finally {
    state.refreshing = false;
    if (state.again) {
      state.again = false;
      refresh();
    }
  }
}

function renderStatus(serving, engine, learner) {
  $("served-version").textContent = serving;
  $("model-name").textContent = engine.model || "—";
  const restarts = engine.restarts ? `, ${engine.restarts} restart(s)` : "";
  $("engine-state").textContent = `${engine.state}${restarts}`;
  const running = learner.running ? `, round #${learner.running} running` : "";
  $("learner-state").textContent = `${learner.mode}${running}`;
  document.title = `Perennial · serving ${serving}`;
}

// ---- versions -------------------------------------------------------------------------------

// A round stores the whole gate record (decide() + thresholds + KL + scores) as the decision's
// checks; a decision recorded by hand may hold a bare list of checks, or nothing.
function gateRecord(version) {
  const c = version.gate && version.gate.checks;
  return c && !Array.isArray(c) ? c : {};
}

function gateChecks(version) {
  const c = version.gate && version.gate.checks;
  if (Array.isArray(c)) return c;
  return Array.isArray(gateRecord(version).checks) ? gateRecord(version).checks : [];
}

// Scores and the gate's intervals are fractions in [0, 1]: shown as signed points (x100).
function fmtPoints(x, missing = "—") {
  const v = num(x);
  if (v === null) return missing;
  const p = 100 * v;
  return `${p >= 0 ? "+" : ""}${p.toFixed(1)}`;
}

// "95%" from 0.95 (one decimal at most: "97.5%"); "" when unknown.
function fmtLevel(confidence) {
  const c = num(confidence);
  return c === null || c <= 0 || c >= 1 ? "" : `${Number((100 * c).toFixed(1))}%`;
}

// A check's paired interval {mean, low, high, level}, or null (older records have none; a suite
// check that failed closed holds null).
function checkInterval(check) {
  const ci = check && typeof check === "object" ? check.interval : null;
  if (!ci || typeof ci !== "object") return null;
  const [mean, low, high] = [num(ci.mean), num(ci.low), num(ci.high)];
  if (mean === null || low === null || high === null) return null;
  return { mean, low, high, level: fmtLevel(ci.confidence) };
}

// A suite check of the interval era (its value and limit are differences: candidate - reference).
// Older suite checks have no "interval" key: their value and limit were scores.
const isIntervalSuiteCheck = (c) => typeof c.name === "string" && c.name.startsWith("suite:")
  && Object.prototype.hasOwnProperty.call(c, "interval");

// "95% CI" when the intervals share one level, else "CI".
function ciLabel(intervals) {
  const levels = new Set(intervals.filter(Boolean).map((ci) => ci.level).filter(Boolean));
  return levels.size === 1 ? `${[...levels][0]} CI` : "CI";
}

// The held-out target's interval is in nats/token (reference log-likelihood), not points.
function fmtNats(x, missing = "—") {
  const v = num(x);
  return v === null ? missing : `${v >= 0 ? "+" : ""}${v.toFixed(4)}`;
}

function checkRow(c) {
  const ci = checkInterval(c);
  const points = isIntervalSuiteCheck(c);
  // a greedy-scored target (PERENNIAL_LEARNER_TARGET_SCORING=greedy) reads in points, as its detail says
  const greedy = c.name === "target_gain" && String(c.detail || "").includes(" points [");
  const fmt = points || greedy ? fmtPoints : c.name === "target_gain" && ci ? fmtNats : fmtNum;
  const value = fmt(c.value);
  const limit = fmt(c.limit);
  const unit = c.name === "target_gain" ? (greedy ? " points" : " nats/token") : "";
  const interval = ci ? `[${fmt(ci.low)}, ${fmt(ci.high)}]${unit}` : "-";
  return el("tr", { class: c.passed ? "pass" : "fail", title: c.detail ? String(c.detail) : "" },
    el("td", {}, c.name === undefined || c.name === null ? "" : String(c.name)),
    el("td", {}, value), el("td", {}, limit), el("td", { class: "ci" }, interval),
    el("td", {}, c.passed ? "✓" : "✗"));
}

function gateCell(version) {
  const gate = version.gate;
  if (!gate) return el("span", { class: "muted" }, "no decision");
  const cell = el("div", { class: "gate" },
    el("span", { class: `badge ${gate.promote ? "pass" : "fail"}` }, gate.promote ? "passed" : "failed"),
    el("ul", { class: "reasons" }, ...(gate.reasons || []).map((r) => el("li", {}, String(r)))));
  const checks = gateChecks(version).filter((c) => c && typeof c === "object");
  if (!checks.length) return cell;
  const rows = checks.map(checkRow);
  const passed = checks.filter((c) => c.passed).length;
  const headers = ["check", "value", "limit", ciLabel(checks.map(checkInterval)), ""];
  const details = el("details", { open: state.openChecks.has(version.id) },
    el("summary", {}, `${passed}/${checks.length} checks passed`),
    el("table", { class: "checks" },
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
  // Keep it open across auto-refreshes.
  details.addEventListener("toggle", () => {
    if (details.open) state.openChecks.add(version.id);
    else state.openChecks.delete(version.id);
  });
  cell.append(details);
  return cell;
}

function versionActions(v) {
  if (v.serving) return el("span", { class: "badge serving" }, "serving");
  if (v.status === "promoted") {
    return el("button", { type: "button", class: "rollback-to", "data-version": v.id,
      onclick: () => confirmRollback(v.id) }, "Roll back to this");
  }
  if (v.status !== "candidate" && v.status !== "rejected") return "";
  const approved = Boolean(v.gate && v.gate.promote);
  return el("button", { type: "button", class: approved ? "promote" : "promote danger",
    "data-version": v.id, onclick: () => confirmPromote(v) }, approved ? "Promote" : "Force promote…");
}

function renderVersions(versions) {
  const rows = versions.map((v) => el("tr", { "data-version": v.id, class: v.serving ? "serving" : "" },
    el("td", {}, el("strong", {}, v.id)),
    el("td", {}, v.parent || "—"),
    el("td", {}, el("span", { class: `badge status-${v.status}` }, v.status)),
    el("td", {}, `${fmtNum((v.metrics || {}).target)} / ${fmtNum((v.metrics || {}).drift)}`),
    el("td", {}, fmtTime(v.created_at)),
    el("td", {}, fmtTime(v.promoted_at)),
    el("td", {}, fmtTime(v.served_at)),
    el("td", {}, gateCell(v)),
    el("td", { class: "disk" }, diskCell(v.disk)),
    el("td", {}, versionActions(v))));
  $("versions-table").tBodies[0].replaceChildren(...rows);
}

// Weights on disk, or the seed log a dropped snapshot is rebuilt from (retention policy).
function diskCell(disk) {
  if (!disk) return "—";
  if (disk.stored) return `${(disk.weights_bytes / 1e6).toFixed(0)} MB`;
  return disk.seed_log_bytes == null ? "dropped" : `seed log ${(disk.seed_log_bytes / 1e3).toFixed(1)} kB`;
}

// ---- promote / rollback (with a confirmation) --------------------------------------------

function openDialog({ title, text, reasons = [], reasonRequired = false, action }) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-reasons").replaceChildren(...reasons.map((r) => el("li", {}, String(r))));
  $("confirm-reasons").hidden = !reasons.length;
  $("confirm-reason").value = "";
  $("confirm-reason-label").classList.toggle("required", reasonRequired);
  $("confirm-error").hidden = true;
  state.pending = action;
  $("confirm-dialog").showModal();
}

function confirmRollback(to) {
  const text = to
    ? `Stop serving ${state.serving} and serve ${to} again (hot swap, verified by checksum)?`
    : `Stop serving ${state.serving} and serve the version that served before it?`;
  openDialog({
    title: to ? `Roll back to ${to}` : "Roll back to the previous version",
    text,
    action: (reason) => api("/admin/rollback", { method: "POST", body: to ? { to, reason } : { reason } }),
  });
}

function confirmPromote(v) {
  const approved = Boolean(v.gate && v.gate.promote);
  const gateText = v.gate ? "The gate rejected it:" : "The gate has not judged it.";
  openDialog({
    title: approved ? `Promote ${v.id}` : `Force-promote ${v.id}`,
    text: approved
      ? `Serve ${v.id} instead of ${state.serving}? The gate approved it.`
      : `${gateText} Serving it anyway needs a reason, recorded in the audit log.`,
    reasons: approved ? [] : (v.gate && v.gate.reasons) || [],
    reasonRequired: !approved,
    action: (reason) => api(`/admin/versions/${encodeURIComponent(v.id)}/promote`,
      { method: "POST", body: approved ? { reason } : { force: true, reason } }),
  });
}

async function runPending() {
  if (!state.pending || state.busy) return;
  const ok = $("confirm-ok");
  state.busy = true;
  ok.disabled = true;
  ok.textContent = "Working…";
  try {
    const result = await state.pending($("confirm-reason").value.trim() || null);
    $("confirm-dialog").close();
    const pause = fmtNum(result.swap && result.swap.pause_to_resume_s);
    showBanner(`Now serving ${result.serving} (was ${result.previous}; engine paused ${pause} s).`, "ok");
    await refresh();
  } catch (err) {
    if (err instanceof AuthError) {
      $("confirm-dialog").close();
    } else {
      $("confirm-error").textContent = err.message; // the API's error.message
      $("confirm-error").hidden = false;
    }
  } finally {
    state.busy = false;
    ok.disabled = false;
    ok.textContent = "Confirm";
  }
}

// ---- forgetting curves ----------------------------------------------------------------------

function roundScores(v) {
  return gateRecord(v).scores || null;
}

function hasRoundData(v) {
  const m = v.metrics || {};
  return num(m.target) !== null || num(m.drift) !== null || roundScores(v) !== null;
}

// Across rounds: x = base, then each judged candidate in creation order; y = held-out target,
// each prior suite's score (the gate's measurement) and, on the right axis, drift from the base.
function renderRoundsChart() {
  const mode = $("lineage-select").value;
  const judged = state.versions.slice().reverse().filter((v) => v.id !== "base" && hasRoundData(v)
    && (mode === "all" || v.status === "promoted"));
  // the base's suite scores from the first round that scored suites (an early reject scores none)
  const first = judged.map(roundScores).find((sc) => sc && sc.base && sc.base.suites);
  const baseSuites = (first && first.base && first.base.suites) || {};
  const candSuites = (v) => ((roundScores(v) || {}).candidate || {}).suites || {};
  const names = new Set(Object.keys(baseSuites));
  judged.forEach((v) => Object.keys(candSuites(v)).forEach((n) => names.add(n)));
  // The first candidate's incumbent target, measured on its own held-out items, starts the line.
  const metric = (v, key) => num((v.metrics || {})[key]);
  const start = judged.length && judged[0].parent === "base" ? metric(judged[0], "incumbent_target") : null;
  const series = [{ name: "held-out target", values: [start, ...judged.map((v) => metric(v, "target"))] }];
  for (const name of [...names].sort()) {
    const values = [num(baseSuites[name]), ...judged.map((v) => num(candSuites(v)[name]))];
    series.push({ name: `suite ${name}`, values });
  }
  series.push({ name: "drift ‖θ−θ₀‖", axis: "right", dashed: true,
    values: [0, ...judged.map((v) => metric(v, "drift"))] });
  const xLabels = ["base", ...judged.map((v) => v.id)];
  const empty = "No judged candidates yet: the curves appear after the first round.";
  lineChart($("chart-rounds"), {
    title: "Per round: target and prior suites vs drift", xTitle: "version", xLabels,
    left: "score", right: "‖θ − θ₀‖₂", series: judged.length ? series : [], empty,
  });
  // Function-space drift: what the gate bounds (mean per-token KL on probe prompts).
  const kl = (v) => num((gateRecord(v).kl || {}).kl);
  const maxKl = (v) => num((gateRecord(v).thresholds || {}).max_kl);
  // KL is reported with every decision; a veto line only where the gate had max_kl set.
  const vetoed = judged.some((v) => maxKl(v) !== null);
  const klSeries = [{ name: "KL(candidate‖base)", values: [0, ...judged.map(kl)] }];
  if (vetoed) {
    klSeries.push({ name: "max_kl (gate)", dashed: true, values: [judged.map(maxKl)[0], ...judged.map(maxKl)] });
  }
  lineChart($("chart-rounds-kl"), {
    title: vetoed ? "Per round: KL(candidate ‖ base) vs the gate's max_kl" : "Per round: KL(candidate ‖ base) (reported)",
    xTitle: "version", xLabels, left: "nats / token", empty,
    series: judged.length ? klSeries : [],
  });
}

// ---- forgetting budget: candidate - base per suite, with the gate's intervals ----------------

const BUDGET_PEN = { stroke: "#b42318", "stroke-width": 1.5, "stroke-dasharray": "6 4" };

// Suite name -> the interval of its suite:<name>:base check (candidate - base), where usable.
function baseIntervals(v) {
  const out = new Map();
  for (const c of gateChecks(v)) {
    if (!c || typeof c !== "object" || typeof c.name !== "string") continue;
    const match = /^suite:(.+):base$/.exec(c.name);
    const ci = match ? checkInterval(c) : null;
    if (ci) out.set(match[1], { ci, passed: c.passed === true, limit: num(c.limit) });
  }
  return out;
}

// -max_total_drop of that record (its thresholds; else the base checks' limit), or null.
function budgetOf(v, intervals) {
  const thresholds = gateRecord(v).thresholds;
  const drop = thresholds && typeof thresholds === "object" ? num(thresholds.max_total_drop) : null;
  if (drop !== null) return -drop;
  const limits = [...intervals.values()].map((i) => i.limit).filter((l) => l !== null);
  return limits.length ? limits[0] : null;
}

// x = versions whose gate record has suite:*:base intervals, in creation order; y = candidate -
// base in points, one series of points with CI error bars per suite; the forgetting budget
// (-max_total_drop) dashed, zero solid. Filled markers: promoted / serving; hollow: the others.
function renderForgettingPlot() {
  const figure = $("forgetting-plot");
  const versions = Array.isArray(state.versions) ? state.versions.slice().reverse() : [];
  const judged = versions.filter((v) => v && typeof v === "object")
    .map((v) => ({ v, suites: baseIntervals(v) })).filter((p) => p.suites.size);
  figure.replaceChildren();
  if (!judged.length) {
    figure.append(el("p", { class: "empty" },
      "No gate record with per-suite confidence intervals yet: the plot appears after the first round."));
    return;
  }
  const names = [...new Set(judged.flatMap((p) => [...p.suites.keys()]))].sort();
  const xLabels = judged.map((p) => String(p.v.id));
  const budgets = judged.map((p) => budgetOf(p.v, p.suites));
  const intervals = judged.flatMap((p) => [...p.suites.values()].map((i) => i.ci));
  const level = ciLabel(intervals);
  const values = [0, ...budgets.filter((b) => b !== null).map((b) => 100 * b),
    ...intervals.flatMap((ci) => [100 * ci.low, 100 * ci.high, 100 * ci.mean])];

  const W = 640, PLOT_H = 260, M = { l: 60, r: 64, t: 30, b: 44 };
  const n = judged.length;
  const box = { W, PLOT_H, M, plotW: W - M.l - M.r, plotH: PLOT_H - M.t - M.b };
  const band = box.plotW / n;
  box.x = (i) => M.l + (i + 0.5) * band; // centred in bands: room for the suites side by side
  const legend = [...names.map((name, k) => ({ kind: "suite", name, color: COLORS[k % COLORS.length] })),
    { kind: "filled", name: "promoted / serving" }, { kind: "hollow", name: "not promoted" },
    { kind: "budget", name: "budget (−max_total_drop)" }, { kind: "bar", name: `${level} (gate)` }];
  const H = PLOT_H + Math.ceil(legend.length / 3) * 18 + 6;
  const title = "Forgetting budget: served vs base per suite";
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  root.append(svg("text", { x: M.l, y: 18, class: "chart-title" }, title));
  judged.forEach((p, i) => {
    if (!p.v.serving) return;
    root.append(svg("rect", { x: M.l + i * band, y: M.t, width: band, height: box.plotH,
      class: "serving-band", fill: "#eef8f1" }, svg("title", {}, `${xLabels[i]} serves now`)));
  });
  const axes = drawAxes(root, box, [{ values }],
    { xLabels, xTitle: "version", left: "candidate − base (points)" });
  const y = axes.left;
  root.append(svg("line", { x1: M.l, x2: W - M.r, y1: y(0), y2: y(0), class: "zero", stroke: "#667085" }));

  // The budget: one dashed segment per run of versions held to the same -max_total_drop, the
  // last one labelled (in the right margin when it reaches the plot's right edge).
  let last = null;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && budgets[j + 1] === budgets[i]) j += 1;
    if (budgets[i] !== null) {
      const yb = y(100 * budgets[i]);
      const text = `budget: candidate − base ≥ ${fmtPoints(budgets[i])} points (−max_total_drop)`;
      root.append(svg("line", { x1: M.l + i * band, x2: M.l + (j + 1) * band, y1: yb, y2: yb,
        class: "budget", "data-budget": fmtPoints(budgets[i]), ...BUDGET_PEN }, svg("title", {}, text)));
      last = { end: j, y: yb };
    }
    i = j + 1;
  }
  if (last) {
    const edge = last.end === n - 1;
    root.append(svg("text", { x: edge ? W - M.r + 6 : M.l + (last.end + 1) * band - 2,
      y: edge ? last.y + 4 : last.y - 4, class: `budget-label${edge ? "" : " inside"}` }, "budget"));
  }

  const step = Math.min(10, band / (names.length + 1));
  names.forEach((name, k) => {
    const color = COLORS[k % COLORS.length];
    const dx = (k - (names.length - 1) / 2) * step;
    const group = svg("g", { class: "ci-series", "data-series": name });
    judged.forEach((p, i) => {
      const item = p.suites.get(name);
      if (item) group.append(ciPoint(p.v, xLabels[i], name, item, budgets[i], box.x(i) + dx, y, color));
    });
    root.append(group);
  });
  legend.forEach((entry, k) => drawMarkerLegend(root, box, entry, k));
  figure.append(root);
}

// One suite's mean with its CI error bar at one version; filled if promoted or serving.
function ciPoint(v, label, suite, item, budget, x, y, color) {
  const { ci } = item;
  const filled = Boolean(v.serving) || v.status === "promoted";
  const status = v.serving ? "serving" : String(v.status || "?");
  const [xs, yl, yh] = [x.toFixed(1), y(100 * ci.low).toFixed(1), y(100 * ci.high).toFixed(1)];
  const [c0, c1] = [(x - 3).toFixed(1), (x + 3).toFixed(1)];
  const pen = { stroke: color, "stroke-width": 1.5 };
  const tip = `suite ${suite} at ${label} (${status}): ${fmtPoints(ci.mean)} points vs base `
    + `[${ci.level || "?"} CI ${fmtPoints(ci.low)}, ${fmtPoints(ci.high)}]`
    + (budget !== null ? `, budget ${fmtPoints(budget)}` : "") + (item.passed ? "" : "; the check failed");
  return svg("g", { class: `ci-point ${filled ? "filled" : "hollow"}`, "data-version": label,
    "data-status": status },
  svg("line", { x1: xs, x2: xs, y1: yl, y2: yh, class: "ci-bar", ...pen }),
  svg("line", { x1: c0, x2: c1, y1: yl, y2: yl, ...pen }),
  svg("line", { x1: c0, x2: c1, y1: yh, y2: yh, ...pen }),
  svg("circle", { cx: xs, cy: y(100 * ci.mean).toFixed(1), r: 4, stroke: color, "stroke-width": 1.8,
    fill: filled ? color : "#fff" }, svg("title", {}, tip)));
}

// Legend entries of the forgetting plot, laid out like drawLegendEntry's (three a row).
function drawMarkerLegend(root, box, entry, k) {
  const lx = box.M.l + (k % 3) * (box.plotW / 3);
  const ly = box.PLOT_H + 8 + Math.floor(k / 3) * 18;
  const grey = "#475467";
  if (entry.kind === "budget") {
    root.append(svg("line", { x1: lx, x2: lx + 22, y1: ly, y2: ly, class: "budget", ...BUDGET_PEN }));
  } else if (entry.kind === "bar") {
    const pen = { stroke: grey, "stroke-width": 1.5 };
    root.append(svg("line", { x1: lx + 11, x2: lx + 11, y1: ly - 6, y2: ly + 6, ...pen }));
    for (const yy of [ly - 6, ly + 6]) {
      root.append(svg("line", { x1: lx + 8, x2: lx + 14, y1: yy, y2: yy, ...pen }));
    }
  } else {
    const color = entry.kind === "suite" ? entry.color : grey;
    root.append(svg("circle", { cx: lx + 11, cy: ly, r: 4, stroke: color, "stroke-width": 1.8,
      fill: entry.kind === "hollow" ? "#fff" : color }));
  }
  const name = entry.kind === "suite" ? `suite ${entry.name}` : entry.name;
  root.append(svg("text", { x: lx + 28, y: ly + 4, class: "legend" }, name));
}

function defaultRound(rounds) {
  const useful = rounds.find((r) => r.status === "running" || r.candidate_version);
  return (useful || rounds[0]).id;
}

async function renderRoundDetail() {
  const select = $("round-select");
  const rounds = state.rounds;
  if (!rounds.length) {
    select.replaceChildren();
    for (const id of ["chart-iter-fitness", "chart-iter-update"]) {
      lineChart($(id), { title: "", xLabels: [], series: [], empty: "No learner rounds yet." });
    }
    $("iterations-table").tBodies[0].replaceChildren();
    return;
  }
  if (!rounds.some((r) => r.id === state.selectedRound)) state.selectedRound = defaultRound(rounds);
  const label = (r) => [`#${r.id} ${r.status}`, r.decision, r.candidate_version].filter(Boolean).join(" · ");
  select.replaceChildren(...rounds.map((r) => el("option", { value: String(r.id) }, label(r))));
  select.value = String(state.selectedRound);
  for (const row of $("rounds-table").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.round === String(state.selectedRound));
  }
  const run = await api(`/admin/learner/rounds/${state.selectedRound}`);
  renderIterations(run);
}

function renderIterations(run) {
  const its = run.iterations || [];
  const xs = its.map((i) => String(i.iteration));
  const col = (key) => its.map((i) => num(i[key]));
  lineChart($("chart-iter-fitness"), {
    title: `Round #${run.id}: fitness and target vs drift`, xTitle: "iteration", xLabels: xs,
    left: "fitness / target", right: "‖θ − θ₀‖₂", empty: `Round #${run.id} has no iterations.`,
    series: [
      { name: "fitness mean", values: col("fitness_mean") },
      { name: "fitness max", values: col("fitness_max") },
      { name: "target", values: col("target_score") },
      { name: "drift ‖θ−θ₀‖", axis: "right", dashed: true, values: col("drift") },
    ],
  });
  lineChart($("chart-iter-update"), {
    title: `Round #${run.id}: update size`, xTitle: "iteration", xLabels: xs,
    left: "‖Δθ‖₂", right: "sparsity", empty: `Round #${run.id} has no iterations.`,
    series: [
      { name: "update norm", values: col("update_norm") },
      { name: "update sparsity", axis: "right", dashed: true, values: col("update_sparsity") },
    ],
  });
  const timings = (t) => Object.entries(t || {}).map(([k, v]) => `${k} ${fmtNum(v)}`).join(", ");
  // The learner on Ray: per actor, the members it evaluated and its failures (one engine: "-").
  const actors = (w) => Object.entries(w || {}).map(([name, a]) =>
    `${name}${a.node ? ` (${a.node})` : ""}: ${a.members} members, ${fmtNum(a.evaluate_s)} s` +
    ((a.failures || []).length ? `; ${name} failed: ${a.failures.join("; ")}` : "")).join(" | ") || "-";
  $("iterations-table").tBodies[0].replaceChildren(...its.map((i) => el("tr", {},
    ...[i.iteration, fmtNum(i.fitness_mean), fmtNum(i.fitness_max), fmtNum(i.target_score),
      fmtNum(i.drift), fmtNum(i.update_norm), fmtNum(i.update_sparsity), fmtNum(i.wall_s),
      timings(i.timings)].map((c) => el("td", {}, String(c))),
    el("td", {class: "actors"}, actors(i.workers)))));
}

// ---- rounds and audit tables ------------------------------------------------------------------

function renderRounds(rounds) {
  const note = (r) => r.error || (r.status === "running" ? `phase: ${(r.metrics || {}).phase || "?"}` : "");
  $("rounds-table").tBodies[0].replaceChildren(...rounds.map((r) => el("tr", { "data-round": r.id },
    el("td", {}, `#${r.id}`),
    el("td", {}, el("span", { class: `badge status-${r.status}` }, r.status)),
    el("td", {}, r.decision || "—"),
    el("td", {}, r.trigger || "—"),
    el("td", {}, `${r.parent_version || "?"} → ${r.candidate_version || "—"}`),
    el("td", {}, fmtTime(r.started_at || r.created_at)),
    el("td", {}, fmtNum(r.seconds)),
    el("td", { class: "note" }, note(r)),
    el("td", {}, el("button", { type: "button", onclick: () => selectRound(r.id) }, "plot")))));
}

function renderAudit(entries) {
  $("audit-table").tBodies[0].replaceChildren(...entries.map((e) => el("tr", {},
    ...[fmtTime(e.created_at), e.who, e.action, e.target || "—", e.reason || ""].map((c) => el("td", {}, c)))));
}

async function selectRound(id) {
  state.selectedRound = id;
  try {
    await renderRoundDetail();
  } catch (err) {
    if (!(err instanceof AuthError)) showBanner(`Could not load round #${id}: ${err.message}`, "error");
  }
}

// ---- the line chart (inline SVG) ------------------------------------------------------------

function niceTicks(lo, hi, count = 5) {
  // A range below float resolution (0.3 vs 0.30000000000000004) is a flat line: pad it, or
  // the step would be too small to advance t.
  if (hi - lo <= 1e-9 * Math.max(Math.abs(lo), Math.abs(hi), 1e-12)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks = [];
  for (let k = first; k <= last; k += 1) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

// spec: {title, xTitle, xLabels, left, right, empty, series: [{name, values, axis?, dashed?}]}.
// Each series is one <path class="line" data-points=N> plus a dot (with a tooltip) per value;
// null values leave a gap. Left and right axes scale independently.
function lineChart(figure, spec) {
  const series = spec.series.filter((s) => s.values.some((v) => v !== null));
  figure.replaceChildren();
  if (!series.length || !spec.xLabels.length) {
    figure.append(el("p", { class: "empty" }, spec.empty || "No data yet."));
    return;
  }
  const W = 640, PLOT_H = 260, M = { l: 60, r: 64, t: 30, b: 44 };
  const n = spec.xLabels.length;
  const box = { W, PLOT_H, M, plotW: W - M.l - M.r, plotH: PLOT_H - M.t - M.b };
  box.x = (i) => M.l + (n === 1 ? box.plotW / 2 : (i * box.plotW) / (n - 1));
  const H = PLOT_H + Math.ceil(series.length / 3) * 18 + 6;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": spec.title });
  root.append(svg("text", { x: M.l, y: 18, class: "chart-title" }, spec.title));
  const axes = drawAxes(root, box, series, spec);
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length];
    root.append(seriesGroup(s, color, box.x, axes[s.axis || "left"], spec.xLabels));
    drawLegendEntry(root, box, s, color, k);
  });
  figure.append(root);
}

// Ticks, grid and titles of the y axes in use and of the x axis; returns {left, right}: value -> y.
function drawAxes(root, box, series, spec) {
  const { W, PLOT_H, M, plotW, plotH } = box;
  const axes = {};
  for (const side of ["left", "right"]) {
    const values = series.filter((s) => (s.axis || "left") === side)
      .flatMap((s) => s.values).filter((v) => v !== null);
    if (!values.length) continue;
    const ticks = niceTicks(Math.min(...values), Math.max(...values));
    const [lo, hi] = [ticks[0], ticks[ticks.length - 1]];
    const y = (v) => M.t + plotH - ((v - lo) / (hi - lo)) * plotH;
    const tx = side === "left" ? M.l - 6 : W - M.r + 6;
    for (const t of ticks) {
      if (side === "left" || !axes.left) {
        root.append(svg("line", { x1: M.l, x2: W - M.r, y1: y(t), y2: y(t), class: "grid" }));
      }
      root.append(svg("text", { x: tx, y: y(t) + 4, class: `tick ${side}` }, fmtNum(t)));
    }
    const ax = side === "left" ? 14 : W - 10;
    root.append(svg("text", { x: ax, y: M.t + plotH / 2, class: "axis-title",
      transform: `rotate(-90 ${ax} ${M.t + plotH / 2})` }, side === "left" ? spec.left : spec.right));
    axes[side] = y;
  }
  root.append(svg("line", { x1: M.l, x2: W - M.r, y1: M.t + plotH, y2: M.t + plotH, class: "axis" }));
  const n = spec.xLabels.length;
  const every = Math.ceil(n / 12); // at most ~12 labels on the x axis
  spec.xLabels.forEach((label, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    root.append(svg("text", { x: box.x(i), y: M.t + plotH + 16, class: "tick x" }, label));
  });
  root.append(svg("text", { x: M.l + plotW / 2, y: PLOT_H - 6, class: "axis-title" }, spec.xTitle || ""));
  return axes;
}

function drawLegendEntry(root, box, s, color, k) {
  const lx = box.M.l + (k % 3) * (box.plotW / 3);
  const ly = box.PLOT_H + 8 + Math.floor(k / 3) * 18;
  root.append(svg("line", { x1: lx, x2: lx + 22, y1: ly, y2: ly, stroke: color, "stroke-width": 2.5,
    "stroke-dasharray": s.dashed ? "6 4" : null }));
  const name = s.name + (s.axis === "right" ? " (right)" : "");
  root.append(svg("text", { x: lx + 28, y: ly + 4, class: "legend" }, name));
}

function seriesGroup(s, color, x, y, labels) {
  const group = svg("g", { class: "series", "data-series": s.name });
  let d = "";
  let pen = false;
  let points = 0;
  s.values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)} ${y(v).toFixed(1)} `;
    pen = true;
    points += 1;
    group.append(svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3.5, fill: color },
      svg("title", {}, `${s.name} at ${labels[i]}: ${fmtNum(v)}`)));
  });
  group.prepend(svg("path", { d: d.trim(), class: "line", fill: "none", stroke: color, "stroke-width": 2,
    "stroke-dasharray": s.dashed ? "6 4" : null, "data-points": points }));
  return group;
}

// ---- wiring -------------------------------------------------------------------------------

function init() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("key-input").value = "";
    refresh();
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("refresh").addEventListener("click", refresh);
  $("rollback-previous").addEventListener("click", () => confirmRollback(null));
  $("confirm-ok").addEventListener("click", runPending);
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close());
  $("lineage-select").addEventListener("change", renderRoundsChart);
  $("round-select").addEventListener("change", (e) => selectRound(Number(e.target.value)));
  $("banner").addEventListener("click", () => showBanner("", ""));
  setInterval(() => {
    const idle = !$("confirm-dialog").open && !state.busy;
    if ($("auto-refresh").checked && sessionStorage.getItem(KEY_STORE) && idle) refresh();
  }, REFRESH_MS);
  if (sessionStorage.getItem(KEY_STORE)) refresh();
  else signOut("");
}

init();
