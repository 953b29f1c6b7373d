//! Logging to the host's log, tagged with the plugin and camera: the
//! [`debug!`](crate::debug), [`info!`](crate::info), [`warn!`](crate::warn) and
//! [`error!`](crate::error) macros, with `format!` syntax.
//!
//! The host keeps the first 4096 characters of a message and logs it through its
//! own filter (`VIGIL_LOG`, `info` by default: debug messages are hidden unless
//! the operator asks for them). Writing to stdout/stderr (`println!`) also reaches
//! the log, line by line (up to 1024 bytes a line, 20 lines a second per
//! instance; the rest are counted and summarized). Log sparingly on the frame
//! path.
//!
//! ```no_run
//! vigil_plugin_sdk::info!("zone {} armed", "door");
//! vigil_plugin_sdk::warn!("slow frame: {} ms", 120);
//! ```

use crate::wit::host::{self, LogLevel};

#[doc(hidden)]
pub fn write(level: u8, message: &str) {
    let level = match level {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        _ => LogLevel::Error,
    };
    host::log(level, message);
}

/// Logs at debug level (hidden by the host's default filter).
///
/// ```no_run
/// let (w, h) = (160, 90);
/// vigil_plugin_sdk::debug!("analysing at {w}x{h}");
/// ```
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::write(1, &::std::format!($($t)*)) }; }
/// Logs at info level.
///
/// ```no_run
/// vigil_plugin_sdk::info!("configured with {} zones", 3);
/// ```
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::write(2, &::std::format!($($t)*)) }; }
/// Logs at warn level.
///
/// ```no_run
/// let status = 503;
/// vigil_plugin_sdk::warn!("webhook answered HTTP {status}, retrying");
/// ```
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::write(3, &::std::format!($($t)*)) }; }
/// Logs at error level.
///
/// ```no_run
/// let e = "connection refused";
/// vigil_plugin_sdk::error!("giving up on the webhook: {e}");
/// ```
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::write(4, &::std::format!($($t)*)) }; }
