// Drives one headless Chromium page for the Rust e2e tests (tests/e2e/wallboard.rs), so a
// test can interleave SIP steps and browser steps. Reads one JSON command per line on stdin,
// answers one JSON line per command on stdout: {"id", "ok": true, "value"} or
// {"id", "ok": false, "error"}. Commands ({"cmd": ..., ...}):
//   goto {url}                       fill {selector, value}          click {selector}
//   waitForSelector {selector, state?, timeout?}   (state: attached|detached|visible|hidden)
//   waitForText {selector, text, timeout?}   until the element's text contains `text`
//   textContent {selector}           count {selector}
//   screenshot {path, fullPage?}     setViewport {width, height}
//   evaluate {expression}            (a JS expression evaluated in the page; JSON result)
//   errors                           page errors and console errors seen so far
//   closePage                        close the tab (later page commands fail)
//   close
// Chromium: CHROMIUM_PATH or /usr/bin/chromium, headless, --no-sandbox (root in CI), plus the
// flags in DRIVER_CHROMIUM_ARGS (one per line).

import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

const DEFAULT_TIMEOUT_MS = 10000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  // DRIVER_CHROMIUM_ARGS: more flags, one per line (the agent desk test's fake microphone).
  args: [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    ...(process.env.DRIVER_CHROMIUM_ARGS || "").split("\n").filter(Boolean),
  ],
});
const context = await browser.newContext({
  viewport: { width: 1920, height: 1080 },
  locale: process.env.DRIVER_LOCALE || "en-GB",
});
const page = await context.newPage();
page.setDefaultTimeout(DEFAULT_TIMEOUT_MS);
const errors = [];
page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
page.on("console", (m) => {
  if (m.type() === "error") errors.push(`console: ${m.text()}`);
});

async function run(c) {
  const timeout = c.timeout ?? DEFAULT_TIMEOUT_MS;
  switch (c.cmd) {
    case "goto":
      await page.goto(c.url, { waitUntil: "load", timeout });
      return null;
    case "fill":
      await page.fill(c.selector, c.value, { timeout });
      return null;
    case "click":
      await page.click(c.selector, { timeout });
      return null;
    case "waitForSelector":
      await page.waitForSelector(c.selector, { state: c.state || "visible", timeout });
      return null;
    case "waitForText":
      await page.waitForFunction(
        ([sel, text]) => {
          const el = document.querySelector(sel);
          return !!el && el.textContent.includes(text);
        },
        [c.selector, c.text],
        { timeout, polling: 50 },
      );
      return null;
    case "textContent":
      return await page.textContent(c.selector, { timeout });
    case "count":
      return await page.locator(c.selector).count();
    case "screenshot":
      mkdirSync(dirname(c.path), { recursive: true });
      await page.screenshot({ path: c.path, fullPage: !!c.fullPage });
      return c.path;
    case "setViewport":
      await page.setViewportSize({ width: c.width, height: c.height });
      return null;
    case "evaluate":
      return await page.evaluate(c.expression);
    case "errors":
      return errors.slice();
    case "closePage":
      // The tab goes as if the user closed it (no beforeunload): its connections drop.
      await page.close({ runBeforeUnload: false });
      return null;
    case "close":
      return null;
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

function answer(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

answer({ id: null, ok: true, value: `ready ${browser.version()}` });
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let c;
  try {
    c = JSON.parse(line);
  } catch (e) {
    answer({ id: null, ok: false, error: `bad JSON: ${e.message}` });
    continue;
  }
  try {
    const value = await run(c);
    answer({ id: c.id ?? null, ok: true, value: value ?? null });
  } catch (e) {
    answer({ id: c.id ?? null, ok: false, error: String(e.message || e).split("\n")[0] });
  }
  if (c.cmd === "close") break;
}
await browser.close();
process.exit(0);
