//! The `state` capability: key-value storage per (plugin, camera) in
//! `data_dir/plugin-state.db`, kept across restarts. Small by design: keys up to
//! 256 bytes, values up to 64 KiB, 1000 keys per instance.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, ErrorKind, Result};

pub const MAX_KEY: usize = 256;
pub const MAX_VALUE: usize = 64 * 1024;
pub const MAX_KEYS: i64 = 1000;

/// The state store.
pub struct Kv {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kv")
    }
}

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::Internal, format!("plugin state: {what}: {e}"))
}

impl Kv {
    pub fn open(dir: &Path) -> Result<Kv> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let conn = Connection::open(dir.join("plugin-state.db")).map_err(err("open"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS kv (
                 plugin TEXT NOT NULL, camera TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (plugin, camera, key)
             );",
        )
        .map_err(err("schema"))?;
        Ok(Kv {
            conn: Mutex::new(conn),
        })
    }

    fn check_key(key: &str) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("keys are 1 to {MAX_KEY} bytes (got {})", key.len()),
            ));
        }
        Ok(())
    }

    pub fn get(&self, plugin: &str, camera: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Self::check_key(key)?;
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT value FROM kv WHERE plugin = ?1 AND camera = ?2 AND key = ?3",
            params![plugin, camera, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(err("get"))
    }

    pub fn set(&self, plugin: &str, camera: &str, key: &str, value: &[u8]) -> Result<()> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("values are at most {MAX_VALUE} bytes (got {})", value.len()),
            ));
        }
        let conn = self.conn.lock().unwrap();
        let exists: bool = conn
            .query_row(
                "SELECT 1 FROM kv WHERE plugin = ?1 AND camera = ?2 AND key = ?3",
                params![plugin, camera, key],
                |_| Ok(()),
            )
            .optional()
            .map_err(err("set"))?
            .is_some();
        if !exists {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM kv WHERE plugin = ?1 AND camera = ?2",
                    params![plugin, camera],
                    |r| r.get(0),
                )
                .map_err(err("set"))?;
            if n >= MAX_KEYS {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("state is full: at most {MAX_KEYS} keys per plugin and camera"),
                ));
            }
        }
        conn.execute(
            "INSERT INTO kv (plugin, camera, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (plugin, camera, key) DO UPDATE SET value = excluded.value",
            params![plugin, camera, key, value],
        )
        .map_err(err("set"))?;
        Ok(())
    }

    pub fn delete(&self, plugin: &str, camera: &str, key: &str) -> Result<()> {
        Self::check_key(key)?;
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "DELETE FROM kv WHERE plugin = ?1 AND camera = ?2 AND key = ?3",
            params![plugin, camera, key],
        )
        .map_err(err("delete"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_per_instance_with_limits() {
        let dir = std::env::temp_dir().join(format!("vigil-kv-{}", rand::random::<u64>()));
        let kv = Kv::open(&dir).unwrap();
        kv.set("p", "a", "k", b"1").unwrap();
        kv.set("p", "b", "k", b"2").unwrap();
        kv.set("p", "a", "k", b"3").unwrap();
        assert_eq!(kv.get("p", "a", "k").unwrap(), Some(b"3".to_vec()));
        assert_eq!(kv.get("p", "b", "k").unwrap(), Some(b"2".to_vec()));
        assert_eq!(kv.get("q", "a", "k").unwrap(), None);
        kv.delete("p", "a", "k").unwrap();
        assert_eq!(kv.get("p", "a", "k").unwrap(), None);
        assert!(kv.set("p", "a", "", b"x").is_err());
        assert!(
            kv.set("p", "a", "big", &vec![0; MAX_VALUE + 1])
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
