//! Key-value storage per (plugin, camera), kept across restarts of the instance
//! and of the host (in `data_dir/plugin-state.db`). Needs the `state` capability
//! ([`crate::Capability::State`]) granted by the operator; without it every call
//! fails with `the state capability is not granted to this plugin`.
//!
//! Small by design: keys 1–256 bytes, values up to 64 KiB, at most 1000 keys per
//! (plugin, camera). Each call is a synchronous database access on the host,
//! counted against the call's deadline: keep state in memory and persist it when
//! it changes, not on every frame. Storage is keyed by the operator's plugin id,
//! so it survives upgrades and reconfiguration.
//!
//! ```no_run
//! use vigil_plugin_sdk::state;
//! state::set("count", b"3").unwrap();
//! assert_eq!(state::get("count").unwrap().as_deref(), Some(&b"3"[..]));
//! state::delete("count").unwrap();
//! ```

use crate::wit::state as raw;

/// The value stored under `key`, or `None` when there is none. Fails (with the
/// host's reason) when the capability is not granted, the key is empty or longer
/// than 256 bytes, or the storage fails.
///
/// ```no_run
/// // Restore a counter saved by an earlier instance.
/// let count: u64 = vigil_plugin_sdk::state::get("count")
///     .ok()
///     .flatten()
///     .and_then(|v| String::from_utf8(v).ok())
///     .and_then(|s| s.parse().ok())
///     .unwrap_or(0);
/// ```
pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    raw::get(key)
}

/// Stores `value` under `key`, replacing what was there. Fails (with the host's
/// reason) when the capability is not granted, the key is empty or longer than
/// 256 bytes, the value is larger than 64 KiB, or 1000 other keys exist already.
///
/// ```no_run
/// # let count = 3u64;
/// vigil_plugin_sdk::state::set("count", count.to_string().as_bytes())
///     .map_err(vigil_plugin_sdk::Error::Failed)?;
/// # Ok::<(), vigil_plugin_sdk::Error>(())
/// ```
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    raw::set(key, value)
}

/// Removes `key` (nothing happens when it does not exist). Fails (with the host's
/// reason) when the capability is not granted or the key is empty or longer than
/// 256 bytes.
///
/// ```no_run
/// vigil_plugin_sdk::state::delete("count").unwrap();
/// assert_eq!(vigil_plugin_sdk::state::get("count").unwrap(), None);
/// ```
pub fn delete(key: &str) -> Result<(), String> {
    raw::delete(key)
}
