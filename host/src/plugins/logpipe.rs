//! A plugin's stdout/stderr: lines go to the host's log tagged with the plugin
//! and camera, truncated and rate-limited so a chatty plugin cannot flood it (and,
//! unlike WASI's memory pipe, never trap the plugin when it writes a lot).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const MAX_LINE: usize = 1024;
/// Lines per second logged per instance; the rest are counted and summarized.
const LINES_PER_SECOND: u32 = 20;

struct Lines {
    plugin: String,
    camera: String,
    partial: Vec<u8>,
    window: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Lines {
    fn line(&mut self, bytes: &[u8]) {
        if self.window.elapsed().as_secs() >= 1 {
            if self.suppressed > 0 {
                tracing::info!(plugin = %self.plugin, camera = %self.camera, "({} plugin output lines suppressed)", self.suppressed);
            }
            self.window = Instant::now();
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window >= LINES_PER_SECOND {
            self.suppressed += 1;
            return;
        }
        self.in_window += 1;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE)]);
        tracing::info!(plugin = %self.plugin, camera = %self.camera, "plugin output: {}", text.trim_end());
    }

    fn write(&mut self, mut buf: &[u8]) {
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&buf[..nl]);
            self.line(&line);
            buf = &buf[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&buf[..buf.len().min(room)]);
    }
}

/// The stdout/stderr stream handed to a plugin's WASI context.
#[derive(Clone)]
pub struct LogPipe(Arc<Mutex<Lines>>);

impl LogPipe {
    pub fn new(plugin: String, camera: String) -> Self {
        Self(Arc::new(Mutex::new(Lines {
            plugin,
            camera,
            partial: Vec::new(),
            window: Instant::now(),
            in_window: 0,
            suppressed: 0,
        })))
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl std::fmt::Debug for LogPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogPipe")
    }
}
