// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core), against the running pool: every page renders, the
// figures on it match statshttpd's API, the charts are drawn, and each page
// is photographed (desktop and phone) for a person to look at.
//
//   node install/web/browser-test.cjs OUT_DIR [USER]
//
// Run by install/test.sh after README command 1 (user "demo" has mined).
"use strict";

const fs = require("fs");
const path = require("path");

const TOOLS = process.env.SLUICE_TOOLS || "/opt/sluice-tools";
const { chromium } = require(path.join(TOOLS, "web/node_modules/playwright-core"));
const BASE = process.env.SLUICE_DASHBOARD || "http://127.0.0.1:8080";
const OUT = process.argv[2];
const USER = process.argv[3] || "demo";
const PINNED_UPLOT = require(path.join(__dirname, "package.json")).dependencies.uplot;

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
  console.log((ok ? "ok   " : "FAIL ") + what);
}

const UNITS = { "H/s": 1, "kH/s": 1e3, "MH/s": 1e6, "GH/s": 1e9, "TH/s": 1e12, "PH/s": 1e15, "EH/s": 1e18 };
function parseRate(text) {
  const [value, unit] = text.trim().split(/\s+/);
  if (!(unit in UNITS)) throw new Error("not a hashrate: " + text);
  return Number(value) * UNITS[unit];
}
function parsePercent(text) {
  const n = Number(text.replace(/[≥%,]/g, ""));
  if (!Number.isFinite(n)) throw new Error("not a percentage: " + text);
  return n;
}
function near(a, b) {
  return Math.abs(a - b) <= 0.05 * Math.max(Math.abs(b), Number.MIN_VALUE) || (a === 0 && b === 0);
}

async function api(p) {
  const r = await fetch(BASE + p);
  if (!r.ok) throw new Error(p + ": " + r.status);
  return r.json();
}

async function open(page, p) {
  await page.goto(BASE + p);
  await page.waitForFunction(() => Number(document.body.dataset.ready || 0) >= 1 || document.body.dataset.error, null, {
    timeout: 20000,
  });
  const error = await page.evaluate(() => document.body.dataset.error);
  check(!error, p + " renders without error" + (error ? ": " + error : ""));
}

async function text(page, selector) {
  return (await page.textContent(selector)).trim();
}

async function shoot(page, name) {
  await page.waitForTimeout(300); // uPlot draws on the next animation frame
  const file = path.join(OUT, name + ".png");
  await page.screenshot({ path: file, fullPage: true });
  console.log("     screenshot " + file);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const desktop = await browser.newPage({ viewport: { width: 1280, height: 900 } });

    // The chart library served is the pinned one.
    const uplot = JSON.parse(fs.readFileSync(path.join(TOOLS, "web/node_modules/uplot/package.json"), "utf8"));
    check(uplot.version === PINNED_UPLOT, "uPlot " + uplot.version + " installed, " + PINNED_UPLOT + " pinned");
    const served = await fetch(BASE + "/assets/uplot.js");
    const local = fs.readFileSync(path.join(TOOLS, "web/node_modules/uplot/dist/uPlot.iife.min.js"), "utf8");
    check(served.ok && (await served.text()) === local, "/assets/uplot.js is that uPlot");

    // Pool.
    const poolBefore = await api("/api/v1/pool");
    await open(desktop, "/pool");
    const [pool, minutes, servers] = await Promise.all([api("/api/v1/pool"), api("/api/v1/minutes"), api("/api/v1/servers")]);
    const five = parseRate(await text(desktop, "#hashrate-5m"));
    check(near(five, pool.hashrate["5m"]), `/pool 5 min ${five} vs API ${pool.hashrate["5m"]}`);
    const hour = parseRate(await text(desktop, "#hashrate-1h"));
    check(near(hour, pool.hashrate["1h"]), `/pool 1 h ${hour} vs API ${pool.hashrate["1h"]}`);
    const daySum = minutes.accept.reduce((a, b) => a + b, 0) * 4294967296 / 86400;
    const day = parseRate(await text(desktop, "#hashrate-24h"));
    check(near(day, daySum), `/pool 24 h ${day} vs minutes ${daySum}`);
    check(Number(await text(desktop, "#workers")) === pool.workers, "/pool workers = " + pool.workers);
    check(Number(await text(desktop, "#users")) === pool.users, "/pool users = " + pool.users);
    check(Number(await text(desktop, "#network-height")) === pool.network_height, "/pool network height");
    check((await desktop.$$("#pool-chart canvas")).length > 0, "/pool draws its 24 h chart");
    // The round grows while mining: what the page shows lies between the
    // API's answers before and after it loaded (within one round).
    const roundShown = await text(desktop, "#round-effort");
    if (pool.round && poolBefore.round && pool.round.since === poolBefore.round.since) {
      const shown = parsePercent(roundShown);
      check(shown >= poolBefore.round.effort * 100 * 0.95 && shown <= pool.round.effort * 100 * 1.05,
        `/pool round effort ${roundShown} between API ${poolBefore.round.effort} and ${pool.round.effort}`);
    }
    check((await desktop.$$("#servers tbody tr")).length === servers.servers.length, "/pool lists every server");
    await shoot(desktop, "pool");

    // Servers.
    await open(desktop, "/servers");
    const rows = await desktop.$$("#servers tbody tr");
    check(rows.length === servers.servers.length, `/servers: ${rows.length} rows, API ${servers.servers.length}`);
    if (servers.servers.length > 0) {
      const s = servers.servers[0];
      const cell = await text(desktop, `#servers tbody tr[data-instance="${s.instance}"] td:nth-child(5)`);
      const apiRate = s.from_shares ? s.from_shares.hashrate["5m"] : 0;
      check(near(parseRate(cell), apiRate), `/servers ${s.instance} 5 min ${cell} vs API ${apiRate}`);
    }
    await shoot(desktop, "servers");

    // Blocks.
    await open(desktop, "/blocks");
    const blocks = await api("/api/v1/blocks?limit=100");
    const blockRows = await desktop.$$("#blocks tbody tr");
    check(blockRows.length === blocks.blocks.length, `/blocks: ${blockRows.length} rows, API ${blocks.blocks.length}`);
    if (blocks.blocks.length > 0) {
      const b = blocks.blocks[0];
      const first = await desktop.getAttribute("#blocks tbody tr:first-child", "data-hash");
      check(first === b.hash, "/blocks newest first: " + first);
      const state = await text(desktop, "#blocks tbody tr:first-child td:nth-child(4)");
      check(state.startsWith(b.status === "orphaned" ? "orphaned" : b.status === "confirmed" ? "confirmed" : b.confirmations >= 1 ? "pending (" + b.confirmations : ""),
        `/blocks status "${state}" vs API ${b.status} ${b.confirmations}`);
      const shown = await text(desktop, "#blocks tbody tr:first-child td:nth-child(5)");
      if (b.effort == null) check(shown === "—", "/blocks effort unknown: " + shown);
      else check(near(parsePercent(shown), b.effort * 100), `/blocks effort ${shown} vs API ${b.effort}`);
    }
    await shoot(desktop, "blocks");

    // A user's page.
    await open(desktop, "/u/" + USER);
    const [user, workers] = await Promise.all([api("/api/v1/users/" + USER), api(`/api/v1/users/${USER}/workers`)]);
    check(Number(await text(desktop, "#workers")) === user.workers, `/u/${USER} workers = ${user.workers}`);
    const userRate = parseRate(await text(desktop, "#hashrate-5m"));
    check(near(userRate, user.hashrate["5m"]), `/u/${USER} 5 min ${userRate} vs API ${user.hashrate["5m"]}`);
    const best = await text(desktop, "#best-share");
    check(user.best_share_difficulty > 0 && best !== "—", `/u/${USER} best share ${best} vs API ${user.best_share_difficulty}`);
    const workerRows = await desktop.$$("#workers-table tbody tr");
    check(workerRows.length === workers.workers.length, `/u/${USER}: ${workerRows.length} worker rows, API ${workers.workers.length}`);
    const t = Date.now() / 1000;
    const offline = workers.workers.filter((w) => w.last_share_time == null || t - w.last_share_time > 600).length;
    check(
      (await desktop.$$("#workers-table tbody tr.offline")).length === offline,
      `/u/${USER}: ${offline} workers marked offline`,
    );
    check((await desktop.$$("#user-chart canvas")).length > 0, `/u/${USER} draws its 24 h chart`);
    // Its earnings, as the payer's books say (install/run.sh paid the demo user).
    const earnings = await api(`/api/v1/users/${USER}/earnings`);
    const btc = (sat) => (BigInt(sat) / 100000000n).toString() + "." + (BigInt(sat) % 100000000n).toString().padStart(8, "0");
    check((await text(desktop, "#paid")) === btc(earnings.balances.paid), `/u/${USER} paid ${await text(desktop, "#paid")} vs API ${earnings.balances.paid} sat`);
    check((await text(desktop, "#payable")) === btc(earnings.balances.payable), `/u/${USER} payable vs API ${earnings.balances.payable} sat`);
    const payoutRows = await desktop.$$("#payouts-table tbody tr");
    check(payoutRows.length === Math.min(10, earnings.payouts.length) && payoutRows.length > 0,
      `/u/${USER}: ${payoutRows.length} payout rows, API ${earnings.payouts.length}`);
    if (earnings.payouts.length) {
      const txid = await text(desktop, "#payouts-table tbody tr:first-child td:nth-child(5)");
      check(txid === earnings.payouts[0].txid, `/u/${USER} newest payout ${txid}`);
    }
    await shoot(desktop, "user");

    // On a phone.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
    await open(phone, "/pool");
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, "/pool fits a phone's width (overflow " + overflow + " px)");
    await shoot(phone, "pool-phone");
    await open(phone, "/u/" + USER);
    await shoot(phone, "user-phone");
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.error(failures.length + " failed");
    process.exit(1);
  }
  console.log("the dashboard matches the API on every page");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
