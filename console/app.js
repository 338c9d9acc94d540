// fluxo web console. Plain JavaScript, no build step; uPlot (vendored) draws the time series.
// Every figure comes from the authenticated /v1 API; data is inserted as text, never as HTML.
"use strict";

const TOKEN_KEY = "fluxo.token";
const POLL_MS = 2000;

// ---------- small helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel) => document.querySelector(sel);

function fmtRate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}
function fmtNum(x) {
  if (x === null || x === undefined) return "–";
  return Math.round(x).toLocaleString("en-US");
}
function fmtAge(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? "<1 s ago" : s < 120 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}
function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}
function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

// ---------- auth and API ----------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A `#token=...` fragment (the URL `fluxo up` prints) signs in, then leaves the address bar.
function takeTokenFromUrl() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + "#/pipeline");
  }
}

class Unauthorized extends Error {}

async function api(path) {
  const t = token();
  if (!t) throw new Unauthorized();
  const r = await fetch(path, { headers: { Authorization: `Bearer ${t}` } });
  if (r.status === 401) throw new Unauthorized();
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(body.error || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

function showSignin(message) {
  $("#signin").hidden = false;
  $("#pages").hidden = true;
  $("#signout").hidden = true;
  $("#signin-error").textContent = message || "";
}

function showPages() {
  $("#signin").hidden = true;
  $("#pages").hidden = false;
  $("#signout").hidden = false;
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
  $("#token-input").value = "";
  try {
    await api("/v1/console/pipeline");
    showPages();
    route();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin(e instanceof Unauthorized ? "The API refused this token." : e.message);
  }
});

$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignin();
});

// ---------- charts ----------

function lineChart(container, opts) {
  container.replaceChildren();
  const width = Math.max(container.clientWidth - 20, 400);
  return new uPlot({ width, height: 300, ...opts }, opts.data, container);
}

// ---------- pipeline ----------

const NODE_W = 190;
const TOPIC_H = 34;
const PROC_H = 92;

function pipelineLayout(data) {
  const inputs = [...new Set(data.processors.flatMap((p) => [...p.inputs, ...p.global_inputs]))];
  const outputs = [...new Set(data.processors.flatMap((p) => p.outputs))];
  const dlqs = [...new Set(data.processors.flatMap((p) => p.dlq_topics))];
  const notifierDlqs = [...new Set(data.notifiers.flatMap((n) => n.dlq_topics))];
  const columns = [
    inputs.map((t) => ({ id: `t:${t}`, kind: "topic", name: t })),
    data.processors.map((p) => ({ id: `p:${p.name}`, kind: "processor", name: p.name, p })),
    [...outputs.map((t) => ({ id: `t:${t}`, kind: "topic", name: t })),
     ...dlqs.map((t) => ({ id: `t:${t}`, kind: "dlq", name: t }))],
    [...data.notifiers.map((n) => ({ id: `n:${n.name}`, kind: "notifier", name: n.name, n })),
     ...notifierDlqs.map((t) => ({ id: `t:${t}`, kind: "dlq", name: t }))],
  ].filter((c) => c.length > 0);
  // Each column as wide as its longest label (about 7 px a character), processors fixed.
  const widths = columns.map((col) => Math.max(NODE_W, ...col.map((n) => (n.kind === "processor" ? NODE_W : 7 * n.name.length + 24))));
  const height = Math.max(...columns.map((c) => c.reduce((h, n) => h + (n.kind === "processor" ? PROC_H : TOPIC_H) + 18, 0))) + 20;
  const gap = columns.length > 1 ? 90 : 0;
  const pos = new Map();
  let x = 10;
  columns.forEach((col, i) => {
    const total = col.reduce((h, n) => h + (n.kind === "processor" ? PROC_H : TOPIC_H) + 18, 0);
    let y = (height - total) / 2 + 9;
    for (const n of col) {
      const h = n.kind === "processor" ? PROC_H : TOPIC_H;
      pos.set(n.id, { ...n, x, y, w: widths[i], h });
      y += h + 18;
    }
    x += widths[i] + gap;
  });
  const edges = [];
  for (const p of data.processors) {
    for (const t of [...p.inputs, ...p.global_inputs]) edges.push([`t:${t}`, `p:${p.name}`, "data", p.rate_in]);
    for (const t of p.outputs) edges.push([`p:${p.name}`, `t:${t}`, "data", p.rate_out]);
    for (const t of p.dlq_topics) edges.push([`p:${p.name}`, `t:${t}`, "dlq", null]);
  }
  for (const n of data.notifiers) {
    for (const t of n.topics) edges.push([`t:${t}`, `n:${n.name}`, "data", null]);
    for (const t of n.dlq_topics) edges.push([`n:${n.name}`, `t:${t}`, "dlq", null]);
  }
  const width = x - gap + 10;
  return { pos, edges, width, height };
}

function drawGraph(data) {
  const { pos, edges, width, height } = pipelineLayout(data);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "graph" });
  for (const [from, to, kind, rate] of edges) {
    const a = pos.get(from), b = pos.get(to);
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
    const mx = (x1 + x2) / 2;
    const active = rate !== null && rate > 0;
    root.append(svg("path", {
      d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
      class: `edge ${kind}${active ? " active" : ""}`,
    }));
  }
  for (const n of pos.values()) {
    const g = svg("g", { transform: `translate(${n.x},${n.y})`, class: `node ${n.kind}`, "data-node": n.name });
    g.append(svg("rect", { width: n.w, height: n.h, rx: 6 }));
    if (n.kind === "processor") {
      const p = n.p;
      g.setAttribute("data-processor", p.name);
      g.append(svg("circle", { cx: 14, cy: 16, r: 5, class: `status ${p.status}` }));
      g.append(svg("text", { x: 26, y: 20, class: "title" }, p.name));
      g.append(svg("text", { x: 10, y: 40, class: "rate-in" }, `in ${fmtRate(p.rate_in)}/s`));
      g.append(svg("text", { x: 100, y: 40, class: "rate-out" }, `out ${fmtRate(p.rate_out)}/s`));
      g.append(svg("text", { x: 10, y: 58 }, `lag ${fmtNum(p.lag)}`));
      g.append(svg("text", { x: 100, y: 58, class: p.dead_letters > 0 ? "warn" : "" }, `dlq ${fmtNum(p.dead_letters)}`));
      g.append(svg("text", { x: 10, y: 76, class: "muted" }, `checkpoint ${fmtAge(p.last_checkpoint_age_seconds)}`));
      g.append(svg("title", {}, `${p.name} (${p.kind}): ${p.status}`));
    } else if (n.kind === "notifier") {
      const d = n.n.deliveries || {};
      g.append(svg("text", { x: 10, y: 15, class: "title" }, `notifier ${n.name}`));
      g.append(svg("text", { x: 10, y: 29, class: "muted" }, `delivered ${fmtNum(d.delivered || 0)} · failed ${fmtNum((d.failed || 0) + (d.rejected || 0))}`));
    } else {
      g.classList.add("clickable");
      g.addEventListener("click", () => showTopic(n.name));
      g.append(svg("text", { x: 10, y: 21 }, n.name));
      g.append(svg("title", {}, `${n.name}: click for its recent records`));
    }
    root.append(g);
  }
  $("#graph").replaceChildren(root);
}

function drawProcessorTable(data) {
  $("#processors tbody").replaceChildren(...data.processors.map((p) =>
    el("tr", { "data-processor": p.name },
      el("td", {}, p.name),
      el("td", {}, el("span", { class: `badge ${p.status}` }, p.status.replaceAll("_", " "))),
      el("td", { class: "num rate-in" }, fmtRate(p.rate_in)),
      el("td", { class: "num rate-out" }, fmtRate(p.rate_out)),
      el("td", { class: "num" }, fmtNum(p.lag)),
      el("td", { class: "num" }, fmtNum(p.dead_letters)),
      el("td", {}, fmtAge(p.last_checkpoint_age_seconds)),
      el("td", { class: "num" }, fmtNum(p.records_in)),
      el("td", { class: "num" }, fmtNum(p.records_out)))));
}

async function showTopic(topic) {
  $("#topic-records").hidden = false;
  $("#topic-name").textContent = topic;
  $("#topic-json").textContent = "reading…";
  try {
    const body = await api(`/v1/console/topics/${encodeURIComponent(topic)}/records?limit=20`);
    const records = body.data.records;
    $("#topic-json").textContent = records.length === 0
      ? "(no records)"
      : records.map((r) => JSON.stringify(r, null, 2)).join("\n");
  } catch (e) {
    $("#topic-json").textContent = e.message;
  }
  $("#topic-records").scrollIntoView({ block: "nearest" });
}
$("#topic-close").addEventListener("click", () => { $("#topic-records").hidden = true; });

let pipelineCache = null;

async function pipelineData() {
  if (!pipelineCache) pipelineCache = (await api("/v1/console/pipeline")).data;
  return pipelineCache;
}

// Topics are found by their schema, so a topology that renames them still has a console.
async function topicOf(schema) {
  const t = (await pipelineData()).topics.find((t) => t.schema === schema && t.role !== "dead_letters");
  if (!t) throw new Error(`the topology has no topic of schema ${schema}`);
  return encodeURIComponent(t.name);
}

async function refreshPipeline() {
  const body = await api("/v1/console/pipeline");
  pipelineCache = body.data;
  drawGraph(body.data);
  drawProcessorTable(body.data);
}

// ---------- market ----------

let marketChart = null;
let marketSymbol = null;

async function refreshMarket() {
  const alertsBody = await api(`/v1/console/topics/${await topicOf("PriceAlert")}/records?limit=30`);
  const recentAlerts = alertsBody.data.records.map((r) => r.value).filter((v) => v && v.symbol);
  $("#all-alerts tbody").replaceChildren(...recentAlerts.map((a) =>
    el("tr", {}, el("td", {}, fmtTime(a.to_time)), el("td", {}, a.symbol),
      el("td", { class: a.direction === "RISE" ? "up" : "down" }, a.direction),
      el("td", { class: "num" }, a.from_price), el("td", { class: "num" }, a.to_price),
      el("td", { class: "num" }, a.change_pct))));

  const prices = await api(`/v1/console/topics/${await topicOf("AssetPrice")}/records?limit=300`);
  const symbols = [...new Set([...recentAlerts.map((a) => a.symbol),
    ...prices.data.records.map((r) => r.value && r.value.symbol).filter(Boolean)])].sort();
  const select = $("#symbol");
  if (!marketSymbol || !symbols.includes(marketSymbol)) {
    // Start on the symbol of the latest alert: that is where something happened.
    marketSymbol = recentAlerts.length ? recentAlerts[0].symbol : symbols[0];
  }
  const current = [...select.options].map((o) => o.value).join(",");
  if (current !== symbols.join(",")) {
    select.replaceChildren(...symbols.map((s) => el("option", { value: s }, s)));
  }
  select.value = marketSymbol || "";
  if (!marketSymbol) return;
  await drawSymbol(marketSymbol);
}

$("#symbol").addEventListener("change", (ev) => {
  marketSymbol = ev.target.value;
  drawSymbol(marketSymbol).catch(report);
});

async function drawSymbol(symbol) {
  const s = encodeURIComponent(symbol);
  const since = Date.now() - 24 * 3600 * 1000;
  const prices = await topicOf("AssetPrice");
  const [series, alerts, below] = await Promise.all([
    api(`/v1/console/topics/${prices}/records?limit=400&key=${s}`),
    api(`/v1/assets/${s}/alerts?since=${since}&limit=500`),
    api(`/v1/assets/${s}/below-average-events?since=${since}&limit=500`),
  ]);
  const quotes = series.data.records.map((r) => r.value).filter((v) => v && v.event_time)
    .map((v) => [v.event_time, Number(v.price)]);
  const alertPts = alerts.data.events.map((a) => [a.to_time, Number(a.to_price)]);
  const belowPts = below.data.events.filter((e) => e.kind === "BELOW").map((e) => [e.event_time, Number(e.price)]);
  const recPts = below.data.events.filter((e) => e.kind !== "BELOW").map((e) => [e.event_time, Number(e.price)]);
  // uPlot wants one x axis: the union of every time, each series null where it has no point.
  const xs = [...new Set([...quotes, ...alertPts, ...belowPts, ...recPts].map((p) => p[0]))].sort((a, b) => a - b);
  const column = (pts) => { const m = new Map(pts); return xs.map((x) => (m.has(x) ? m.get(x) : null)); };
  const data = [xs.map((x) => x / 1000), column(quotes), column(alertPts), column(belowPts), column(recPts)];
  const marks = (stroke, fill, size) => ({ stroke, fill, paths: () => null, points: { show: true, size, stroke, fill, width: 2 } });
  const container = $("#price-chart");
  const signature = JSON.stringify([symbol, data]);
  if (marketChart && container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.setAttribute("data-alerts", String(alertPts.length));
  container.setAttribute("data-points", String(quotes.length));
  marketChart = lineChart(container, {
    title: `${symbol}: ${quotes.length} recent quotes, ${alertPts.length} alerts, ${belowPts.length} below average`,
    data,
    scales: { x: { time: true } },
    // Room for prices such as 403,769.76 (the default axis width clips them).
    axes: [{}, { size: 90 }],
    series: [{}, { label: "price", stroke: "#4e8fdf", width: 1.5, spanGaps: true, points: { show: false } },
      { label: "price alert", ...marks("#e0463c", "#e0463c", 11) },
      { label: "below average", ...marks("#d99a1c", "#fff4", 9) },
      { label: "recovered", ...marks("#3aa66b", "#fff4", 9) }],
  });
  $("#alerts-symbol").textContent = symbol;
  $("#alerts tbody").replaceChildren(...alerts.data.events.slice().reverse().map((a) =>
    el("tr", { class: "alert-row" }, el("td", {}, fmtTime(a.to_time)),
      el("td", { class: a.direction === "RISE" ? "up" : "down" }, a.direction),
      el("td", { class: "num" }, a.from_price), el("td", { class: "num" }, a.to_price),
      el("td", { class: "num" }, a.change_pct), el("td", { class: "num" }, a.threshold_pct))));
}

// ---------- risk ----------

let decisionFilter = "";
let openDecision = null;

$("#decision-filter").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  decisionFilter = b.dataset.decision;
  for (const x of $("#decision-filter").querySelectorAll("button")) x.classList.toggle("on", x === b);
  refreshRisk().catch(report);
});

async function refreshRisk() {
  const decisions = await topicOf("RiskDecision");
  const [body, latency] = await Promise.all([
    api(`/v1/console/topics/${decisions}/records?limit=200`),
    api("/v1/console/risk-latency"),
  ]);
  const rows = body.data.records.map((r) => r.value).filter((d) => d && d.transaction_id)
    .filter((d) => !decisionFilter || d.decision === decisionFilter).slice(0, 30);
  $("#decisions tbody").replaceChildren(...rows.map((d) =>
    el("tr", { "data-transaction": d.transaction_id, "data-decision": d.decision,
      class: d.transaction_id === openDecision ? "selected" : "",
      onclick: () => showDecision(d.transaction_id) },
    el("td", { class: "mono" }, d.transaction_id.slice(0, 18)),
    el("td", {}, el("span", { class: `badge ${d.decision}` }, d.decision)),
    el("td", { class: "num" }, d.score),
    el("td", {}, (d.reasons || []).map((r) => r.rule_id).join(", ")),
    el("td", {}, d.degraded ? "yes" : ""),
    el("td", { class: "num nowrap" }, `${d.latency_ms} ms`))));
  drawHistogram(latency.data);
}

async function showDecision(id) {
  openDecision = id;
  for (const tr of $("#decisions tbody").children) tr.classList.toggle("selected", tr.dataset.transaction === id);
  const panel = $("#decision-detail");
  const body = await api(`/v1/risk-decisions/${encodeURIComponent(id)}`);
  const d = body.data;
  panel.replaceChildren(
    el("h2", {}, "Decision ", el("span", { class: `badge ${d.decision}` }, d.decision)),
    el("dl", { class: "facts", id: "decision-facts", "data-transaction": d.transaction_id },
      el("dt", {}, "transaction"), el("dd", { class: "mono" }, d.transaction_id),
      el("dt", {}, "score"), el("dd", {}, d.score),
      el("dt", {}, "degraded"), el("dd", {}, d.degraded ? "yes (a dependency was unavailable)" : "no"),
      el("dt", {}, "event time"), el("dd", {}, fmtTime(d.event_time)),
      el("dt", {}, "decided at"), el("dd", {}, fmtTime(d.decided_at)),
      el("dt", {}, "latency"), el("dd", {}, `${d.latency_ms} ms`)),
    el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "rule"), el("th", {}, "points"), el("th", {}, "why"))),
      el("tbody", {}, (d.reasons || []).map((r) => el("tr", {}, el("td", {}, r.rule_id), el("td", { class: "num" }, `+${r.contribution}`), el("td", {}, r.text))))),
    el("details", {}, el("summary", {}, "as JSON"), el("pre", {}, JSON.stringify(body, null, 2))));
}

function drawHistogram(h) {
  $("#sla").textContent = `${fmtNum(h.count)} decisions · ${fmtNum(h.sla_breaches)} SLA breaches · ` +
    Object.entries(h.decisions).map(([k, v]) => `${k} ${fmtNum(v)}`).join(" · ");
  const max = Math.max(1, ...h.buckets.map((b) => b.count));
  let lower = 0;
  $("#latency-histogram").replaceChildren(...h.buckets.map((b) => {
    const label = b.le_seconds === null ? `> ${lower * 1000} ms` : `≤ ${b.le_seconds * 1000} ms`;
    if (b.le_seconds !== null) lower = b.le_seconds;
    return el("div", { class: "bar-row" }, el("span", { class: "bar-label" }, label),
      el("span", { class: "bar", style: `width:${(100 * b.count) / max}%` }),
      el("span", { class: "bar-count" }, fmtNum(b.count)));
  }));
}

// ---------- accounts ----------

let accountChart = null;
const today = new Date();
$("#to").value = isoDay(today);
$("#from").value = isoDay(new Date(today.getTime() - 13 * 86400000));

$("#account-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  refreshAccount().catch(report);
});

async function refreshAccounts() {
  if (!$("#account").value || $("#accounts-list").children.length === 0) {
    const body = await api(`/v1/console/topics/${await topicOf("DailyBalance")}/records?limit=300`);
    const accounts = [...new Set(body.data.records.map((r) => r.value && r.value.account_id).filter(Boolean))].sort();
    $("#accounts-list").replaceChildren(...accounts.map((a) => el("option", { value: a })));
    if (!$("#account").value && accounts.length) $("#account").value = accounts[0];
  }
  if ($("#account").value) await refreshAccount();
}

async function refreshAccount() {
  const account = $("#account").value.trim();
  const q = `from=${$("#from").value}&to=${$("#to").value}`;
  let body;
  try {
    body = await api(`/v1/accounts/${encodeURIComponent(account)}/daily-balances?${q}`);
  } catch (e) {
    $("#account-summary").textContent = e.message;
    $("#balances tbody").replaceChildren();
    $("#balance-chart").replaceChildren();
    accountChart = null;
    return;
  }
  const d = body.data;
  $("#account-summary").textContent = `${d.account_id}, ${d.from} to ${d.to}: credits ${d.total_credits}, ` +
    `debits ${d.total_debits}, net ${d.net}, ${d.entry_count} entries; closing balance ${d.closing_balance} (as of ${body.as_of})`;
  $("#balances tbody").replaceChildren(...d.days.map((day) =>
    el("tr", { class: day.entry_count ? "" : "muted" }, el("td", {}, day.date),
      el("td", { class: "num" }, day.total_credits), el("td", { class: "num" }, day.total_debits),
      el("td", { class: "num" }, day.net), el("td", { class: "num" }, day.entry_count),
      el("td", { class: "num" }, day.running_balance))));
  const xs = d.days.map((day) => Date.parse(`${day.date}T12:00:00Z`) / 1000);
  const container = $("#balance-chart");
  const signature = JSON.stringify([d.account_id, d.days]);
  if (accountChart && container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  container.setAttribute("data-points", String(xs.length));
  accountChart = lineChart(container, {
    title: `running balance of ${d.account_id} (BRL)`,
    data: [xs, d.days.map((day) => Number(day.running_balance)), d.days.map((day) => Number(day.net))],
    scales: { x: { time: true } },
    axes: [{}, { size: 90 }],
    series: [{}, { label: "running balance", stroke: "#4e8fdf", width: 2, fill: "#4e8fdf22", points: { show: true, size: 7 } },
      { label: "net of the day", stroke: "#9a7fd1", width: 1, dash: [4, 4], points: { show: true, size: 5 } }],
  });
}

// ---------- dead letters ----------

let dlqOpen = new Set();

async function refreshDeadLetters() {
  const pipeline = await pipelineData();
  const topics = pipeline.topics.filter((t) => t.role === "dead_letters").map((t) => t.name);
  const sections = await Promise.all(topics.map(async (topic) => {
    const body = await api(`/v1/console/topics/${encodeURIComponent(topic)}/records?limit=25`);
    return { topic, records: body.data.records };
  }));
  $("#dead-letters").replaceChildren(...sections.map(({ topic, records }) =>
    el("div", { class: "panel", "data-dlq": topic },
      el("h2", {}, topic, " ", el("span", { class: "muted" }, `${records.length} recent`)),
      records.length === 0 ? el("p", { class: "muted" }, "none") :
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {}, ["at", "reason", "detail", "processor", "source", "key", "payload"].map((h) => el("th", {}, h)))),
          el("tbody", {}, records.map((r) => {
            const id = `${topic}/${r.partition}/${r.offset}`;
            const p = r.payload;
            return el("tr", { class: "dead-letter", "data-reason": r.reason || "" },
              el("td", {}, fmtTime(r.timestamp)),
              el("td", {}, el("span", { class: "badge REJECT" }, r.reason || "?")),
              el("td", { class: "detail" }, r.detail || ""),
              el("td", {}, r.processor || ""),
              el("td", { class: "mono" }, `${r.source_topic}/${r.source_partition ?? "?"}@${r.source_offset ?? "?"}`),
              el("td", { class: "mono" }, r.key ?? ""),
              el("td", { class: "payload" }, p === null ? (r.withheld ? `withheld (${r.source_size ?? "?"} bytes, read it on the input topic)` : "(no payload)") :
                el("details", { open: dlqOpen.has(id), ontoggle: (ev) => (ev.target.open ? dlqOpen.add(id) : dlqOpen.delete(id)) },
                  el("summary", {}, `${p.size} bytes`),
                  el("div", { class: "mono" }, "hex: ", p.hex, p.size > 64 ? " …" : ""),
                  el("div", { class: "mono" }, "base64: ", p.base64, p.truncated ? " …" : ""),
                  r.value ? el("pre", {}, JSON.stringify(r.value, null, 2)) : null)));
          }))))));
}

// ---------- routing and polling ----------

const PAGES = {
  pipeline: refreshPipeline,
  market: refreshMarket,
  risk: refreshRisk,
  accounts: refreshAccounts,
  "dead-letters": refreshDeadLetters,
};

let currentPage = "pipeline";
let inFlight = false;

function report(e) {
  if (e instanceof Unauthorized) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin("Signed out: the token is missing, expired or refused.");
    return;
  }
  $("#status").textContent = `error: ${e.message}`;
  $("#status").classList.add("error");
}

async function refresh() {
  if (inFlight || !token()) return;
  inFlight = true;
  const page = currentPage;
  try {
    await PAGES[page]();
    $("#status").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    $("#status").classList.remove("error");
    // For the browser test: the page shown has data from at least one full refresh.
    if (page === currentPage) document.body.dataset.loaded = page;
  } catch (e) {
    report(e);
  } finally {
    inFlight = false;
  }
}

function route() {
  takeTokenFromUrl();
  if (!token()) {
    showSignin();
    return;
  }
  showPages();
  const name = location.hash.replace(/^#\//, "") || "pipeline";
  currentPage = PAGES[name] ? name : "pipeline";
  delete document.body.dataset.loaded;
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${currentPage}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.dataset.page === currentPage);
  refresh();
}

window.addEventListener("hashchange", route);
setInterval(refresh, POLL_MS);
route();
