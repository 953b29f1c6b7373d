// Vigil dashboard: live grid (WHEP → LL-HLS → MJPEG), detection and zone overlays
// in step with the displayed frame, live event feed and searchable timeline,
// plugin management with forms generated from each plugin's JSON Schema.
// No framework and nothing fetched from outside: the host embeds this file.
// State useful to tests and to people debugging is on `window.dash`.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
/** Creates an element: h('div', {class: 'x', onclick: f}, child, 'text'). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}
const enc = encodeURIComponent;
const fmtTime = (ms) => new Date(ms).toLocaleString(undefined, { hour12: false });
const fmtClock = (ms) => new Date(ms).toLocaleTimeString(undefined, { hour12: false });

/** fetch + JSON; a failed request throws an Error with the server's message. */
async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!r.ok) {
    const e = new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
    e.status = r.status; e.body = body;
    throw e;
  }
  return body;
}

const dash = window.dash = {
  view: 'live', cameras: [], camerasById: new Map(), tiles: {}, feed: [], sse: 'connecting',
  skewMs: 0, plugins: [], detections: new Map(), zones: new Map(), errors: [], focus: null,
};

// ---------------------------------------------------------------------------
// Overlays: detections in step with the displayed frame, zones and lines.

const OVERLAY_FULL_MS = 1000;   // drawn at full strength this long after its frame
const OVERLAY_GONE_MS = 3000;   // then fades out by this age
const KIND_COLOURS = ['#6fd48a', '#6ab0ff', '#f2c14e', '#ff7b7b', '#c38bff', '#4fd6d6', '#ff9f5a'];
function colourOf(s) { let x = 0; for (const c of s) x = (x * 31 + c.charCodeAt(0)) >>> 0; return KIND_COLOURS[x % KIND_COLOURS.length]; }

/** Keeps events with boxes, per camera, for the overlays. */
function rememberDetections(ev) {
  if (!ev.detections || !ev.detections.length) return;
  const t = ev.media_wall_ms || ev.wall_ms;
  let list = dash.detections.get(ev.camera);
  if (!list) { list = []; dash.detections.set(ev.camera, list); }
  list.push({ t, ev });
  list.sort((a, b) => a.t - b.t);
  const cut = Date.now() + dash.skewMs - 30000;
  while (list.length && (list[0].t < cut || list.length > 100)) list.shift();
}

/** The detections to show on a frame the host received at `frameWall`: per
 *  plugin, the latest event at or before it (events for frames not yet shown
 *  wait) that is not too old, with its age. */
function detectionsFor(camera, frameWall) {
  const list = dash.detections.get(camera);
  const found = [];
  if (!list) return found;
  const seen = new Set();
  for (let i = list.length - 1; i >= 0; i--) {
    const { t, ev } = list[i];
    if (t > frameWall + 40 || seen.has(ev.plugin) || !isAnalytics(ev.plugin)) continue;
    seen.add(ev.plugin);
    const age = frameWall - t;
    if (age <= OVERLAY_GONE_MS) found.push({ ev, age: Math.max(0, age) });
  }
  return found;
}

/** Whether events of `plugin` are an analytics plugin's own boxes: rule plugins
 *  such as zones repeat detections they were given (drawing them again would
 *  double them). Unknown until the plugin list has loaded: not drawn. */
function isAnalytics(plugin) {
  const p = dash.plugins.find((x) => x.id === plugin);
  return !!(p && p.manifest && p.manifest.kind === 'analytics');
}

/** Where the picture sits inside an element showing it with object-fit: contain. */
function contentRect(el, cw, ch) {
  const vw = el.videoWidth || el.naturalWidth, vh = el.videoHeight || el.naturalHeight;
  if (!vw || !vh) return { x: 0, y: 0, w: cw, h: ch };
  const s = Math.min(cw / vw, ch / vh);
  return { x: (cw - vw * s) / 2, y: (ch - vh * s) / 2, w: vw * s, h: vh * s };
}

class Overlay {
  constructor(camera, stage, player) {
    this.camera = camera; this.player = player;
    this.canvas = h('canvas', { class: 'overlay', 'aria-hidden': 'true' });
    stage.append(this.canvas);
    this.boxes = 0; this.zones = 0; this.age = null; this.draws = 0; this.eventId = null;
    player.frameCallbacks.push((_v, meta) => this.draw(player.frameWallMs(meta, dash.skewMs)));
    // MJPEG has no per-frame callback; redraw on a timer (also repaints zones).
    this.timer = setInterval(() => {
      if (player.protocol === 'mjpeg' || performance.now() - player.lastProgress > 500) this.draw(player.frameWallMs(null, dash.skewMs));
    }, 200);
  }
  destroy() { clearInterval(this.timer); this.canvas.remove(); }
  draw(frameWall) {
    const c = this.canvas, el = this.player.el;
    const dpr = window.devicePixelRatio || 1;
    const cw = c.clientWidth, ch = c.clientHeight;
    if (!cw || !ch) return;
    if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
      c.width = Math.round(cw * dpr); c.height = Math.round(ch * dpr);
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    if (!el) { this.boxes = 0; return; }
    const r = contentRect(el, cw, ch);
    this.zones = drawZones(ctx, r, dash.zones.get(this.camera));
    this.boxes = 0; this.age = null;
    for (const f of detectionsFor(this.camera, frameWall)) {
      const alpha = f.age <= OVERLAY_FULL_MS ? 1
        : Math.max(0, 1 - (f.age - OVERLAY_FULL_MS) / (OVERLAY_GONE_MS - OVERLAY_FULL_MS));
      this.age = this.age === null ? Math.round(f.age) : Math.min(this.age, Math.round(f.age));
      this.eventId = f.ev.id;
      this.boxes += drawBoxes(ctx, r, f.ev.detections, alpha);
    }
    this.draws++;
  }
}

function drawBoxes(ctx, r, detections, alpha) {
  let n = 0;
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.lineWidth = 2;
  ctx.font = '12px system-ui, sans-serif';
  for (const d of detections) {
    const b = d.bbox; if (!b) continue;
    const x = r.x + b.x * r.w, y = r.y + b.y * r.h, w = b.width * r.w, hgt = b.height * r.h;
    const col = colourOf(d.label || '?');
    ctx.strokeStyle = col; ctx.strokeRect(x, y, w, hgt);
    const text = `${d.label}${d.track_id !== undefined && d.track_id !== null ? ' #' + d.track_id : ''} ${Math.round((d.score || 0) * 100)}%`;
    const tw = ctx.measureText(text).width + 6;
    const ty = y > 16 ? y - 16 : y;
    ctx.fillStyle = col; ctx.fillRect(x, ty, tw, 16);
    ctx.fillStyle = '#000'; ctx.fillText(text, x + 3, ty + 12);
    n++;
  }
  ctx.restore();
  return n;
}

function drawZones(ctx, r, z) {
  if (!z) return 0;
  let n = 0;
  ctx.save();
  ctx.font = '12px system-ui, sans-serif';
  ctx.lineWidth = 1.5;
  for (const zone of z.zones) {
    if (!Array.isArray(zone.polygon) || zone.polygon.length < 3) continue;
    ctx.beginPath();
    zone.polygon.forEach(([x, y], i) => { const px = r.x + x * r.w, py = r.y + y * r.h; i ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
    ctx.closePath();
    ctx.fillStyle = '#6ab0ff22'; ctx.fill();
    ctx.strokeStyle = '#6ab0ffaa'; ctx.stroke();
    const [x0, y0] = zone.polygon[0];
    ctx.fillStyle = '#cfe5ff'; ctx.fillText(zone.name || '', r.x + x0 * r.w + 4, r.y + y0 * r.h + 14);
    n++;
  }
  for (const line of z.lines) {
    if (!Array.isArray(line.a) || !Array.isArray(line.b)) continue;
    ctx.setLineDash([6, 4]); ctx.strokeStyle = '#f2c14ecc'; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(r.x + line.a[0] * r.w, r.y + line.a[1] * r.h);
    ctx.lineTo(r.x + line.b[0] * r.w, r.y + line.b[1] * r.h); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = '#ffe7a8';
    ctx.fillText(line.name || '', r.x + line.a[0] * r.w + 4, r.y + line.a[1] * r.h - 4);
    n++;
  }
  ctx.restore();
  return n;
}

/** Zones and lines configured for any plugin on a camera (the zones plugin). */
async function loadZones(camera) {
  try {
    const instances = await api(`/api/cameras/${enc(camera)}/plugins`);
    const z = { zones: [], lines: [] };
    for (const i of instances) {
      const c = i.config || {};
      if (Array.isArray(c.zones)) z.zones.push(...c.zones);
      if (Array.isArray(c.lines)) z.lines.push(...c.lines);
    }
    dash.zones.set(camera, z.zones.length || z.lines.length ? z : null);
  } catch (_) { /* the camera may be gone; the next refresh tells */ }
}

// ---------------------------------------------------------------------------
// Live grid

const ui = { page: 0, pageSize: 16, filter: '', stateFilter: 'all', protocol: 'auto', kbd: 0 };
const io = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const t = dash.tiles[e.target.dataset.camera];
    if (!t) continue;
    t.visible = e.isIntersecting;
    syncTile(t);
  }
}, { threshold: 0.05 });

function visibleCameras() {
  const q = ui.filter.trim().toLowerCase();
  return dash.cameras.filter((c) => {
    if (q && !`${c.id} ${c.name} ${c.state}`.toLowerCase().includes(q)) return false;
    if (ui.stateFilter === 'streaming') return c.state === 'streaming';
    if (ui.stateFilter === 'problems') return c.state === 'retrying' || c.state === 'failed';
    return true;
  });
}

function viewersOf(c) {
  const o = c.outputs || {};
  return ['webrtc', 'hls', 'mjpeg'].reduce((n, p) => n + ((o[p] && o[p].viewers) || 0), 0);
}

/** Rebuilds the grid for the current page (tiles of other pages are torn down). */
function renderGrid() {
  const cams = visibleCameras();
  const pages = Math.max(1, Math.ceil(cams.length / ui.pageSize));
  ui.page = Math.min(ui.page, pages - 1);
  const shown = cams.slice(ui.page * ui.pageSize, (ui.page + 1) * ui.pageSize);
  $('#page-label').textContent = `page ${ui.page + 1} of ${pages} · ${cams.length} camera${cams.length === 1 ? '' : 's'}`;
  $('#prev').disabled = ui.page === 0; $('#next').disabled = ui.page >= pages - 1;
  $('#grid-empty').hidden = shown.length > 0;
  const want = new Set(shown.map((c) => c.id));
  for (const id of Object.keys(dash.tiles)) if (!want.has(id)) removeTile(id);
  const grid = $('#grid');
  shown.forEach((c, i) => {
    const t = dash.tiles[c.id] || makeTile(c);
    if (grid.children[i] !== t.el) grid.insertBefore(t.el, grid.children[i] || null);
    updateTile(t, c);
  });
  ui.kbd = Math.min(ui.kbd, Math.max(0, shown.length - 1));
}

function makeTile(c) {
  const stage = h('div', { class: 'stage' });
  const el = h('div', { class: 'tile', tabindex: '0', role: 'gridcell', 'data-camera': c.id,
    'aria-label': `camera ${c.name}` },
  stage,
  h('div', { class: 'label' }, h('b', { text: c.name }), h('span', { class: 'badge viewers', title: 'viewers now' }),
    h('span', { class: 'badge proto' }), h('span', { class: 'badge cam-state' })),
  h('div', { class: 'reason', hidden: true }),
  h('div', { class: 'info' }));
  const t = { id: c.id, el, stage, visible: false, player: null, overlay: null, restartAt: 0, backoff: 1000 };
  el.addEventListener('click', () => openFocus(c.id));
  el.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openFocus(c.id); } });
  el.addEventListener('focus', () => { ui.kbd = $$('#grid .tile').indexOf(el); });
  dash.tiles[c.id] = t;
  io.observe(el);
  return t;
}

function removeTile(id) {
  const t = dash.tiles[id];
  if (!t) return;
  io.unobserve(t.el);
  stopTile(t);
  t.el.remove();
  delete dash.tiles[id];
}

function stopTile(t) {
  if (t.overlay) { t.overlay.destroy(); t.overlay = null; }
  if (t.player) { t.player.stop(); t.player = null; }
}

/** Whether a camera can be played now (on-demand cameras connect for a viewer). */
const playable = (c) => c && (c.state === 'streaming' || c.state === 'idle' || c.state === 'connecting');

/** Starts or stops a tile's stream: in view, not behind the focus view, camera up. */
function syncTile(t) {
  const c = dash.camerasById.get(t.id);
  const want = t.visible && !dash.focus && dash.view === 'live' && !document.hidden;
  if (!want) { if (t.player) stopTile(t); return; }
  if (!t.player) {
    if (!playable(c)) return;
    t.player = new VigilPlayer(t.id, t.stage, ui.protocol, () => updateTile(t, dash.camerasById.get(t.id)));
    t.overlay = new Overlay(t.id, t.stage, t.player);
    loadZones(t.id);
    t.player.start();
    return;
  }
  // A stream that stopped moving while its camera streams (it came back after an
  // outage, or the network dropped): start again, with backoff.
  const p = t.player;
  // (Chromium fires `load` for the first part of an MJPEG stream only, so MJPEG
  // progress cannot be seen; its failures still show as `error`.)
  const stuck = p.state === 'failed' || p.state === 'stalled' ||
    (p.state === 'playing' && p.protocol !== 'mjpeg' && performance.now() - p.lastProgress > 5000);
  if (stuck && c && c.state === 'streaming' && performance.now() >= t.restartAt) {
    t.restartAt = performance.now() + t.backoff;
    t.backoff = Math.min(t.backoff * 2, 15000);
    p.start();
  } else if (p.state === 'playing' && performance.now() - p.lastProgress < 2000) {
    t.backoff = 1000;
  }
}

function updateTile(t, c) {
  if (!c) return;
  const st = $('.cam-state', t.el);
  st.textContent = c.state; st.className = `badge cam-state st-${c.state}`;
  const v = viewersOf(c);
  $('.viewers', t.el).textContent = `${v} viewer${v === 1 ? '' : 's'}`;
  const p = t.player;
  const proto = $('.proto', t.el);
  proto.textContent = p ? `${p.protocol || p.wanted} ${p.state}` : 'stopped';
  proto.className = `badge proto pl-${p ? p.state : 'idle'}`;
  const reason = $('.reason', t.el);
  let why = null;
  if (c.state !== 'streaming' && c.state !== 'idle' && c.last_error) why = `${c.state}: ${c.last_error}`;
  else if (p && p.state === 'failed') why = `cannot play: ${p.error}`;
  reason.hidden = !why; reason.textContent = why || '';
  $('.info', t.el).textContent = [c.width ? `${c.width}×${c.height}` : null, c.fps ? `${c.fps} fps` : null,
    c.codec].filter(Boolean).join(' · ');
}

async function refreshCameras() {
  try {
    const t0 = Date.now();
    const [cams, health] = await Promise.all([api('/api/cameras'), api('/api/health')]);
    const t1 = Date.now();
    if (health && health.server_time_ms) dash.skewMs = health.server_time_ms - (t0 + t1) / 2;
    dash.cameras = cams;
    dash.camerasById = new Map(cams.map((c) => [c.id, c]));
    const streaming = cams.filter((c) => c.state === 'streaming').length;
    const problems = cams.filter((c) => c.state === 'retrying' || c.state === 'failed').length;
    $('#summary').textContent = `${cams.length} cameras · ${streaming} streaming` + (problems ? ` · ${problems} with problems` : '');
    if (dash.view === 'live') renderGrid();
    for (const t of Object.values(dash.tiles)) syncTile(t);
    fillCameraSelects();
    if (dash.focus) updateFocusFacts();
  } catch (e) {
    $('#summary').textContent = `cannot reach the server: ${e.message}`;
  }
}

function fillCameraSelects() {
  for (const sel of [$('#event-search select[name=camera]'), $('#pl-camera')]) {
    const have = $$('option', sel).map((o) => o.value).filter(Boolean).join('\n');
    const ids = dash.cameras.map((c) => c.id);
    if (have === ids.join('\n')) continue;
    const keep = sel.value;
    $$('option', sel).forEach((o) => { if (o.value) o.remove(); });
    for (const c of dash.cameras) sel.append(h('option', { value: c.id, text: c.name === c.id ? c.id : `${c.name} (${c.id})` }));
    sel.value = keep && ids.includes(keep) ? keep : (sel.id === 'pl-camera' ? ids[0] || '' : '');
  }
}

// ---------------------------------------------------------------------------
// Focus view: one camera large, with its facts, plugins and recent events.

function openFocus(id) {
  const c = dash.camerasById.get(id);
  if (!c) return;
  closeFocus();
  dash.focus = { id, returnTo: document.activeElement };
  for (const t of Object.values(dash.tiles)) syncTile(t);
  const stage = $('#focus-stage');
  const player = new VigilPlayer(id, stage, ui.protocol, () => updateFocusFacts());
  const overlay = new Overlay(id, stage, player);
  dash.focus.player = player; dash.focus.overlay = overlay;
  $('#focus-title').textContent = c.name;
  $('#focus').hidden = false;
  $('#focus .close').focus();
  loadZones(id);
  player.start();
  updateFocusFacts();
  const current = () => dash.focus && dash.focus.id === id && dash.focus.player === player;
  api(`/api/cameras/${enc(id)}/plugins`).then((list) => {
    if (!current()) return;
    $('#focus-plugins').replaceChildren(...(list.length ? list.map((i) => h('li', {},
      h('span', { class: `state-${i.state}`, text: `${i.plugin}: ${i.state}` }),
      i.last_error ? h('div', { class: 'muted', text: i.last_error }) : null))
      : [h('li', { class: 'muted', text: 'none' })]));
  }).catch(() => {});
  api(`/api/events?camera=${enc(id)}&limit=20`).then((r) => {
    if (!current()) return;
    $('#focus-events').replaceChildren(...r.events.map(eventItem));
  }).catch(() => {});
}

function closeFocus() {
  if (!dash.focus) return;
  const f = dash.focus;
  f.overlay.destroy(); f.player.stop();
  dash.focus = null;
  $('#focus').hidden = true;
  for (const t of Object.values(dash.tiles)) syncTile(t);
  if (f.returnTo && f.returnTo.focus) f.returnTo.focus();
}

function updateFocusFacts() {
  if (!dash.focus) return;
  const c = dash.camerasById.get(dash.focus.id);
  const p = dash.focus.player;
  if (!c) return;
  const o = c.outputs || {};
  const facts = [
    ['state', c.state], ['last error', c.last_error], ['player', p ? `${p.protocol || p.wanted} ${p.state}${p.error ? ' — ' + p.error : ''}` : ''],
    ['video', c.width ? `${c.codec} ${c.width}×${c.height} ${c.fps || '?'} fps ${c.bitrate_kbps || '?'} kbit/s` : c.codec],
    ['audio', c.audio || 'none'], ['reconnects', c.reconnects],
    ['viewers', ['webrtc', 'hls', 'mjpeg'].map((k) => `${k} ${(o[k] && o[k].viewers) || 0}`).join(', ')],
    ['url', c.url],
  ];
  $('#focus-facts').replaceChildren(...facts.filter(([, v]) => v !== null && v !== undefined && v !== '')
    .flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })]));
}

// ---------------------------------------------------------------------------
// Events: live feed (SSE), search and timeline, detail with snapshot and boxes.

function describe(ev) {
  const d = ev.detections || [];
  if (!d.length) return (ev.attributes || []).map(([k, v]) => `${k}=${v}`).slice(0, 3).join(' ');
  const counts = {};
  for (const x of d) counts[x.label] = (counts[x.label] || 0) + 1;
  return Object.entries(counts).map(([l, n]) => `${n} ${l}`).join(', ');
}

function eventItem(ev) {
  return h('li', { 'data-event': ev.id, 'data-kind': ev.kind, 'data-camera': ev.camera, tabindex: '0',
    onclick: () => openEvent(ev), onkeydown: (e) => { if (e.key === 'Enter') openEvent(ev); } },
  h('span', { class: 'muted', text: fmtClock(ev.wall_ms) + ' ' }),
  h('span', { class: `kind sev-${ev.severity}`, text: ev.kind }),
  h('span', { text: ` · ${ev.camera}` }),
  h('div', { class: 'muted', text: describe(ev) }));
}

function startFeed() {
  const es = new EventSource('/api/events/stream');
  const conn = $('#conn');
  es.onopen = () => { dash.sse = 'open'; conn.textContent = 'events: live'; conn.className = 'conn ok'; };
  es.onerror = () => { dash.sse = 'reconnecting'; conn.textContent = 'events: reconnecting…'; conn.className = 'conn bad'; };
  es.addEventListener('event', (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    dash.feed.unshift(ev);
    if (dash.feed.length > 200) dash.feed.pop();
    rememberDetections(ev);
    const feed = $('#feed');
    feed.prepend(eventItem(ev));
    while (feed.children.length > 200) feed.lastChild.remove();
    addKind(ev.kind);
    if (dash.focus && dash.focus.id === ev.camera) {
      const list = $('#focus-events');
      list.prepend(eventItem(ev));
      while (list.children.length > 200) list.lastChild.remove();
    }
  });
  es.addEventListener('lagged', (m) => {
    let n = '?'; try { n = JSON.parse(m.data).missed; } catch (_) {}
    $('#feed').prepend(h('li', { class: 'muted', text: `${n} events skipped (the feed fell behind)` }));
  });
}

const kinds = new Set();
function addKind(k) {
  if (kinds.has(k)) return;
  kinds.add(k);
  $('#kinds').append(h('option', { value: k }));
}

const search = { cursor: null, events: [], range: null };
function localToMs(v) { return v ? new Date(v).getTime() : null; }

async function runSearch(more) {
  const f = $('#event-search');
  const q = new URLSearchParams();
  const camera = f.camera.value, kind = f.kind.value.trim();
  const since = localToMs(f.since.value), until = localToMs(f.until.value);
  if (camera) q.set('camera', camera);
  if (kind) q.set('kind', kind);
  if (since) q.set('since', String(since));
  if (until) q.set('until', String(until));
  q.set('limit', '200');
  if (more && search.cursor) q.set('cursor', search.cursor);
  const status = $('#search-status');
  status.textContent = 'searching…';
  try {
    const r = await api(`/api/events?${q}`);
    if (!more) { search.events = []; $('#event-rows').replaceChildren(); }
    search.events.push(...r.events);
    search.cursor = r.next_cursor;
    search.range = [since, until];
    for (const ev of r.events) {
      addKind(ev.kind);
      $('#event-rows').append(h('tr', { class: 'clickable', tabindex: '0', 'data-event': ev.id,
        onclick: () => openEvent(ev), onkeydown: (e) => { if (e.key === 'Enter') openEvent(ev); } },
      h('td', { text: fmtTime(ev.wall_ms) }), h('td', { text: ev.camera }),
      h('td', { class: `kind sev-${ev.severity}`, text: ev.kind }), h('td', { text: ev.plugin }),
      h('td', { text: describe(ev) })));
    }
    $('#more').hidden = !search.cursor;
    status.textContent = `${search.events.length} event${search.events.length === 1 ? '' : 's'}${search.cursor ? ' (more older)' : ''}`;
    drawTimeline();
  } catch (e) {
    status.textContent = e.message;
  }
}

function drawTimeline() {
  const c = $('#timeline');
  const dpr = window.devicePixelRatio || 1;
  c.width = c.clientWidth * dpr; c.height = c.clientHeight * dpr;
  const ctx = c.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const w = c.clientWidth, hgt = c.clientHeight;
  ctx.clearRect(0, 0, w, hgt);
  const evs = search.events;
  if (!evs.length) { search.ticks = []; return; }
  const times = evs.map((e) => e.wall_ms);
  let [t0, t1] = search.range || [];
  t0 = t0 || Math.min(...times); t1 = t1 || Math.max(...times);
  if (t1 - t0 < 1000) { t0 -= 500; t1 += 500; }
  const x = (t) => 8 + (t - t0) / (t1 - t0) * (w - 16);
  ctx.fillStyle = '#9aa3ad'; ctx.font = '11px system-ui, sans-serif';
  ctx.fillText(fmtTime(t0), 8, hgt - 4);
  const endLabel = fmtTime(t1); ctx.fillText(endLabel, w - 8 - ctx.measureText(endLabel).width, hgt - 4);
  search.ticks = evs.map((e) => ({ x: x(e.wall_ms), ev: e }));
  for (const tk of search.ticks) {
    ctx.fillStyle = colourOf(tk.ev.kind);
    ctx.fillRect(tk.x - 1, 6, 2, hgt - 24);
  }
}

function openEvent(ev) {
  const box = $('#event-detail');
  $('#ev-title').textContent = `${ev.kind} on ${ev.camera}`;
  const img = $('#ev-img'), canvas = $('#ev-boxes');
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  $('#ev-noimg').hidden = !!ev.has_snapshot;
  img.hidden = !ev.has_snapshot; canvas.hidden = !ev.has_snapshot;
  if (ev.has_snapshot) {
    img.onload = () => {
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const r = { x: 0, y: 0, w: img.naturalWidth, h: img.naturalHeight };
      drawBoxes(canvas.getContext('2d'), r, ev.detections || [], 1);
    };
    img.src = `/api/events/${enc(ev.id)}/snapshot.jpg`;
  } else {
    img.removeAttribute('src');
  }
  const facts = [['time', fmtTime(ev.wall_ms)], ['camera', ev.camera], ['plugin', ev.plugin], ['severity', ev.severity],
    ['detections', (ev.detections || []).map((d) => `${d.label} ${Math.round(d.score * 100)}%`).join(', ')],
    ...(ev.attributes || []).map(([k, v]) => [k, v]), ['id', ev.id]];
  $('#ev-facts').replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })]));
  box.hidden = false;
  dash.openEvent = ev.id;
  $('.close', box).focus();
}

// ---------------------------------------------------------------------------
// Plugins: what is installed, instances on a camera, forms from JSON Schema.

async function refreshPlugins() {
  try {
    dash.plugins = await api('/api/plugins');
  } catch (e) { $('#plugin-cards').replaceChildren(h('p', { class: 'form-error', text: e.message })); return; }
  $('#plugin-cards').replaceChildren(...dash.plugins.map((p) => {
    const m = p.manifest;
    const caps = (m && m.capabilities) || [];
    return h('div', { class: 'card', 'data-plugin': p.id },
      h('h3', { text: m ? `${m.name} ${m.version}` : p.id }),
      h('div', { class: 'muted', text: m ? `${m.kind} plugin · id ${p.id} · ${p.instances} instance${p.instances === 1 ? '' : 's'}` : p.id }),
      m ? h('p', { text: m.description }) : null,
      p.error ? h('p', { class: 'form-error', text: `not loaded: ${p.error}` }) : null,
      caps.length ? h('div', { class: 'caps' }, 'asks for: ', ...caps.map((c) => h('span', {
        class: p.grants.includes(c) ? '' : 'denied', title: p.grants.includes(c) ? 'granted' : 'not granted by the operator', text: c }))) : h('div', { class: 'muted', text: 'asks for no capabilities' }));
  }));
  const sel = $('#pl-enable');
  const keep = sel.value;
  sel.replaceChildren(...dash.plugins.filter((p) => p.manifest).map((p) => h('option', { value: p.id, text: `${p.manifest.name} (${p.id})` })));
  if (keep) sel.value = keep;
}

async function refreshInstances() {
  const camera = $('#pl-camera').value;
  if (!camera) return;
  let list;
  try { list = await api(`/api/cameras/${enc(camera)}/plugins`); } catch (e) {
    if ($('#pl-camera').value !== camera) return;
    $('#instance-rows').replaceChildren(h('tr', {}, h('td', { colspan: '9', class: 'form-error', text: e.message })));
    return;
  }
  // Another camera was chosen while this answer was on its way: not its rows.
  if ($('#pl-camera').value !== camera) return;
  dash.instances = list;
  $('#instance-rows').replaceChildren(...(list.length ? list.map((i) => h('tr', { 'data-plugin': i.plugin },
    h('td', { text: i.plugin }), h('td', { class: `state-${i.state}`, text: i.state }),
    h('td', { text: i.restarts }), h('td', { text: i.calls }),
    h('td', { text: `${i.mean_call_ms === null ? '–' : i.mean_call_ms.toFixed(2)} / ${i.max_call_ms.toFixed(2)} ms` }),
    h('td', { text: i.dropped }), h('td', { text: `${i.events_emitted}${i.events_rejected ? ` (${i.events_rejected} rejected)` : ''}` }),
    h('td', { class: 'muted', text: i.last_error || '' }),
    h('td', {}, h('button', { text: 'Reconfigure', onclick: () => showPluginForm(camera, i.plugin, i.config, true) }), ' ',
      h('button', { text: 'Disable', onclick: () => disablePlugin(camera, i.plugin) }))))
    : [h('tr', {}, h('td', { colspan: '9', class: 'muted', text: 'No plugin on this camera.' }))]));
}

async function disablePlugin(camera, plugin) {
  try {
    await api(`/api/cameras/${enc(camera)}/plugins/${enc(plugin)}`, { method: 'DELETE' });
  } catch (e) { alertBox(e.message); }
  loadZones(camera);
  refreshInstances();
}

function alertBox(msg) {
  const box = $('#plugin-form-box');
  box.hidden = false;
  box.replaceChildren(h('p', { class: 'form-error', text: msg }));
}

/** A form for `schema` (object properties: numbers, integers, booleans, strings,
 *  enums; arrays and objects as JSON) filled from `value` or the defaults. */
function schemaForm(schema, value) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const fields = [];
  for (const [name, s] of Object.entries(props)) {
    const id = `f-${name}`;
    const has = value && Object.prototype.hasOwnProperty.call(value, name);
    const v = has ? value[name] : s.default;
    const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
    let input, read;
    if (Array.isArray(s.enum)) {
      input = h('select', { id, name });
      if (!required.has(name)) input.append(h('option', { value: '', text: '(default)' }));
      for (const opt of s.enum) input.append(h('option', { value: JSON.stringify(opt), text: String(opt) }));
      input.value = v === undefined ? '' : JSON.stringify(v);
      read = () => (input.value === '' ? undefined : JSON.parse(input.value));
    } else if (type === 'boolean') {
      input = h('input', { id, name, type: 'checkbox' });
      input.checked = v === true;
      read = () => input.checked;
    } else if (type === 'integer' || type === 'number') {
      input = h('input', { id, name, type: 'text', inputmode: 'decimal', autocomplete: 'off' });
      input.value = v === undefined || v === null ? '' : String(v);
      read = () => {
        const t = input.value.trim();
        if (t === '') return undefined;
        const n = Number(t);
        if (!Number.isFinite(n)) throw new Error(`"${t}" is not a number`);
        return n; // the schema says whether it must be an integer, and its range
      };
    } else if (type === 'string') {
      input = h('input', { id, name, type: 'text', autocomplete: 'off' });
      input.value = v === undefined || v === null ? '' : String(v);
      read = () => (input.value === '' && !required.has(name) ? undefined : input.value);
    } else {
      input = h('textarea', { id, name, spellcheck: 'false' });
      input.value = v === undefined ? '' : JSON.stringify(v, null, 1);
      read = () => {
        const t = input.value.trim();
        if (t === '') return undefined;
        try { return JSON.parse(t); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
      };
    }
    const error = h('div', { class: 'field-error', 'data-for': name, role: 'alert' });
    const hint = [s.description, s.minimum !== undefined ? `min ${s.minimum}` : null, s.maximum !== undefined ? `max ${s.maximum}` : null,
      s.default !== undefined && typeof s.default !== 'object' ? `default ${s.default}` : null].filter(Boolean).join(' · ');
    const el = h('div', { class: 'field', 'data-field': name },
      h('label', { for: id, text: `${name}${required.has(name) ? ' *' : ''}` }), input,
      hint ? h('div', { class: 'help', text: hint }) : null, error);
    fields.push({ name, el, input, read, error });
  }
  return {
    el: h('div', {}, ...fields.map((f) => f.el)),
    fields,
    /** The configuration, or field errors found before sending. */
    read() {
      const out = {}, errors = [];
      for (const f of fields) {
        try { const v = f.read(); if (v !== undefined) out[f.name] = v; } catch (e) { errors.push({ pointer: `/${f.name}`, message: e.message }); }
      }
      return { value: out, errors };
    },
    /** Shows errors ({pointer, message}) next to their fields; the rest returned. */
    showErrors(list) {
      for (const f of fields) { f.error.textContent = ''; f.el.classList.remove('invalid'); f.input.removeAttribute('aria-invalid'); }
      const rest = [];
      for (const e of list) {
        const top = decodeURIComponent((e.pointer || '/').split('/')[1] || '').replace(/~1/g, '/').replace(/~0/g, '~');
        const f = fields.find((x) => x.name === top);
        if (!f) { rest.push(e); continue; }
        const where = e.pointer && e.pointer !== `/${top}` ? `${e.pointer}: ` : '';
        f.error.textContent = (f.error.textContent ? f.error.textContent + '; ' : '') + `${top}: ${where}${e.message}`;
        f.el.classList.add('invalid'); f.input.setAttribute('aria-invalid', 'true');
      }
      return rest;
    },
  };
}

/** "/threshold: reason; /x: reason" out of a 422 message, for servers without `fields`. */
function problemsFromMessage(msg) {
  const i = msg.indexOf(': /');
  if (i < 0) return [];
  return msg.slice(i + 2).split('; ').map((p) => {
    const j = p.indexOf(': ');
    return j > 0 ? { pointer: p.slice(0, j), message: p.slice(j + 2) } : { pointer: '/', message: p };
  });
}

function showPluginForm(camera, pluginId, config, existing) {
  const p = dash.plugins.find((x) => x.id === pluginId);
  const box = $('#plugin-form-box');
  box.hidden = false;
  if (!p || !p.manifest) { box.replaceChildren(h('p', { class: 'form-error', text: `plugin ${pluginId} is not loaded` })); return; }
  const form = schemaForm(p.manifest.config_schema, config);
  const formError = h('div', { class: 'form-error', role: 'alert' });
  const done = h('span', { class: 'muted' });
  const el = h('form', { id: 'plugin-form', 'data-plugin': pluginId, 'data-camera': camera, novalidate: true },
    h('h3', { text: `${existing ? 'Reconfigure' : 'Enable'} ${p.manifest.name} on ${camera}` }),
    h('p', { class: 'muted', text: p.manifest.description }),
    form.el, formError,
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', text: existing ? 'Apply' : 'Enable' }),
      h('button', { type: 'button', text: 'Cancel', onclick: () => { box.hidden = true; box.replaceChildren(); } }), done));
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.textContent = ''; done.textContent = '';
    const { value, errors } = form.read();
    if (errors.length) { formError.textContent = form.showErrors(errors).map((x) => x.message).join('; '); return; }
    form.showErrors([]);
    done.textContent = 'saving…';
    try {
      await api(`/api/cameras/${enc(camera)}/plugins/${enc(pluginId)}`, {
        method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(value) });
      done.textContent = existing ? 'applied' : 'enabled';
      el.dataset.result = 'ok';
      loadZones(camera);
      refreshInstances(); refreshPlugins();
    } catch (err) {
      done.textContent = '';
      el.dataset.result = 'error';
      const fields = (err.body && err.body.error && err.body.error.fields) || (err.status === 422 ? problemsFromMessage(err.message) : []);
      const rest = form.showErrors(fields);
      formError.textContent = fields.length && !rest.length ? 'Fix the fields marked above.' : err.message;
    }
  });
  box.replaceChildren(el);
  const first = $('input, select, textarea', el);
  if (first) first.focus();
}

// ---------------------------------------------------------------------------
// Views, keyboard, start-up

function setView(v) {
  dash.view = v;
  for (const b of $$('#tabs button')) b.setAttribute('aria-selected', String(b.dataset.view === v));
  for (const s of $$('.view')) s.hidden = s.id !== `view-${v}`;
  if (v === 'live') renderGrid();
  for (const t of Object.values(dash.tiles)) syncTile(t);
  if (v === 'plugins') { refreshPlugins().then(refreshInstances); }
  if (v === 'events' && !search.events.length) runSearch(false);
  if (location.hash !== `#${v}`) history.replaceState(null, '', `#${v}`);
}

function moveKbd(delta) {
  const tiles = $$('#grid .tile');
  if (!tiles.length) return;
  ui.kbd = Math.max(0, Math.min(tiles.length - 1, ui.kbd + delta));
  tiles[ui.kbd].focus();
}

function gridColumns() {
  const cols = getComputedStyle($('#grid')).gridTemplateColumns.split(' ').filter(Boolean).length;
  return Math.max(1, cols);
}

document.addEventListener('keydown', (e) => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName);
  if (e.key === 'Escape') {
    if (!$('#event-detail').hidden) { $('#event-detail').hidden = true; return; }
    if (dash.focus) { closeFocus(); return; }
    if (typing) document.activeElement.blur();
    return;
  }
  if (typing || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === 'l') return setView('live');
  if (e.key === 'e') return setView('events');
  if (e.key === 'p') return setView('plugins');
  if (dash.view !== 'live' || dash.focus) return;
  if (e.key === '/') { e.preventDefault(); $('#filter').focus(); return; }
  const inGrid = document.activeElement && document.activeElement.classList.contains('tile');
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: gridColumns(), ArrowUp: -gridColumns() }[e.key];
  if (step !== undefined) { e.preventDefault(); inGrid ? moveKbd(step) : moveKbd(0); return; }
  if (e.key === 'PageDown') { e.preventDefault(); ui.page++; renderGrid(); moveKbd(-1e9); return; }
  if (e.key === 'PageUp') { e.preventDefault(); ui.page = Math.max(0, ui.page - 1); renderGrid(); moveKbd(-1e9); }
});

function init() {
  addEventListener('error', (e) => dash.errors.push(String(e.message || e)));
  addEventListener('unhandledrejection', (e) => dash.errors.push(String((e.reason && e.reason.message) || e.reason)));
  const hashView = location.hash.slice(1);
  const params = new URLSearchParams(location.search);
  if (params.get('protocol')) ui.protocol = params.get('protocol');
  if (params.get('per_page')) ui.pageSize = Math.max(1, Number(params.get('per_page')) || 16);
  $('#protocol').value = ui.protocol;
  if (![...$('#page-size').options].some((o) => o.value === String(ui.pageSize))) $('#page-size').append(h('option', { text: String(ui.pageSize) }));
  $('#page-size').value = String(ui.pageSize);
  for (const b of $$('#tabs button')) b.addEventListener('click', () => setView(b.dataset.view));
  $('#filter').addEventListener('input', (e) => { ui.filter = e.target.value; ui.page = 0; renderGrid(); });
  $('#state-filter').addEventListener('change', (e) => { ui.stateFilter = e.target.value; ui.page = 0; renderGrid(); });
  $('#page-size').addEventListener('change', (e) => { ui.pageSize = Number(e.target.value); ui.page = 0; renderGrid(); });
  $('#protocol').addEventListener('change', (e) => {
    ui.protocol = e.target.value;
    for (const t of Object.values(dash.tiles)) stopTile(t);
    for (const t of Object.values(dash.tiles)) syncTile(t);
  });
  $('#prev').addEventListener('click', () => { ui.page = Math.max(0, ui.page - 1); renderGrid(); });
  $('#next').addEventListener('click', () => { ui.page++; renderGrid(); });
  $('#event-search').addEventListener('submit', (e) => { e.preventDefault(); runSearch(false); });
  $('#more').addEventListener('click', () => runSearch(true));
  $('#timeline').addEventListener('click', (e) => {
    const r = e.target.getBoundingClientRect();
    const x = e.clientX - r.left;
    let best = null;
    for (const tk of search.ticks || []) if (!best || Math.abs(tk.x - x) < Math.abs(best.x - x)) best = tk;
    if (best && Math.abs(best.x - x) < 8) openEvent(best.ev);
  });
  $('#pl-camera').addEventListener('change', () => { $('#plugin-form-box').hidden = true; refreshInstances(); });
  $('#pl-enable-btn').addEventListener('click', () => {
    const camera = $('#pl-camera').value, plugin = $('#pl-enable').value;
    if (!camera || !plugin) return;
    const cur = (dash.instances || []).find((i) => i.plugin === plugin);
    showPluginForm(camera, plugin, cur ? cur.config : null, !!cur);
  });
  $('#focus .close').addEventListener('click', closeFocus);
  $('#focus').addEventListener('click', (e) => { if (e.target.id === 'focus') closeFocus(); });
  $('#event-detail .close').addEventListener('click', () => { $('#event-detail').hidden = true; });
  $('#event-detail').addEventListener('click', (e) => { if (e.target.id === 'event-detail') e.target.hidden = true; });
  document.addEventListener('visibilitychange', () => {
    for (const t of Object.values(dash.tiles)) syncTile(t);
    // The large view too: no stream for a page nobody sees.
    if (dash.focus) { if (document.hidden) dash.focus.player.stop(); else dash.focus.player.start(); }
  });
  addEventListener('pagehide', () => { for (const t of Object.values(dash.tiles)) stopTile(t); closeFocus(); });
  addEventListener('resize', () => { if (dash.view === 'events') drawTimeline(); });
  startFeed();
  refreshCameras().then(() => setView(['live', 'events', 'plugins'].includes(hashView) ? hashView : 'live'));
  refreshPlugins();
  setInterval(refreshCameras, 2000);
  setInterval(() => { if (dash.view === 'plugins') refreshInstances(); }, 2000);
  setInterval(() => { for (const t of Object.values(dash.tiles)) if (t.player) loadZones(t.id); }, 30000);
}

init();
