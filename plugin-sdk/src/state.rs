//! Key-value storage per (plugin, camera), kept across host restarts. Needs the
//! `state` capability ([`crate::Capability::State`]); without it every call fails
//! with a reason. Keys up to 256 bytes, values up to 64 KiB, 1000 keys.
//!
//! ```no_run
//! use vigil_plugin_sdk::state;
//! state::set("count", b"3").unwrap();
//! assert_eq!(state::get("count").unwrap().as_deref(), Some(&b"3"[..]));
//! state::delete("count").unwrap();
//! ```

use crate::wit::state as raw;

pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    raw::get(key)
}

pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    raw::set(key, value)
}

pub fn delete(key: &str) -> Result<(), String> {
    raw::delete(key)
}
