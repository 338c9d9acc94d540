// End-to-end test of the fluxo web console in the system Chromium, driven by playwright-core.
// Run by tests/console.rs against a running `fluxo run` fed with simulated data; every setting
// comes from the environment:
//   FLUXO_CONSOLE_URL     the console URL with its token (http://ADDR/#token=...)
//   FLUXO_PROCESSORS      the processors that must show non-zero rates, comma-separated
//   FLUXO_GARBAGE_DLQ     the dead-letter topic that must list a bad_framing record
//   FLUXO_SECRET_DOCUMENT a document sent in clear inside a garbage record: never on a page
//   FLUXO_SCREENSHOTS     the directory the page screenshots go to
//   CHROMIUM              the browser (default /usr/bin/chromium)
// Exits 0 when every check passed, 1 with the failed check otherwise.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const url = env("FLUXO_CONSOLE_URL");
const base = url.replace(/#.*$/, "");
const processors = env("FLUXO_PROCESSORS").split(",");
const garbageDlq = env("FLUXO_GARBAGE_DLQ");
const secret = env("FLUXO_SECRET_DOCUMENT");
const shots = env("FLUXO_SCREENSHOTS");
mkdirSync(shots, { recursive: true });

const TIMEOUT = 90_000;
const step = (m) => console.log(`e2e: ${m}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
});
let failed = false;
try {
  // Without a token: the sign-in form, and the API refuses.
  {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(base);
    await page.waitForSelector("#signin:not([hidden])", { timeout: TIMEOUT });
    if (await page.isVisible("#pages")) throw new Error("pages visible without a token");
    const status = await page.evaluate(async () => (await fetch("/v1/console/pipeline")).status);
    if (status !== 401) throw new Error(`/v1/console/pipeline without a token: HTTP ${status}`);
    await ctx.close();
    step("no token: sign-in form, API answers 401");
  }

  const ctx = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  // Pipeline: the four processors with non-zero rates, in the graph and the table.
  await page.goto(url);
  await page.waitForSelector('body[data-loaded="pipeline"]', { timeout: TIMEOUT });
  if (page.url().includes("token=")) throw new Error("the token stayed in the address bar");
  await page.waitForFunction((names) => names.every((n) => {
    const row = document.querySelector(`#processors tr[data-processor="${n}"] .rate-in`);
    const node = document.querySelector(`svg.graph g[data-processor="${n}"] .rate-in`);
    return row && node && Number(row.textContent) > 0 && /in [0-9.]+\/s/.test(node.textContent)
      && !/in 0\.00\/s/.test(node.textContent);
  }), processors, { timeout: TIMEOUT, polling: 500 });
  const graphProcessors = await page.$$eval("svg.graph g.node.processor", (gs) => gs.map((g) => g.dataset.processor));
  for (const p of processors) if (!graphProcessors.includes(p)) throw new Error(`graph lacks ${p}`);
  const rates = await page.$$eval("#processors tbody tr", (rows) => rows.map((r) => `${r.dataset.processor} in ${r.querySelector(".rate-in").textContent}/s out ${r.querySelector(".rate-out").textContent}/s`));
  step(`pipeline: ${rates.join("; ")}`);
  // A topic's recent records, decoded, on click.
  await page.click('svg.graph g.node.topic >> nth=0');
  await page.waitForFunction(() => /"value": \{/.test(document.querySelector("#topic-json").textContent), null, { timeout: TIMEOUT });
  step(`pipeline: clicked ${await page.textContent("#topic-name")}, records decoded`);
  await page.screenshot({ path: join(shots, "pipeline.png"), fullPage: true });

  // Market: an alert on the chart and in the symbol's table.
  await page.goto(`${base}#/market`);
  await page.waitForFunction(() => document.body.dataset.loaded === "market"
    && Number(document.querySelector("#price-chart")?.dataset.alerts || 0) > 0
    && document.querySelectorAll("#alerts tbody tr.alert-row").length > 0
    && document.querySelector("#price-chart canvas"), null, { timeout: TIMEOUT, polling: 500 });
  // The quotes' line and the alert's marker are really on the canvas.
  const market = await page.evaluate(() => {
    const c = document.querySelector("#price-chart canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const near = (i, r, g, b) => Math.abs(d[i] - r) < 14 && Math.abs(d[i + 1] - g) < 14 && Math.abs(d[i + 2] - b) < 14 && d[i + 3] > 200;
    let line = 0, alert = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (near(i, 0x4e, 0x8f, 0xdf)) line++;
      if (near(i, 0xe0, 0x46, 0x3c)) alert++;
    }
    return { line, alert };
  });
  if (market.line < 50 || market.alert < 20) throw new Error(`market chart pixels: ${JSON.stringify(market)}`);
  const symbol = await page.inputValue("#symbol");
  const alerts = await page.$$eval("#alerts tbody tr", (r) => r.length);
  step(`market: ${symbol} with ${alerts} alert(s) marked (${market.line} line and ${market.alert} alert pixels)`);
  await page.screenshot({ path: join(shots, "market.png"), fullPage: true });

  // Risk: filter REJECT, open one in full.
  await page.goto(`${base}#/risk`);
  await page.waitForSelector('body[data-loaded="risk"]', { timeout: TIMEOUT });
  await page.click('#decision-filter button[data-decision="REJECT"]');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#decisions tbody tr")];
    return rows.length > 0 && rows.every((r) => r.dataset.decision === "REJECT");
  }, null, { timeout: TIMEOUT, polling: 500 });
  const id = await page.getAttribute("#decisions tbody tr >> nth=0", "data-transaction");
  await page.click("#decisions tbody tr >> nth=0");
  await page.waitForSelector(`#decision-facts[data-transaction="${id}"]`, { timeout: TIMEOUT });
  const reasons = await page.$$eval("#decision-detail tbody tr", (r) => r.map((x) => x.textContent));
  if (reasons.length === 0) throw new Error("the REJECT decision shows no reasons");
  if (!(await page.textContent("#decision-detail h2")).includes("REJECT")) throw new Error("opened decision is not REJECT");
  const bars = await page.$$eval("#latency-histogram .bar-row", (r) => r.length);
  if (bars === 0) throw new Error("no latency histogram");
  step(`risk: REJECT ${id} opened with ${reasons.length} reason(s); histogram of ${bars} buckets`);
  await page.screenshot({ path: join(shots, "risk.png"), fullPage: true });

  // Accounts: the chart draws its points (pixels of the running-balance colour on the canvas).
  await page.goto(`${base}#/accounts`);
  await page.waitForFunction(() => document.body.dataset.loaded === "accounts"
    && Number(document.querySelector("#balance-chart")?.dataset.points || 0) > 0
    && document.querySelector("#balance-chart canvas"), null, { timeout: TIMEOUT, polling: 500 });
  const drawn = await page.evaluate(() => {
    const c = document.querySelector("#balance-chart canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      // #4e8fdf, the running balance's stroke and points.
      if (Math.abs(d[i] - 0x4e) < 12 && Math.abs(d[i + 1] - 0x8f) < 12 && Math.abs(d[i + 2] - 0xdf) < 12 && d[i + 3] > 200) n++;
    }
    return n;
  });
  if (drawn < 50) throw new Error(`the balance chart drew ${drawn} pixels of its series`);
  const account = await page.inputValue("#account");
  const days = await page.$$eval("#balances tbody tr", (r) => r.length);
  step(`accounts: ${account}, ${days} days, ${drawn} series pixels drawn`);
  await page.screenshot({ path: join(shots, "accounts.png"), fullPage: true });

  // Dead letters: the garbage record, and never the document it carried.
  await page.goto(`${base}#/dead-letters`);
  await page.waitForFunction((dlq) => document.body.dataset.loaded === "dead-letters"
    && document.querySelector(`[data-dlq="${dlq}"] tr.dead-letter[data-reason="bad_framing"]`), garbageDlq, { timeout: TIMEOUT, polling: 500 });
  await page.$$eval("details", (ds) => ds.forEach((d) => { d.open = true; }));
  const text = await page.evaluate(() => document.body.innerText);
  const digits = secret.replace(/\D/g, "");
  const forbidden = [secret, digits, Buffer.from(secret).toString("base64"), Buffer.from(digits).toString("base64")];
  for (const f of forbidden) if (text.includes(f)) throw new Error(`a document in clear on the dead-letter page: ${f}`);
  if (/\d{11}/.test(text.replace(/\s/g, " "))) {
    const m = text.match(/\d{11,}/);
    throw new Error(`an 11-digit run on the dead-letter page: ${m && m[0]}`);
  }
  const n = await page.$$eval(`[data-dlq="${garbageDlq}"] tr.dead-letter`, (r) => r.length);
  step(`dead letters: ${n} on ${garbageDlq}, bad_framing among them, no document in clear`);
  await page.screenshot({ path: join(shots, "dead-letters.png"), fullPage: true });

  if (errors.length) throw new Error(`errors in the page: ${errors.join(" | ")}`);
  await ctx.close();
  step("every check passed");
} catch (e) {
  failed = true;
  console.error(`e2e: FAILED: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
