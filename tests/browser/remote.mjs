// A headless Chromium page (Debian's /usr/bin/chromium through playwright-core)
// driven one command at a time, for the dashboard tests: the Rust test writes a
// JSON command per line on stdin and reads one JSON answer per line on stdout.
//
//   {"op": "goto", "url": "..."}
//   {"op": "eval", "js": "expression"}                 → {"ok": true, "value": ...}
//   {"op": "wait", "js": "expression", "ms": 20000}     → waits until it is truthy
//   {"op": "click", "selector": "..."}
//   {"op": "fill", "selector": "...", "value": "..."}
//   {"op": "select", "selector": "...", "value": "..."}
//   {"op": "press", "key": "ArrowRight"}
//   {"op": "screenshot", "path": "...", "selector": "..."?}
//   {"op": "logs"}                                        → console output so far
//   {"op": "close"}
// Failures answer {"ok": false, "error": "...", "logs": [...]}; the process keeps going.
import { chromium } from 'playwright-core';
import { args, executablePath } from './chromium.mjs';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const profile = mkdtempSync(join(tmpdir(), 'vigil-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args,
});
const page = context.pages()[0] || await context.newPage();
const logs = [];
page.on('console', (m) => { logs.push(`${m.type()}: ${m.text()}`); if (logs.length > 500) logs.shift(); });
page.on('pageerror', (e) => { logs.push(`pageerror: ${e.message}`); });

async function run(c) {
  switch (c.op) {
    case 'goto': await page.goto(c.url); return null;
    case 'eval': return await page.evaluate(c.js);
    case 'wait': {
      const h = await page.waitForFunction(c.js, null, { timeout: c.ms || 20000, polling: 200 });
      return await h.jsonValue();
    }
    case 'click': await page.click(c.selector, { timeout: c.ms || 10000 }); return null;
    case 'fill': await page.fill(c.selector, c.value, { timeout: c.ms || 10000 }); return null;
    case 'select': return await page.selectOption(c.selector, c.value, { timeout: c.ms || 10000 });
    case 'press': await page.keyboard.press(c.key); return null;
    case 'screenshot':
      if (c.selector) await page.locator(c.selector).screenshot({ path: c.path });
      else await page.screenshot({ path: c.path });
      return c.path;
    case 'logs': return logs.slice();
    default: throw new Error(`unknown op ${c.op}`);
  }
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let c;
  try { c = JSON.parse(line); } catch (e) { out({ ok: false, error: `bad command: ${e.message}` }); continue; }
  if (c.op === 'close') break;
  try {
    out({ ok: true, value: (await run(c)) ?? null });
  } catch (e) {
    out({ ok: false, error: String(e && e.message || e), logs: logs.slice(-30) });
  }
}
await context.close();
rmSync(profile, { recursive: true, force: true });
out({ ok: true, value: 'closed' });
