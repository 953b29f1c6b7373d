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
//! - `sleep`: sleeps in a host call for 30 s;
//! - `files`: writes into its `/data` directory, tries to leave it;
//! - `slow`: works `ms` milliseconds per frame (under its deadline);
//! - `models`: tries to load bad models (not ONNX, an input of free size, one
//!   larger than the host allows) and reports the host's errors;
//! - `pixels`, `pixels-rgb`: only fetches the frame's pixels (benchmark);
//! - `refuse`: refuses its configuration.

use vigil_plugin_sdk::{
    AnalyticsPlugin, BBox, Detection, Error, Frame, Manifest, NewEvent, Result,
};

#[derive(serde::Deserialize, Debug)]
pub struct Config {
    pub mode: String,
    /// `slow`: milliseconds of work per frame.
    #[serde(default)]
    pub ms: u64,
}

#[derive(Debug)]
pub struct Misbehave {
    mode: String,
    ms: u64,
    frames: u64,
    leaked: Vec<Vec<u8>>,
}

impl AnalyticsPlugin for Misbehave {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::analytics("misbehave", "0.1.0")
            .description("Deliberately broken plugin for the sandbox tests")
            .frames(5.0, false)
            .config_schema(
                r#"{"type":"object","required":["mode"],"properties":{"mode":{"enum":["ok","loop","grow","trap","flood","huge","capability","sleep","files","slow","refuse","pixels","pixels-rgb","models"]},"ms":{"type":"integer","minimum":0}}}"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        if cfg.mode == "refuse" {
            return Err(Error::InvalidConfig(
                "mode \"refuse\" is refused on purpose".into(),
            ));
        }
        Ok(Misbehave {
            mode: cfg.mode,
            ms: cfg.ms,
            frames: 0,
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
            "files" => {
                // Inside the granted directory: allowed. Outside it: not.
                self.frames += 1;
                let camera = vigil_plugin_sdk::camera();
                let inside = std::fs::write(format!("/data/{camera}.txt"), self.frames.to_string());
                let escape = std::fs::write("/data/../escaped.txt", b"x");
                let etc = std::fs::read("/etc/passwd");
                match (inside, escape.is_err() && etc.is_err()) {
                    (Ok(()), true) => Ok(()),
                    (inside, contained) => Err(Error::Failed(format!(
                        "write /data: {inside:?}; contained: {contained}"
                    ))),
                }
            }
            "models" => {
                use vigil_plugin_sdk::inference::Model;
                let errors: Vec<String> = [
                    Model::from_bytes(b"definitely not ONNX"),
                    Model::installed("dynamic"),
                    Model::installed("large"),
                ]
                .into_iter()
                .map(|r| match r {
                    Ok(_) => "loaded".to_string(),
                    Err(e) => e.to_string(),
                })
                .collect();
                Err(Error::Failed(errors.join(" | ")))
            }
            // Only fetch the pixels (for the benchmark's breakdown).
            "pixels" | "pixels-rgb" => {
                let format = if self.mode == "pixels" {
                    vigil_plugin_sdk::PixelFormat::Gray8
                } else {
                    vigil_plugin_sdk::PixelFormat::Rgb8
                };
                let img = frame.pixels(format, 640)?;
                std::hint::black_box(img.data.len());
                Ok(())
            }
            "slow" => {
                let t0 = std::time::Instant::now();
                let mut x = 1u64;
                while t0.elapsed() < std::time::Duration::from_millis(self.ms) {
                    x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
                }
                Ok(())
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
