// Sluice's dashboard: every figure from statshttpd's JSON API, refreshed
// every 30 s. Pages: /pool, /servers, /blocks, /u/NAME (body data-page).
"use strict";

const REFRESH_MS = 30000;
const OFFLINE_SECS = 600;

function rate(hps) {
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"];
  let v = Math.max(0, hps || 0);
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u += 1;
  }
  // Three significant digits at any size: a small test pool's 0.074 H/s
  // must not read as 0.07.
  const shown = v >= 100 ? v.toFixed(0) : v === 0 ? "0" : v.toPrecision(3);
  return shown + " " + units[u];
}

function ago(secs) {
  secs = Math.max(0, secs);
  if (secs < 90) return secs.toFixed(0) + " s";
  if (secs < 5400) return (secs / 60).toFixed(0) + " min";
  if (secs < 129600) return (secs / 3600).toFixed(0) + " h";
  return (secs / 86400).toFixed(0) + " d";
}

function percent(part, whole) {
  return whole > 0 ? ((100 * part) / whole).toFixed(2) + "%" : "—";
}

function now() {
  return Date.now() / 1000;
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (body.error || ""));
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function card(id, label, value) {
  return el("div", { class: "card" }, el("span", { class: "label" }, label), el("span", { class: "value", id }, value));
}

function table(id, headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = rows.map((r) => {
    const tr = el("tr", r.attrs || {});
    for (const c of r.cells) tr.append(c instanceof Node ? c : el("td", {}, c));
    return tr;
  });
  return el("div", { class: "scroll" }, el("table", { id }, el("thead", {}, head), el("tbody", {}, ...body)));
}

// A 24-hour hashrate chart of a minutes answer (columns).
function chart(id, minutes, title) {
  const box = el("figure", { class: "chart" }, el("figcaption", {}, title));
  const area = el("div", { id });
  box.append(area);
  const xs = minutes.shares.map((_, i) => minutes.start + i * minutes.step);
  const ys = minutes.hashrate;
  // A 10-minute average is what a person reads; the minutes are noisy.
  const avg = ys.map((_, i) => {
    const from = Math.max(0, i - 9);
    let sum = 0;
    for (let j = from; j <= i; j++) sum += ys[j];
    return sum / (i - from + 1);
  });
  if (typeof uPlot === "undefined") {
    area.append(el("p", { class: "note" }, "Charts need uPlot (install/deps.sh installs it)."));
    return box;
  }
  const width = Math.min(1100, document.body.clientWidth - 40);
  const opts = {
    width,
    height: 220,
    series: [
      {},
      { label: "per minute", stroke: "#9ab", width: 1, value: (u, v) => (v == null ? "" : rate(v)) },
      { label: "10 min", stroke: "#06c", width: 2, value: (u, v) => (v == null ? "" : rate(v)) },
    ],
    axes: [{}, { values: (u, vs) => vs.map((v) => rate(v)), size: 80 }],
  };
  requestAnimationFrame(() => new uPlot(opts, [xs, ys, avg], area));
  return box;
}

function lastMinutes(minutes, column, n, skip) {
  const values = minutes[column] || [];
  let sum = 0;
  for (let i = values.length - 1 - (skip || 0), k = 0; i >= 0 && k < n; i--, k++) sum += values[i];
  return sum;
}

function serverRows(servers) {
  return servers.map((s) => {
    const f = s.from_shares ? s.from_shares.hashrate : {};
    const state = !s.up ? "down" : s.healthy ? "up" : "unhealthy";
    return {
      attrs: { "data-instance": s.instance, class: state },
      cells: [
        s.instance,
        s.server_id == null ? "—" : s.server_id,
        state,
        s.connections == null ? "—" : s.connections,
        rate(f["5m"]),
        rate(f["1h"]),
        s.shares_per_sec == null ? "—" : s.shares_per_sec.toFixed(1),
        s.last_job_age_secs == null ? "—" : ago(s.last_job_age_secs),
      ],
    };
  });
}

const SERVER_HEADERS = ["server", "id", "state", "miners", "5 min", "1 h", "shares/s", "last job"];

async function poolPage(main) {
  const [pool, minutes, servers] = await Promise.all([
    api("/api/v1/pool"),
    api("/api/v1/minutes"),
    api("/api/v1/servers"),
  ]);
  const hour = pool.shares["1h"];
  const all = hour.accept + hour.stale + hour.reject;
  // A day of minutes: their mean is the 24 h hashrate, as the API computed it.
  const day = minutes.hashrate_mean;
  main.replaceChildren(
    el("h1", {}, "Pool"),
    el(
      "section",
      { class: "cards" },
      card("hashrate-5m", "hashrate 5 min", rate(pool.hashrate["5m"])),
      card("hashrate-1h", "hashrate 1 h", rate(pool.hashrate["1h"])),
      card("hashrate-24h", "hashrate 24 h", rate(day)),
      card("workers", "workers", pool.workers),
      card("users", "users", pool.users),
      card("shares-per-sec", "shares/s (5 min)", (lastMinutes(minutes, "shares", 5, 1) / 300).toFixed(1)),
      card("reject-rate", "rejected and stale (1 h)", percent(hour.stale + hour.reject, all)),
      card("network-height", "network height", pool.network_height),
      card("blocks-found", "blocks found", pool.blocks_found == null ? "—" : pool.blocks_found),
      card("round-effort", "round effort", pool.round ? effort(pool.round.effort, pool.round.whole) : "—"),
    ),
    chart("pool-chart", minutes, "Pool hashrate, last 24 h"),
    el("h2", {}, "Servers"),
    table("servers", SERVER_HEADERS, serverRows(servers.servers)),
  );
}

async function serversPage(main) {
  const servers = await api("/api/v1/servers");
  main.replaceChildren(
    el("h1", {}, "Servers"),
    table("servers", SERVER_HEADERS, serverRows(servers.servers)),
  );
}

// Standing from blkmaker's confirmation watch, else the nodes' answers.
function blockState(b) {
  if (b.status === "orphaned" || b.is_orphaned) return "orphaned";
  if (b.status === "confirmed") return "confirmed (" + b.confirmations + " conf)";
  if (b.status === "pending" && b.confirmations >= 1) return "pending (" + b.confirmations + " conf)";
  const results = Object.entries(b.submit_results || {});
  const ok = results.filter(([, r]) => r === "accepted" || r === "duplicate").length;
  if (ok > 0) return "accepted (" + ok + "/" + results.length + " nodes)";
  return "not accepted (" + results.map(([n, r]) => n + ": " + r).join(", ") + ")";
}

// Work over network difficulty as a percentage; "≥" when the round began
// before the oldest share statshttpd had.
function effort(value, whole) {
  if (value == null) return "—";
  const pct = value * 100;
  return (whole === false ? "≥" : "") + (pct < 1000 ? pct.toFixed(1) : Math.round(pct).toLocaleString("en-US")) + "%";
}

// A share difficulty, short: 1.23 k, 4.56 G, … ("—" for none).
function difficulty(d) {
  if (!d) return "—";
  if (d < 0.01) return d.toExponential(2); // regtest and test pools
  const units = ["", " k", " M", " G", " T", " P", " E"];
  let i = 0;
  while (d >= 1000 && i < units.length - 1) {
    d /= 1000;
    i += 1;
  }
  return d.toFixed(d < 10 ? 2 : d < 100 ? 1 : 0) + units[i];
}

async function blocksPage(main) {
  const blocks = await api("/api/v1/blocks?limit=100");
  const rows = blocks.blocks.map((b) => ({
    attrs: { "data-hash": b.hash },
    cells: [
      b.height,
      el("td", { title: b.hash, class: "hash" }, b.hash.slice(0, 16) + "…"),
      b.solo_address
        ? el("td", { class: "solo", title: "solo: the coinbase pays " + b.solo_address }, b.worker_name + " (solo → " + b.solo_address + ")")
        : b.worker_name,
      el("td", { class: "status-" + (b.status || "pending") }, blockState(b)),
      effort(b.effort, b.effort_whole),
      (b.reward / 1e8).toFixed(8),
      ago(now() - b.found_at),
    ],
  }));
  main.replaceChildren(
    el("h1", {}, "Blocks"),
    el("p", {}, blocks.blocks.length ? "Newest first." : "No block found yet."),
    el("p", {}, "Effort: the pool's accepted work since its previous block over the network difficulty (100% is a block's expected work). Confirmed: mature at the nodes."),
    table("blocks", ["height", "hash", "finder", "status at the node", "effort", "reward (BTC)", "found"], rows),
  );
}

// Satoshis as BTC, 8 decimals, from whole numbers (no float rounding).
function btc(sat) {
  const s = BigInt(sat || 0);
  const sign = s < 0n ? "-" : "";
  const a = s < 0n ? -s : s;
  return sign + (a / 100000000n).toString() + "." + (a % 100000000n).toString().padStart(8, "0");
}

// The books' part of a user's page: balances, payouts, each block's credit.
function earningsSection(e) {
  if (!e) return [el("p", {}, "No payouts here (the payer's books are not answering).")];
  const b = e.balances;
  const payouts = e.payouts.slice(0, 10).map((p) => ({
    attrs: { "data-payout": p.id, class: p.state },
    cells: [p.id, p.created_at, p.state, btc(p.amount), p.txid],
  }));
  const blocks = e.blocks.slice(0, 20).map((k) => ({
    attrs: { class: k.state },
    cells: [k.height, k.state, btc(k.credit), percent(Number(k.work), Number(k.window_work))],
  }));
  return [
    el("h2", {}, "Earnings"),
    el(
      "section",
      { class: "cards" },
      card("immature", "immature (BTC)", btc(b.immature)),
      card("payable", "payable (BTC)", btc(b.payable)),
      card("in-flight", "being paid (BTC)", btc(b.in_flight)),
      card("paid", "paid (BTC)", btc(b.paid)),
    ),
    el("p", {}, e.address ? "Paid to " + e.address : "No payout address set (sluicectl payouts address)."),
    table("payouts-table", ["payout", "when", "state", "amount (BTC)", "transaction"], payouts),
    el("p", {}, "Blocks: the credit and the share of the block's window of work (PPLNS)."),
    table("earned-table", ["height", "state", "credit (BTC)", "share of work"], blocks),
  ];
}

async function userPage(main, name) {
  const path = "/api/v1/users/" + encodeURIComponent(name);
  const [user, workers, minutes, earnings] = await Promise.all([
    api(path),
    api(path + "/workers"),
    api(path + "/minutes").catch(() => null),
    api(path + "/earnings").catch(() => null),
  ]);
  const t = now();
  const list = workers.workers.map((w) => {
    const h = w.shares["1h"];
    const offline = w.last_share_time == null || t - w.last_share_time > OFFLINE_SECS;
    return { w, h, offline };
  });
  list.sort((a, b) => b.offline - a.offline || b.w.hashrate["5m"] - a.w.hashrate["5m"]);
  const rows = list.map(({ w, h, offline }) => ({
    attrs: { "data-worker": w.name, class: offline ? "offline" : "online" },
    cells: [
      w.name,
      offline ? "offline" : "online",
      rate(w.hashrate["5m"]),
      rate(w.hashrate["1h"]),
      w.last_share_time == null ? "—" : ago(t - w.last_share_time),
      percent(h.stale + h.reject, h.accept + h.stale + h.reject),
      difficulty(w.best_share_difficulty),
    ],
  }));
  main.replaceChildren(
    el("h1", {}, name),
    ...(user.solo ? [el("p", { class: "solo", id: "solo" }, "Solo miner: the blocks it finds pay " + name + " directly.")] : []),
    el(
      "section",
      { class: "cards" },
      card("hashrate-5m", "hashrate 5 min", rate(user.hashrate["5m"])),
      card("hashrate-1h", "hashrate 1 h", rate(user.hashrate["1h"])),
      card("workers", "workers", user.workers),
      card("offline", "offline", list.filter((x) => x.offline).length),
      card("best-share", "best share", difficulty(user.best_share_difficulty)),
    ),
    minutes ? chart("user-chart", minutes, name + "'s hashrate, last 24 h") : el("p", {}, "No share in 24 h."),
    el("h2", {}, "Workers"),
    table("workers-table", ["worker", "state", "5 min", "1 h", "last share", "rejected (1 h)", "best share"], rows),
    ...earningsSection(earnings),
  );
}

async function refresh() {
  const page = document.body.dataset.page;
  const main = document.getElementById("main");
  try {
    if (page === "pool") await poolPage(main);
    else if (page === "servers") await serversPage(main);
    else if (page === "blocks") await blocksPage(main);
    else if (page === "user") await userPage(main, document.body.dataset.user);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
    document.body.dataset.error = "";
  } catch (e) {
    document.body.dataset.error = e.message;
    main.prepend(el("p", { class: "error", role: "alert" }, "Cannot refresh: " + e.message));
  }
}

document.getElementById("find-user").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = new FormData(e.target).get("user").trim();
  if (name) location.href = "/u/" + encodeURIComponent(name);
});
refresh();
setInterval(refresh, REFRESH_MS);
