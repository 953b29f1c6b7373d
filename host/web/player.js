// The camera player shared by the dashboard (`dashboard.js`) and the embeddable
// player page (`player.html`): WHEP (RFC 9725) → LL-HLS (hls.js) → MJPEG, with
// per-frame callbacks (requestVideoFrameCallback) and the frame's host time.
'use strict';

/** Plays one camera into `stage` over WHEP, LL-HLS or MJPEG (`auto`: in that order). */
class VigilPlayer {
  constructor(camera, stage, protocol, onChange) {
    this.camera = camera; this.stage = stage; this.wanted = protocol; this.onChange = onChange;
    this.state = 'idle'; this.protocol = null; this.el = null; this.pc = null; this.hls = null;
    this.session = null; this.frames = 0; this.error = null; this.errors = []; this.run = 0;
    this.lastProgress = 0; this.frameCallbacks = []; this.firstFrameMs = null; this.debug = false;
  }
  /** Remembers a problem (the last 20) for whoever shows or tests them. */
  note(msg) {
    this.errors.push(msg);
    if (this.errors.length > 20) this.errors.shift();
  }
  set(state, error) {
    this.state = state; if (error !== undefined) this.error = error;
    this.onChange && this.onChange(this);
  }
  /** Starts (or restarts) playing; resolves when playing or every protocol failed. */
  async start() {
    this.teardown();
    const run = ++this.run;
    const order = this.wanted === 'auto' ? ['whep', 'hls', 'mjpeg'] : [this.wanted];
    this.set('connecting', null);
    for (const p of order) {
      if (run !== this.run) return;
      try {
        await this.startOne(p, run);
        if (run === this.run) { this.lastProgress = performance.now(); this.set('playing', null); }
        return;
      } catch (e) {
        if (run !== this.run) return;
        const msg = `${p}: ${e.message || e}`;
        this.note(msg);
        this.teardown();
        this.error = msg;
      }
    }
    if (run === this.run) this.set('failed', this.error);
  }
  stop() { this.run++; this.teardown(); this.set('idle', null); }
  /** Releases the current element and connection (the caller moves `run`). */
  teardown() {
    if (this.session) { fetch(this.session, { method: 'DELETE', keepalive: true }).catch(() => {}); this.session = null; }
    if (this.pc) { try { this.pc.close(); } catch (_) {} this.pc = null; }
    if (this.hls) { try { this.hls.destroy(); } catch (_) {} this.hls = null; }
    if (this.el) {
      if (this.el.tagName === 'IMG') this.el.src = '';
      else { this.el.srcObject = null; this.el.removeAttribute('src'); try { this.el.load(); } catch (_) {} }
      this.el.remove(); this.el = null;
    }
    this.protocol = null;
  }
  video() {
    const v = document.createElement('video');
    v.muted = true; v.autoplay = true; v.playsInline = true;
    const count = (now, meta) => {
      if (this.el !== v) return;
      this.frames++; this.lastProgress = performance.now();
      for (const f of this.frameCallbacks) f(v, meta);
      v.requestVideoFrameCallback(count);
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(count);
    else v.addEventListener('timeupdate', () => { this.frames++; this.lastProgress = performance.now(); });
    this.stage.prepend(v);
    this.el = v;
    return v;
  }
  /** Resolves once the element shows a picture, rejects after `ms`. */
  waitPlaying(v, ms) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no picture within ${ms / 1000} s`)), ms);
      v.addEventListener('playing', () => { clearTimeout(t); resolve(); }, { once: true });
      v.addEventListener('error', () => { clearTimeout(t); reject(new Error('the media element failed')); }, { once: true });
    });
  }
  async startOne(p, run) {
    this.protocol = p;
    if (p === 'mjpeg') return this.startMjpeg();
    const v = this.video();
    if (p === 'hls') return this.startHls(v, run);
    return this.startWhep(v, run);
  }
  async startWhep(v, run) {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (ev) => { stream.addTrack(ev.track); v.srcObject = stream; };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc && pc.connectionState === 'failed') this.set('stalled', 'WebRTC connection failed');
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 2000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
    const posted = performance.now();
    v.addEventListener('playing', () => { this.firstFrameMs = performance.now() - posted; }, { once: true });
    const r = await fetch(`/cameras/${encodeURIComponent(this.camera)}/whep`, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (r.status !== 201) {
      let msg = `WHEP ${r.status}`;
      try { msg += ': ' + (await r.json()).error.message; } catch (_) {}
      throw new Error(msg);
    }
    const loc = r.headers.get('Location');
    if (run !== this.run) { fetch(loc, { method: 'DELETE' }).catch(() => {}); return; }
    this.session = loc;
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    await this.waitPlaying(v, 10000);
  }
  async startHls(v) {
    if (!(window.Hls && Hls.isSupported())) throw new Error('hls.js is not available in this browser');
    const src = `/cameras/${encodeURIComponent(this.camera)}/hls/index.m3u8`;
    const hls = new Hls({ lowLatencyMode: true, backBufferLength: 4, maxLiveSyncPlaybackRate: 1.5,
      debug: this.debug === true });
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_e, d) => {
      if (!d.fatal) this.note(`${d.type}/${d.details}`);
    });
    const failed = new Promise((_, reject) => hls.on(Hls.Events.ERROR, (_e, d) => {
      if (d.fatal) reject(new Error(`HLS ${d.details}${d.response && d.response.code ? ' ' + d.response.code : ''}`));
    }));
    hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal && this.hls === hls && this.state === 'playing') this.set('stalled', `HLS ${d.details}`); });
    hls.loadSource(src);
    hls.attachMedia(v);
    await Promise.race([this.waitPlaying(v, 35000), failed]);
  }
  startMjpeg() {
    return new Promise((resolve, reject) => {
      const img = document.createElement('img');
      img.alt = this.camera;
      const t = setTimeout(() => reject(new Error('no picture within 10 s')), 10000);
      let started = false;
      img.onload = () => { clearTimeout(t); started = true; this.frames++; this.lastProgress = performance.now(); resolve(); };
      img.onerror = () => {
        clearTimeout(t);
        if (!started) reject(new Error('MJPEG stream failed'));
        else if (this.el === img) this.set('stalled', 'MJPEG stream ended');
      };
      img.src = `/cameras/${encodeURIComponent(this.camera)}/mjpeg`;
      this.stage.prepend(img);
      this.el = img;
    });
  }
  /** Media time of the element, seconds (video), for tests and the info line. */
  currentTime() { return this.el && this.el.tagName === 'VIDEO' ? this.el.currentTime : null; }
  /**
   * When the host received the frame on screen (ms since 1970, host clock), from
   * the frame's metadata: WebRTC receive time, the LL-HLS program date-time of the
   * position played, or for MJPEG now less a typical delay. `skew`: the host's
   * clock minus this page's, ms.
   */
  frameWallMs(meta, skew = 0) {
    if (this.protocol === 'whep' && meta) {
      // receiveTime is on the monotonic clock: convert through "now" on both
      // clocks rather than timeOrigin (the two drift apart, e.g. after a suspend).
      const t = meta.receiveTime ?? meta.presentationTime;
      if (t) return Date.now() - (performance.now() - t) + skew;
    }
    if (this.protocol === 'hls' && this.hls) {
      const d = this.hls.playingDate;
      if (d && this.el) {
        const behind = meta && typeof meta.mediaTime === 'number' ? (this.el.currentTime - meta.mediaTime) : 0;
        return d.getTime() - behind * 1000;
      }
      return Date.now() + skew - (this.hls.latency || 2) * 1000;
    }
    return Date.now() + skew - 150;
  }
}


window.VigilPlayer = VigilPlayer;
