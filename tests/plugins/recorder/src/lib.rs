//! Records the camera's video packets (Annex B) to `/data/{generation}.h264`,
//! a file per stream generation, and audio packets' sizes to `/data/audio.log`.
//! With `max_packets`, stops writing after that many video packets.

use std::io::Write;

use vigil_plugin_sdk::{Capability, Error, Event, Manifest, OutputPlugin, Packet, Result};

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub audio: bool,
    #[serde(default)]
    pub max_packets: Option<u64>,
}

#[derive(Debug)]
pub struct Recorder {
    cfg: Config,
    file: Option<(u64, std::fs::File)>,
    video: u64,
}

impl OutputPlugin for Recorder {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::output("recorder", "0.1.0")
            .description("Test plugin: records video packets to files")
            .packets(true, true)
            .capability(Capability::Files)
            .config_schema(
                r#"{"type":"object","additionalProperties":false,"properties":{"audio":{"type":"boolean"},"max_packets":{"type":"integer","minimum":1}}}"#,
            )
    }

    fn new(cfg: Config) -> Result<Self> {
        Ok(Recorder {
            cfg,
            file: None,
            video: 0,
        })
    }

    fn on_event(&mut self, _: &Event) -> Result<()> {
        Ok(())
    }

    fn on_packet(&mut self, p: &Packet) -> Result<()> {
        let io = |e: std::io::Error| Error::Failed(format!("/data: {e}"));
        if !p.is_video() {
            if self.cfg.audio {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open("/data/audio.log")
                    .map_err(io)?;
                writeln!(f, "{} {} {}", p.codec, p.pts_ns, p.data.len()).map_err(io)?;
            }
            return Ok(());
        }
        if self.cfg.max_packets.is_some_and(|m| self.video >= m) {
            return Ok(());
        }
        if self.file.as_ref().is_none_or(|(g, _)| *g != p.generation) {
            if !p.key {
                return Err(Error::Failed(
                    "a new generation started without a key frame".into(),
                ));
            }
            let f = std::fs::File::create(format!("/data/{}.h264", p.generation)).map_err(io)?;
            self.file = Some((p.generation, f));
        }
        if let Some((_, f)) = self.file.as_mut() {
            f.write_all(&p.data).map_err(io)?;
        }
        self.video += 1;
        Ok(())
    }
}

vigil_plugin_sdk::output_plugin!(Recorder);
