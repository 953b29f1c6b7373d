//! A badly behaved analytics plugin for the sandbox tests. Its configuration picks
//! the misbehaviour, applied on every frame:
//!
//! - `ok`: emits one `tick` event per frame (a well-behaved baseline);
//! - `loop`: never returns;
//! - `grow`: leaks 4 MiB per frame until the memory limit stops it;
//! - `trap`: panics;
//! - `flood`: tries to emit 100 000 events per frame;
//! - `huge`: emits an event with a million detections;
//! - `capability`: uses storage and HTTP it was not granted;
//! - `sleep`: sleeps in a host call for 30 s.

use vigil_plugin_sdk::{
    AnalyticsPlugin, BBox, Detection, Error, Frame, Manifest, NewEvent, Result,
};

#[derive(serde::Deserialize, Debug)]
pub struct Config {
    pub mode: String,
}

#[derive(Debug)]
pub struct Misbehave {
    mode: String,
    leaked: Vec<Vec<u8>>,
}

impl AnalyticsPlugin for Misbehave {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::analytics("misbehave", "0.1.0")
            .description("Deliberately broken plugin for the sandbox tests")
            .frames(5.0, false)
            .config_schema(
                r#"{"type":"object","required":["mode"],"properties":{"mode":{"enum":["ok","loop","grow","trap","flood","huge","capability","sleep"]}}}"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        Ok(Misbehave {
            mode: cfg.mode,
            leaked: Vec::new(),
        })
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
        match self.mode.as_str() {
            "ok" => vigil_plugin_sdk::emit(NewEvent::new("tick")).map_err(Error::Failed),
            "loop" => {
                let mut x: u64 = frame.media_time_ns() as u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "grow" => {
                self.leaked.push(vec![1u8; 4 << 20]);
                Ok(())
            }
            "trap" => panic!("misbehave: trap on purpose"),
            "flood" => {
                let mut rejected = 0;
                for _ in 0..100_000 {
                    if vigil_plugin_sdk::emit(NewEvent::new("flood")).is_err() {
                        rejected += 1;
                    }
                }
                Err(Error::Failed(format!(
                    "{rejected} of 100000 events refused"
                )))
            }
            "huge" => {
                let d = Detection::new("x", 0.5, BBox::new(0.1, 0.1, 0.1, 0.1));
                let e = NewEvent::new("huge").detections(std::iter::repeat_n(d, 1_000_000));
                vigil_plugin_sdk::emit(e).map_err(Error::Failed)
            }
            "capability" => {
                let s = vigil_plugin_sdk::state::set("k", b"v");
                let h = vigil_plugin_sdk::http::post_json("http://127.0.0.1:9/x", b"{}", &[]);
                Err(Error::Failed(format!("state: {s:?}; http: {h:?}")))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                Ok(())
            }
            other => Err(Error::InvalidConfig(format!("unknown mode {other:?}"))),
        }
    }
}

vigil_plugin_sdk::analytics_plugin!(Misbehave);
