// The worker's dashboard: polls /api/overview and /models, looks users up through
// /api/users/{id}. Every value from the API goes into the page as text, never as HTML.
import uPlot from "uplot";

const OVERVIEW_MS = 2000;
const MODELS_MS = 5000;
const $ = (sel) => document.querySelector(sel);

function fmtInt(n) {
  return n == null ? "–" : Number(n).toLocaleString("en-US");
}
function fmtNum(x, digits = 4) {
  return x == null ? "–" : Number(x).toFixed(digits);
}
function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { hour12: false }) : "–";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillTable(id, rows) {
  const body = $(`#${id} tbody`);
  body.replaceChildren(
    ...rows.map(({ cells, cls, attrs }) => {
      const tr = document.createElement("tr");
      if (cls) tr.className = cls;
      for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
      tr.append(...cells);
      return tr;
    }),
  );
}

function headers() {
  const token = $("#token").value || sessionStorage.getItem("streamrec-token") || "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJSON(path, auth = false) {
  const resp = await fetch(path, { headers: auth ? headers() : {}, cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.error || `${path}: HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

// -- charts ---------------------------------------------------------------------------
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#b83280", "#6b46c1", "#975a16", "#285e61"];

function makeChart(el, series, yLabel) {
  const opts = {
    width: el.clientWidth || 400,
    height: 200,
    series: [{}, ...series.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
    axes: [{}, { label: yLabel, size: 60 }],
    scales: { x: { time: true } },
    legend: { live: false },
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}

const charts = {};
function chart(key, el, labels, yLabel, data) {
  const have = charts[key];
  if (!have || have.labels.join("|") !== labels.join("|")) {
    if (have) have.plot.destroy();
    charts[key] = { labels, plot: makeChart(el, labels, yLabel) };
  }
  charts[key].plot.setData(data);
}

function drawCharts(series) {
  const t = series.t;
  chart("tp", $("#chart-throughput"), ["events/s", "recommendations/s", "dead letters/s"], "per s",
    [t, series.events_per_s, series.recommendations_per_s, series.dlq_per_s]);
  chart("lat", $("#chart-latency"), ["p50", "p99"], "ms", [t, series.latency_p50_ms, series.latency_p99_ms]);
  const versions = Object.keys(series.hit_rate).sort();
  $("#hit-window").textContent = series.hit_window_s;
  chart("hits", $("#chart-hits"), versions.length ? versions : ["(no outcome yet)"], "hit rate",
    [t, ...(versions.length ? versions.map((v) => series.hit_rate[v]) : [t.map(() => null)])]);
}

// -- overview -------------------------------------------------------------------------
function showOverview(o) {
  $("#worker").textContent = o.worker;
  const status = $("#status");
  status.textContent = o.status;
  status.className = `badge ${o.status}`;
  $("#serving").textContent = o.model_version || "–";
  $("#updated").textContent = `updated ${fmtTime(o.generated_at)}`;
  const c = o.counters;
  const values = {
    streamrec_events_in_total: c.events_in,
    streamrec_recommendations_out_total: c.recommendations_out,
    streamrec_duplicate_events_total: c.duplicates,
    streamrec_catalogue_items: c.catalogue_items,
    streamrec_model_swaps_total: c.model_swaps,
  };
  for (const [metric, v] of Object.entries(values)) {
    $(`#counters [data-metric="${metric}"]`).textContent = fmtInt(v);
  }
  const reasons = Object.keys(c.dlq).sort();
  $("#dlq-total").textContent = fmtInt(reasons.reduce((s, r) => s + c.dlq[r], 0));
  fillTable("dlq", reasons.map((r) => ({
    cells: [cell(r), cell(fmtInt(c.dlq[r]), "num")],
    attrs: { "data-metric": `streamrec_dlq_total{reason="${r}"}`, "data-value": c.dlq[r] },
  })));
  fillTable("hits", o.hit_rate.map((h) => ({
    cells: [cell(h.version), cell(fmtInt(h.evaluated), "num"), cell(fmtInt(h.hits), "num"),
      cell(fmtNum(h.rate), "num")],
    attrs: { "data-version": h.version, "data-evaluated": h.evaluated, "data-hits": h.hits },
  })));
  drawCharts(o.series);
}

function showModels(m) {
  $("#current").textContent = m.current || "–";
  fillTable("versions", m.versions.map((v) => ({
    cls: v.current ? "current" : "",
    cells: [cell(v.version), cell(v.status), cell(fmtTime(v.created_at)), cell(v.parent || "–"),
      cell(v.verdict || ""), cell(fmtNum(v.metrics["streamrec.ndcg@10"]), "num")],
    attrs: { "data-version": v.version },
  })));
  fillTable("swaps", m.swaps.slice().reverse().map((s) => ({
    cells: [cell(fmtTime(s.at)), cell(s.kind), cell(s.version), cell(s.previous || "–"),
      cell(s.seconds == null ? "" : fmtNum(s.seconds, 2), "num"), cell(s.verdict || ""),
      cell(s.reason || "")],
  })));
}

async function poll(path, show, every) {
  for (;;) {
    try {
      show(await getJSON(path));
    } catch (err) {
      $("#status").textContent = "down";
      $("#status").className = "badge down";
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

// -- user lookup ----------------------------------------------------------------------
function interestCard(it) {
  const card = document.createElement("div");
  card.className = "card";
  card.setAttribute("data-interest", it.interest);
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = `#${it.interest} ${it.name}`;
  const meta = document.createElement("div");
  meta.className = "muted";
  meta.textContent = `strength ${fmtNum(it.strength, 2)} · ${it.events} events · last ${fmtTime(it.last_seen)}`;
  const list = document.createElement("ul");
  for (const item of it.items) {
    const li = document.createElement("li");
    li.textContent = item.text == null ? `${item.item_id} (no longer listed)` : `${item.item_id}: ${item.text.slice(0, 90)}`;
    list.append(li);
  }
  card.append(name, meta, list);
  return card;
}

function showUser(u) {
  $("#user-summary").textContent =
    `${u.user_id}: ${fmtInt(u.events)} events, last ${fmtTime(u.updated)}, ${u.interests.length} interests`;
  $("#interests").replaceChildren(...u.interests.map(interestCard));
  fillTable("recent", u.recent_events.map((e) => ({
    cells: [cell(fmtTime(e.ts)), cell(e.event_type), cell(e.item_id), cell(String(e.interest), "num")],
  })));
  const rec = u.latest;
  $("#latest-meta").textContent = rec
    ? `${rec.model_version}, ${fmtTime(rec.created_at)}, after event ${rec.trigger_event_id}`
    : "(none since this worker started)";
  fillTable("latest", (rec ? rec.items : []).map((r, i) => ({
    cells: [cell(String(i + 1), "num"), cell(r.item_id), cell(fmtNum(r.score), "num"),
      cell(fmtNum(r.p_click), "num"), cell(fmtNum(r.p_purchase), "num"),
      cell(String(r.interest), "num"), cell(r.because.join(", "))],
    attrs: { "data-item": r.item_id },
  })));
}

async function lookUp(event) {
  event.preventDefault();
  const user = $("#user-id").value.trim();
  const token = $("#token").value;
  if (token) sessionStorage.setItem("streamrec-token", token);
  $("#user-error").hidden = true;
  try {
    showUser(await getJSON(`/api/users/${encodeURIComponent(user)}`, true));
    $("#user-result").hidden = false;
  } catch (err) {
    $("#user-result").hidden = true;
    $("#user-error").textContent = err.status === 404 ? `no state for user ${user}` : err.message;
    $("#user-error").hidden = false;
  }
}

$("#user-form").addEventListener("submit", lookUp);
poll("/api/overview", showOverview, OVERVIEW_MS);
poll("/models", showModels, MODELS_MS);
