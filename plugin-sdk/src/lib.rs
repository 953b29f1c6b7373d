//! Write [Vigil](https://example.invalid/vigil) plugins in Rust.
//!
//! A plugin is a WebAssembly component the Vigil host runs sandboxed, one instance
//! per camera it is enabled on. There are three kinds:
//!
//! - **analytics** ([`AnalyticsPlugin`]): gets decoded frames of a camera, emits
//!   events (motion, detections, …);
//! - **rule** ([`RulePlugin`]): gets the camera's events and periodic ticks, emits
//!   derived events (zones, line crossing, loitering, …);
//! - **output** ([`OutputPlugin`]): gets the camera's events and/or its encoded
//!   packets and delivers them somewhere (a webhook, a recording, …) through
//!   capabilities the operator granted.
//!
//! Implement the trait for your type and export it with the matching macro
//! ([`analytics_plugin!`], [`rule_plugin!`], [`output_plugin!`]), once per crate,
//! in a `cdylib` crate; build with `cargo build --target wasm32-wasip2 --release`
//! and give the host the `.wasm`. The crate hides the raw bindings: configuration
//! arrives already parsed into your `Config` type (serde), events and frames are
//! plain Rust types.
//!
//! What the crate offers besides the traits:
//!
//! - [`emit`] an event ([`NewEvent`], with [`Detection`]s in normalized
//!   [`BBox`]es), [`camera`] to know which camera the instance serves;
//! - [`Frame::pixels`]: the frame scaled and converted on the host ([`Image`]);
//! - [`state`] (key-value storage), [`http`] (outbound requests) and a `/data`
//!   directory through `std::fs`: capabilities the operator must grant;
//! - [`info!`], [`warn!`], [`error!`], [`debug!`]: the host's log.
//!
//! The export macros only export the component's functions when building for
//! `wasm32`; a native build (`cargo test`) compiles everything else, so pure
//! logic can be unit-tested natively. Host functions ([`emit`], [`state`],
//! [`Frame`], logging) exist only inside the host: natively they panic, so test
//! them with `vigil plugin run` instead.
//!
//! The repository's `docs/plugins.md` is the plugin author's guide and
//! `plugin-sdk/template/` a plugin to start from.
//!
//! ```no_run
//! use vigil_plugin_sdk::{AnalyticsPlugin, Frame, Manifest, NewEvent, PixelFormat, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { threshold: f32 }
//!
//! struct Brightness { threshold: f32 }
//!
//! impl AnalyticsPlugin for Brightness {
//!     type Config = Config;
//!     fn manifest() -> Manifest {
//!         Manifest::analytics("brightness", env!("CARGO_PKG_VERSION"))
//!             .description("Emits an event when the picture gets bright")
//!             .frames(1.0, false)
//!             .config_schema(r#"{"type":"object","properties":{"threshold":{"type":"number"}},"required":["threshold"]}"#)
//!     }
//!     fn new(config: Config) -> Result<Self> {
//!         Ok(Brightness { threshold: config.threshold })
//!     }
//!     fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
//!         let img = frame.pixels(PixelFormat::Gray8, 160)?;
//!         let mean = img.data.iter().map(|&p| p as f32).sum::<f32>() / img.data.len() as f32 / 255.0;
//!         if mean > self.threshold {
//!             vigil_plugin_sdk::emit(NewEvent::new("bright").attribute("mean", format!("{mean:.2}")))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! vigil_plugin_sdk::analytics_plugin!(Brightness);
//! ```

#![warn(missing_docs)]
#![allow(unsafe_code)] // wit-bindgen's generated glue

#[doc(hidden)]
pub mod __bindings {
    pub mod analytics {
        wit_bindgen::generate!({
            path: "../wit",
            world: "analytics",
            pub_export_macro: true,
            export_macro_name: "__export_analytics",
            default_bindings_module: "vigil_plugin_sdk::__bindings::analytics",
        });
    }
    pub mod rule {
        wit_bindgen::generate!({
            path: "../wit",
            world: "rule",
            with: {
                "vigil:plugin/types@0.1.0": super::analytics::vigil::plugin::types,
                "vigil:plugin/host@0.1.0": super::analytics::vigil::plugin::host,
                "vigil:plugin/state@0.1.0": super::analytics::vigil::plugin::state,
            },
            pub_export_macro: true,
            export_macro_name: "__export_rule",
            default_bindings_module: "vigil_plugin_sdk::__bindings::rule",
        });
    }
    pub mod output {
        wit_bindgen::generate!({
            path: "../wit",
            world: "output",
            with: {
                "vigil:plugin/types@0.1.0": super::analytics::vigil::plugin::types,
                "vigil:plugin/host@0.1.0": super::analytics::vigil::plugin::host,
                "vigil:plugin/state@0.1.0": super::analytics::vigil::plugin::state,
            },
            pub_export_macro: true,
            export_macro_name: "__export_output",
            default_bindings_module: "vigil_plugin_sdk::__bindings::output",
        });
    }
}

mod event;
mod frame;
pub mod http;
pub mod inference;
pub mod log;
mod manifest;
mod packet;
#[doc(hidden)]
pub mod rt;
pub mod state;

pub use event::{BBox, Detection, Event, NewEvent, Severity};
pub use frame::{Frame, Image, PixelFormat};
pub use manifest::{Capability, Manifest};
pub use packet::{Packet, Track};

use __bindings::analytics::vigil::plugin as wit;

/// What a plugin call can fail with: an expected failure, returned as a value.
///
/// An error returned from a call (`on_frame`, `on_event`, `on_tick`,
/// `on_packet`) is counted (`errors` in the instance's status) and shown as its
/// `last_error`; the instance keeps running and gets the next input. An error
/// from `new` refuses the configuration (see [`AnalyticsPlugin::new`]). A panic
/// is different: it is a trap, a bug, and the host throws the instance away and
/// restarts it.
///
/// `?` converts `String` and `&str` errors (such as those of [`emit`],
/// [`state`] and [`http`]) into [`Error::Failed`].
///
/// ```
/// use vigil_plugin_sdk::{Error, Result};
/// fn parse_level(s: &str) -> Result<u8> {
///     s.parse().map_err(|_| Error::InvalidConfig(format!("{s:?} is not a level")))
/// }
/// fn fails() -> Result<()> {
///     Err("the detector returned nothing")?
/// }
/// assert_eq!(parse_level("x").unwrap_err().to_string(), r#"invalid configuration: "x" is not a level"#);
/// assert_eq!(fails(), Err(Error::Failed("the detector returned nothing".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration cannot be used (beyond what the JSON Schema checks), e.g.
    /// a polygon with fewer than three points. Return it from `new`; the message
    /// is shown to the operator.
    InvalidConfig(String),
    /// Anything else: the call failed, the instance goes on.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(m: String) -> Self {
        Error::Failed(m)
    }
}

impl From<&str> for Error {
    fn from(m: &str) -> Self {
        Error::Failed(m.to_string())
    }
}

/// `Result` with this crate's [`Error`].
///
/// ```
/// fn check(ok: bool) -> vigil_plugin_sdk::Result<()> {
///     if ok { Ok(()) } else { Err("not ok".into()) }
/// }
/// assert!(check(false).is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An analytics plugin: frames in, events out. Export it with
/// [`analytics_plugin!`].
///
/// The host creates one instance per camera the plugin is enabled on. Each
/// instance is a WebAssembly instance of its own (nothing is shared between
/// cameras, not even statics) and is called for one input at a time, never
/// concurrently. It lives from `new` until a trap, a reconfiguration, an
/// upgrade or disabling; after any of these a new instance starts from scratch
/// (with `new`), so keep what must survive in [`state`].
///
/// Frames come at the rate the manifest asks for ([`Manifest::frames`]) through
/// a small queue (4 inputs unless the operator sets `queue`): when the plugin is
/// slower than the camera, the oldest queued frames are dropped, so the plugin
/// always works on recent pictures.
///
/// Every call has a deadline (1 s unless the operator sets `call_timeout_ms`)
/// and every instance a memory limit (64 MiB unless the operator sets
/// `memory_mib`); overrunning either, or panicking, is a trap: the instance is
/// restarted after a backoff (0.2 s, doubling up to 30 s) and quarantined after 5
/// failures within 5 minutes.
///
/// ```no_run
/// use vigil_plugin_sdk::{AnalyticsPlugin, Frame, Manifest, NewEvent, Result};
///
/// /// Emits `key-frame` for every key frame.
/// struct KeyFrames;
///
/// impl AnalyticsPlugin for KeyFrames {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest {
///         Manifest::analytics("key-frames", "0.1.0").frames(0.0, true)
///     }
///     fn new(_: serde_json::Value) -> Result<Self> {
///         Ok(KeyFrames)
///     }
///     fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
///         let size = format!("{}x{}", frame.width(), frame.height());
///         vigil_plugin_sdk::emit(NewEvent::new("key-frame").attribute("size", size))?;
///         Ok(())
///     }
/// }
///
/// vigil_plugin_sdk::analytics_plugin!(KeyFrames);
/// ```
pub trait AnalyticsPlugin: Sized + 'static {
    /// The configuration, deserialized with serde from the JSON the operator gave
    /// (already checked against [`Manifest::config_schema`]). When it does not
    /// deserialize, the instance does not start and the serde error is reported as
    /// an invalid configuration. Use `serde_json::Value` to take any JSON.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Config {
    ///     /// The host does not apply the schema's defaults: serde does.
    ///     #[serde(default = "default_threshold")]
    ///     threshold: f32,
    /// }
    /// fn default_threshold() -> f32 { 0.5 }
    /// let c: Config = serde_json::from_str("{}").unwrap();
    /// assert_eq!(c.threshold, 0.5);
    /// ```
    type Config: serde::de::DeserializeOwned;

    /// What the plugin is and wants. The host calls it once per loaded version
    /// (at start and on reload), in an instance of its own that is never
    /// configured: build the manifest, do nothing else.
    ///
    /// ```
    /// use vigil_plugin_sdk::Manifest;
    /// fn manifest() -> Manifest {
    ///     Manifest::analytics("brightness", env!("CARGO_PKG_VERSION"))
    ///         .description("Brightness crossing a threshold")
    ///         .frames(2.0, false)
    ///         .config_schema(r#"{"type":"object"}"#)
    /// }
    /// assert_eq!(manifest().frames, Some((2.0, false)));
    /// ```
    fn manifest() -> Manifest;

    /// Builds the plugin for one camera from its configuration: when the plugin is
    /// enabled, and again, in a fresh instance, after every restart,
    /// reconfiguration or upgrade.
    ///
    /// Return [`Error::InvalidConfig`] for a configuration the schema cannot rule
    /// out. On a reconfiguration through the API the operator then gets a `422`
    /// with the message and the instance goes back to the previous
    /// configuration; on a first start (or a restart) it counts as a failure: the
    /// host retries with backoff and quarantines the instance after 5 failures.
    ///
    /// ```
    /// use vigil_plugin_sdk::{Error, Result};
    /// struct Config { min: f32, max: f32 }
    /// struct Band { min: f32, max: f32 }
    /// fn new(c: Config) -> Result<Band> {
    ///     if c.min >= c.max {
    ///         return Err(Error::InvalidConfig(format!("min {} must be below max {}", c.min, c.max)));
    ///     }
    ///     Ok(Band { min: c.min, max: c.max })
    /// }
    /// assert!(new(Config { min: 0.8, max: 0.2 }).is_err());
    /// ```
    fn new(config: Self::Config) -> Result<Self>;

    /// Handles one frame (at the rate the manifest asked for). The frame is only
    /// valid during the call. Events emitted here get the frame's media time
    /// unless they set their own, and can carry a snapshot of the frame
    /// ([`NewEvent::snapshot`]).
    ///
    /// ```no_run
    /// use vigil_plugin_sdk::{Frame, NewEvent, PixelFormat, Result};
    /// struct Dark { was_dark: bool }
    /// impl Dark {
    ///     fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()> {
    ///         let img = frame.pixels(PixelFormat::Gray8, 64)?;
    ///         let dark = img.data.iter().all(|&p| p < 30);
    ///         if dark && !self.was_dark {
    ///             vigil_plugin_sdk::emit(NewEvent::new("camera-dark").snapshot())?;
    ///         }
    ///         self.was_dark = dark;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()>;
}

/// A rule plugin: events and ticks in, derived events out. Export it with
/// [`rule_plugin!`].
///
/// An instance gets every event of its camera that another plugin emitted (or
/// that was posted to `POST /api/events`), never its own, after the host stored
/// it. Instances, restarts, deadlines and the drop-oldest queue work as for
/// [`AnalyticsPlugin`].
///
/// ```no_run
/// use vigil_plugin_sdk::{Event, Manifest, NewEvent, Result, RulePlugin};
///
/// struct Echo;
/// impl RulePlugin for Echo {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest {
///         Manifest::rule("echo", "0.1.0").config_schema(r#"{"type":"object"}"#)
///     }
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Echo) }
///     fn on_event(&mut self, e: &Event) -> Result<()> {
///         if e.kind == "motion" {
///             vigil_plugin_sdk::emit(NewEvent::new("echo"))?;
///         }
///         Ok(())
///     }
/// }
/// vigil_plugin_sdk::rule_plugin!(Echo);
/// ```
pub trait RulePlugin: Sized + 'static {
    /// The configuration, deserialized with serde from the operator's JSON
    /// (already checked against [`Manifest::config_schema`]); see
    /// [`AnalyticsPlugin::Config`].
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Config { #[serde(default)] labels: Vec<String> }
    /// let c: Config = serde_json::from_str(r#"{"labels": ["person"]}"#).unwrap();
    /// assert_eq!(c.labels, ["person"]);
    /// ```
    type Config: serde::de::DeserializeOwned;

    /// What the plugin is and wants (see [`AnalyticsPlugin::manifest`]).
    ///
    /// ```
    /// use vigil_plugin_sdk::Manifest;
    /// fn manifest() -> Manifest {
    ///     Manifest::rule("loitering", env!("CARGO_PKG_VERSION")).tick_every_ms(1000)
    /// }
    /// assert_eq!(manifest().tick_every_ms, Some(1000));
    /// ```
    fn manifest() -> Manifest;

    /// Builds the plugin for one camera from its configuration (see
    /// [`AnalyticsPlugin::new`]).
    ///
    /// ```
    /// use vigil_plugin_sdk::{Error, Result};
    /// struct Config { zones: Vec<Vec<[f32; 2]>> }
    /// fn new(c: Config) -> Result<Config> {
    ///     if c.zones.iter().any(|z| z.len() < 3) {
    ///         return Err(Error::InvalidConfig("a zone needs at least 3 points".into()));
    ///     }
    ///     Ok(c)
    /// }
    /// assert!(new(Config { zones: vec![vec![[0.0, 0.0]]] }).is_err());
    /// ```
    fn new(config: Self::Config) -> Result<Self>;

    /// Handles an event of the instance's camera (from other plugins or the API).
    ///
    /// ```no_run
    /// use vigil_plugin_sdk::{Event, NewEvent, Result, Severity};
    /// fn on_event(e: &Event) -> Result<()> {
    ///     if e.detections.iter().any(|d| d.label == "person" && d.score > 0.8) {
    ///         vigil_plugin_sdk::emit(
    ///             NewEvent::new("person-confirmed")
    ///                 .severity(Severity::Warning)
    ///                 .detections(e.detections.iter().cloned())
    ///                 .attribute("source", e.id.clone()),
    ///         )?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    fn on_event(&mut self, event: &Event) -> Result<()>;

    /// Called every [`Manifest::tick_every_ms`] milliseconds, if set (the default
    /// does nothing). `now_ms` is the wall clock, milliseconds since the UNIX
    /// epoch; in `vigil plugin run` it follows the replayed events' timeline
    /// instead. Use it for time-based rules (something stayed too long, something
    /// did not happen).
    ///
    /// ```no_run
    /// use vigil_plugin_sdk::{NewEvent, Result};
    /// struct Heartbeat { last_event_ms: u64 }
    /// impl Heartbeat {
    ///     fn on_tick(&mut self, now_ms: u64) -> Result<()> {
    ///         if now_ms.saturating_sub(self.last_event_ms) > 60_000 {
    ///             vigil_plugin_sdk::emit(NewEvent::new("quiet"))?;
    ///             self.last_event_ms = now_ms;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn on_tick(&mut self, now_ms: u64) -> Result<()> {
        let _ = now_ms;
        Ok(())
    }
}

/// An output plugin: events (and, if asked for, encoded packets) in, delivered
/// elsewhere. Export it with [`output_plugin!`].
///
/// An instance gets every event of its camera that another plugin emitted (or
/// that was posted to `POST /api/events`), after the host stored it, and the
/// camera's packets when the manifest asks for them ([`Manifest::packets`]).
/// Reaching the outside takes capabilities the operator grants:
/// [`http`], [`state`], the `/data` directory. Instances, restarts, deadlines and
/// the drop-oldest queue work as for [`AnalyticsPlugin`].
///
/// ```no_run
/// use vigil_plugin_sdk::{Event, Manifest, OutputPlugin, Result};
///
/// struct Print;
/// impl OutputPlugin for Print {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest {
///         Manifest::output("print", "0.1.0").config_schema(r#"{"type":"object"}"#)
///     }
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Print) }
///     fn on_event(&mut self, e: &Event) -> Result<()> {
///         println!("{} on {}", e.kind, e.camera); // goes to the host's log
///         Ok(())
///     }
/// }
/// vigil_plugin_sdk::output_plugin!(Print);
/// ```
pub trait OutputPlugin: Sized + 'static {
    /// The configuration, deserialized with serde from the operator's JSON
    /// (already checked against [`Manifest::config_schema`]); see
    /// [`AnalyticsPlugin::Config`].
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Config { url: String, #[serde(default)] kinds: Vec<String> }
    /// let c: Config = serde_json::from_str(r#"{"url": "https://hooks.example.com/v"}"#).unwrap();
    /// assert!(c.kinds.is_empty());
    /// ```
    type Config: serde::de::DeserializeOwned;

    /// What the plugin is and wants (see [`AnalyticsPlugin::manifest`]).
    ///
    /// ```
    /// use vigil_plugin_sdk::{Capability, Manifest};
    /// fn manifest() -> Manifest {
    ///     Manifest::output("webhook", env!("CARGO_PKG_VERSION")).capability(Capability::Http)
    /// }
    /// assert_eq!(manifest().capabilities, [Capability::Http]);
    /// ```
    fn manifest() -> Manifest;

    /// Builds the plugin for one camera from its configuration (see
    /// [`AnalyticsPlugin::new`]).
    ///
    /// ```
    /// use vigil_plugin_sdk::{Error, Result};
    /// fn new(url: String) -> Result<String> {
    ///     if !url.starts_with("https://") {
    ///         return Err(Error::InvalidConfig(format!("{url:?}: only https:// URLs")));
    ///     }
    ///     Ok(url)
    /// }
    /// assert!(new("ftp://x".into()).is_err());
    /// ```
    fn new(config: Self::Config) -> Result<Self>;

    /// Handles an event of the instance's camera (from other plugins or the API).
    ///
    /// ```no_run
    /// use vigil_plugin_sdk::{Error, Event, Result};
    /// fn on_event(e: &Event) -> Result<()> {
    ///     let body = format!(r#"{{"kind":"{}","camera":"{}"}}"#, e.kind, e.camera);
    ///     let status = vigil_plugin_sdk::http::post_json("https://hooks.example.com/v", body.as_bytes(), &[])?;
    ///     if status >= 300 {
    ///         return Err(Error::Failed(format!("HTTP {status}")));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    fn on_event(&mut self, event: &Event) -> Result<()>;

    /// Handles an encoded packet of the camera, when the manifest asks for them
    /// ([`Manifest::packets`]; the default does nothing). Packets start at a key
    /// frame; after the host had to drop some (the plugin was behind), video
    /// resumes at a key frame.
    ///
    /// ```no_run
    /// use std::io::Write;
    /// use vigil_plugin_sdk::{Error, Packet, Result};
    /// // Appends the video to a file of the `files` capability's directory.
    /// fn on_packet(p: &Packet) -> Result<()> {
    ///     if !p.is_video() {
    ///         return Ok(());
    ///     }
    ///     let mut f = std::fs::OpenOptions::new()
    ///         .create(true)
    ///         .append(true)
    ///         .open(format!("/data/{}.{}", p.generation, p.codec))
    ///         .map_err(|e| Error::Failed(format!("/data: {e}")))?;
    ///     f.write_all(&p.data).map_err(|e| Error::Failed(format!("/data: {e}")))
    /// }
    /// ```
    fn on_packet(&mut self, packet: &Packet) -> Result<()> {
        let _ = packet;
        Ok(())
    }
}

/// Emits an event for this instance's camera. Returns once the host has stored
/// it (committed to its database), so an `Ok` is never lost.
///
/// Fails, with the reason, when the event is invalid (see [`NewEvent`] for the
/// limits), when the instance emits faster than its budget (50 events a second
/// unless the operator sets `events_per_second`, bursts of twice that) or when
/// the host's event store is overloaded. The host counts refused events
/// (`events_rejected`). `?` turns the error into [`Error::Failed`].
///
/// ```no_run
/// use vigil_plugin_sdk::{BBox, Detection, NewEvent, Severity};
/// vigil_plugin_sdk::emit(
///     NewEvent::new("person")
///         .severity(Severity::Warning)
///         .detection(Detection::new("person", 0.87, BBox::new(0.1, 0.2, 0.3, 0.6)))
///         .snapshot(),
/// ).unwrap();
/// ```
pub fn emit(event: NewEvent) -> std::result::Result<(), String> {
    wit::host::emit(&event.into_wit())
}

/// The id of the camera this instance serves (as in `vigil.toml` and the API).
///
/// ```no_run
/// let camera = vigil_plugin_sdk::camera();
/// vigil_plugin_sdk::info!("running on {camera}");
/// ```
pub fn camera() -> String {
    wit::host::camera()
}

/// Exports an [`AnalyticsPlugin`] implementation as the component's plugin. Use it
/// once per crate (a component is one plugin), after the implementation.
///
/// On `wasm32` it exports the `vigil:plugin/analytics-plugin` interface; in a
/// native build it only type-checks, so the crate still builds and tests natively.
///
/// ```no_run
/// use vigil_plugin_sdk::{AnalyticsPlugin, Frame, Manifest, Result};
/// struct Nop;
/// impl AnalyticsPlugin for Nop {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest { Manifest::analytics("nop", "0.1.0") }
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Nop) }
///     fn on_frame(&mut self, _: &Frame<'_>) -> Result<()> { Ok(()) }
/// }
/// vigil_plugin_sdk::analytics_plugin!(Nop);
/// ```
#[macro_export]
macro_rules! analytics_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __VigilAnalyticsExport;
        impl $crate::__bindings::analytics::exports::vigil::plugin::analytics_plugin::Guest for __VigilAnalyticsExport {
            fn describe() -> $crate::__bindings::analytics::vigil::plugin::types::Manifest {
                $crate::rt::manifest(<$t as $crate::AnalyticsPlugin>::manifest(), $crate::rt::Kind::Analytics)
            }
            fn configure(config: ::std::string::String) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::configure_analytics::<$t>(config)
            }
            fn on_frame(frame: &$crate::__bindings::analytics::vigil::plugin::frames::Frame) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::on_frame::<$t>(frame)
            }
        }
        // Only a WebAssembly build exports the component's functions; a native
        // build (tests, benchmarks, `cargo build --workspace`) compiles the rest.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::analytics::__export_analytics!(__VigilAnalyticsExport with_types_in $crate::__bindings::analytics);
    };
}

/// Exports a [`RulePlugin`] implementation as the component's plugin. Use it once
/// per crate, after the implementation.
///
/// On `wasm32` it exports the `vigil:plugin/rule-plugin` interface; in a native
/// build it only type-checks.
///
/// ```no_run
/// use vigil_plugin_sdk::{Event, Manifest, Result, RulePlugin};
/// struct Nop;
/// impl RulePlugin for Nop {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest { Manifest::rule("nop", "0.1.0") }
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Nop) }
///     fn on_event(&mut self, _: &Event) -> Result<()> { Ok(()) }
/// }
/// vigil_plugin_sdk::rule_plugin!(Nop);
/// ```
#[macro_export]
macro_rules! rule_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __VigilRuleExport;
        impl $crate::__bindings::rule::exports::vigil::plugin::rule_plugin::Guest for __VigilRuleExport {
            fn describe() -> $crate::__bindings::analytics::vigil::plugin::types::Manifest {
                $crate::rt::manifest(<$t as $crate::RulePlugin>::manifest(), $crate::rt::Kind::Rule)
            }
            fn configure(config: ::std::string::String) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::configure_rule::<$t>(config)
            }
            fn on_event(event: $crate::__bindings::analytics::vigil::plugin::types::Event) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::rule_event::<$t>(event)
            }
            fn on_tick(now_ms: u64) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::rule_tick::<$t>(now_ms)
            }
        }
        // Only a WebAssembly build exports the component's functions; a native
        // build (tests, benchmarks, `cargo build --workspace`) compiles the rest.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::rule::__export_rule!(__VigilRuleExport with_types_in $crate::__bindings::rule);
    };
}

/// Exports an [`OutputPlugin`] implementation as the component's plugin. Use it
/// once per crate, after the implementation.
///
/// On `wasm32` it exports the `vigil:plugin/output-plugin` interface; in a native
/// build it only type-checks.
///
/// ```no_run
/// use vigil_plugin_sdk::{Event, Manifest, OutputPlugin, Result};
/// struct Nop;
/// impl OutputPlugin for Nop {
///     type Config = serde_json::Value;
///     fn manifest() -> Manifest { Manifest::output("nop", "0.1.0") }
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Nop) }
///     fn on_event(&mut self, _: &Event) -> Result<()> { Ok(()) }
/// }
/// vigil_plugin_sdk::output_plugin!(Nop);
/// ```
#[macro_export]
macro_rules! output_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __VigilOutputExport;
        impl $crate::__bindings::output::exports::vigil::plugin::output_plugin::Guest for __VigilOutputExport {
            fn describe() -> $crate::__bindings::analytics::vigil::plugin::types::Manifest {
                $crate::rt::manifest(<$t as $crate::OutputPlugin>::manifest(), $crate::rt::Kind::Output)
            }
            fn configure(config: ::std::string::String) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::configure_output::<$t>(config)
            }
            fn on_event(event: $crate::__bindings::analytics::vigil::plugin::types::Event) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::output_event::<$t>(event)
            }
            fn on_packet(packet: $crate::__bindings::analytics::vigil::plugin::types::Packet) -> ::std::result::Result<(), $crate::__bindings::analytics::vigil::plugin::types::PluginError> {
                $crate::rt::output_packet::<$t>(packet)
            }
        }
        // Only a WebAssembly build exports the component's functions; a native
        // build (tests, benchmarks, `cargo build --workspace`) compiles the rest.
        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::output::__export_output!(__VigilOutputExport with_types_in $crate::__bindings::output);
    };
}
