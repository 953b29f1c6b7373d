// Drives Debian's Chromium through playwright-core for the integration tests and
// benchmarks. One JSON object on stdout; diagnostics on stderr.
//
//   node drive.mjs play <url> <seconds> <screenshot.png>
//     Opens a Vigil player page, waits for it to play, samples the media element
//     for <seconds>, takes a screenshot; reports currentTime progress, dimensions,
//     a blankness measure of the displayed picture, player errors and, for
//     ?stamp=1 pages, glass-to-glass latencies.
//   node drive.mjs vanish <url>
//     Plays the page, then kills the browser (SIGKILL): a viewer that vanishes
//     without saying goodbye.
import { chromium } from 'playwright-core';
import { args, executablePath } from './chromium.mjs';
import { spawnSync } from 'node:child_process';

const [mode, url, secondsArg, shot] = process.argv.slice(2);
const seconds = Number(secondsArg || 5);
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args,
});
try {
  const page = await browser.newPage({ viewport: { width: 960, height: 540 } });
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  if (mode !== 'play' && mode !== 'vanish') throw new Error(`unknown mode ${mode}`);
  const t0 = Date.now();
  await page.goto(url);
  let started = null;
  try {
    await page.waitForFunction(() => window.vigil && window.vigil.state === 'playing', null, { timeout: 20000 });
    started = Date.now() - t0;
    if (mode === 'vanish') {
      const session = await page.evaluate(() => window.vigil.session);
      out({ ok: true, startedMs: started, session });
      // The browser is this process's child: kill it outright.
      spawnSync('pkill', ['-KILL', '-P', String(process.pid)]);
      process.exit(0);
    }
  } catch (e) {
    const v = await page.evaluate(() => window.vigil && { state: window.vigil.state, errors: window.vigil.errors });
    out({ ok: false, reason: 'never played', vigil: v, logs });
    process.exit(0);
  }
  const sample = () => page.evaluate(() => {
    const el = window.vigil.element;
    const isVideo = el && el.tagName === 'VIDEO';
    // A checksum of a downscaled copy of the displayed picture: changes as it moves.
    let sig = null;
    try {
      const c = document.createElement('canvas'); c.width = 64; c.height = 36;
      const ctx = c.getContext('2d'); ctx.drawImage(el, 0, 0, 64, 36);
      const d = ctx.getImageData(0, 0, 64, 36).data;
      let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + (d[i] >> 3)) >>> 0;
      sig = h;
    } catch (e) { sig = null; }
    return {
      sig,
      t: isVideo ? el.currentTime : null,
      w: isVideo ? el.videoWidth : el.naturalWidth,
      h: isVideo ? el.videoHeight : el.naturalHeight,
      frames: window.vigil.framesShown,
      readyState: isVideo ? el.readyState : null,
    };
  });
  const first = await sample();
  const samples = [first];
  for (let i = 0; i < seconds; i++) {
    await page.waitForTimeout(1000);
    samples.push(await sample());
  }
  // Blankness of the displayed picture: luma standard deviation over a canvas copy.
  const picture = await page.evaluate(() => {
    const el = window.vigil.element;
    const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight;
    if (!w || !h) return null;
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const ctx = c.getContext('2d');
    ctx.drawImage(el, 0, 0);
    let d;
    try { d = ctx.getImageData(0, 0, w, h).data; } catch (e) { return { error: String(e) }; }
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < d.length; i += 16) { const y = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += y; sq += y * y; n++; }
    const mean = sum / n;
    return { mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)) };
  });
  if (shot) await page.screenshot({ path: shot });
  // WebRTC receive statistics: what arrived per kind and with which codec.
  const rtp = await page.evaluate(async () => {
    const pc = window.vigil.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    const codecs = {};
    stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    const out = {};
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out[s.kind] = { packets: s.packetsReceived, bytes: s.bytesReceived, codec: codecs[s.codecId] || null,
          framesDecoded: s.framesDecoded ?? null };
      }
    });
    return out;
  });
  const extra = await page.evaluate(() => ({
    protocol: window.vigil.protocol,
    errors: window.vigil.errors,
    session: window.vigil.session,
    firstFrameMs: window.vigil.firstFrameMs ?? null,
    hlsLatency: window.vigil.hls ? window.vigil.hls.latency : null,
    hlsTargetLatency: window.vigil.hls ? window.vigil.hls.targetLatency : null,
    latencies: window.vigil.latencies,
  }));
  out({ ok: true, startedMs: started, samples, picture, rtp, ...extra, logs: process.env.DRIVE_ALL_LOGS ? logs : logs.slice(-20) });
} catch (e) {
  out({ ok: false, reason: String(e && e.stack || e) });
} finally {
  await browser.close();
}
