//! Logging to the host's log, tagged with the plugin and camera.
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

/// Logs at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::write(1, &::std::format!($($t)*)) }; }
/// Logs at info level.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::write(2, &::std::format!($($t)*)) }; }
/// Logs at warn level.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::write(3, &::std::format!($($t)*)) }; }
/// Logs at error level.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::write(4, &::std::format!($($t)*)) }; }
