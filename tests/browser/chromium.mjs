// How the browser tests start Debian's Chromium (shared by drive.mjs and remote.mjs).
export const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
export const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
  // WebRTC over loopback only: tests never leave this machine.
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns'];
