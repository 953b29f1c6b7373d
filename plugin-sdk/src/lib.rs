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
//! ([`analytics_plugin!`], [`rule_plugin!`], [`output_plugin!`]); build with
//! `cargo build --target wasm32-wasip2 --release` and give the host the `.wasm`.
//! The crate hides the raw bindings: configuration arrives already parsed into your
//! `Config` type (serde), events and frames are plain Rust types.
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

/// What a plugin call can fail with. A failure is reported to the host and
/// counted; the instance keeps running (unlike a panic, which is a trap: the host
/// then restarts the instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration cannot be used (beyond what the JSON Schema checks).
    InvalidConfig(String),
    /// Anything else.
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

/// An analytics plugin: frames in, events out.
///
/// See the crate documentation for a complete example.
pub trait AnalyticsPlugin: Sized + 'static {
    /// The configuration, parsed from the JSON the operator gave (already checked
    /// against [`Manifest::config_schema`]).
    type Config: serde::de::DeserializeOwned;
    /// What the plugin is and wants. Called by the host before enabling it.
    fn manifest() -> Manifest;
    /// Builds the plugin for one camera from its configuration. Called again with
    /// the new configuration when the operator changes it.
    fn new(config: Self::Config) -> Result<Self>;
    /// Handles one frame (at the rate the manifest asked for).
    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<()>;
}

/// A rule plugin: events and ticks in, derived events out.
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
    type Config: serde::de::DeserializeOwned;
    fn manifest() -> Manifest;
    fn new(config: Self::Config) -> Result<Self>;
    /// Handles an event of the instance's camera (from other plugins).
    fn on_event(&mut self, event: &Event) -> Result<()>;
    /// Called every [`Manifest::tick_every_ms`] milliseconds, if set.
    fn on_tick(&mut self, now_ms: u64) -> Result<()> {
        let _ = now_ms;
        Ok(())
    }
}

/// An output plugin: events in, delivered elsewhere.
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
    /// The configuration, parsed from the operator's JSON.
    type Config: serde::de::DeserializeOwned;
    /// What the plugin is and wants.
    fn manifest() -> Manifest;
    /// Builds the plugin for one camera from its configuration.
    fn new(config: Self::Config) -> Result<Self>;
    /// Handles an event of the instance's camera.
    fn on_event(&mut self, event: &Event) -> Result<()>;
    /// Handles an encoded packet of the camera, when the manifest asks for them
    /// ([`Manifest::packets`]). Packets start at a key frame; after the host had
    /// to drop some (the plugin was behind), video resumes at a key frame.
    fn on_packet(&mut self, packet: &Packet) -> Result<()> {
        let _ = packet;
        Ok(())
    }
}

/// Emits an event for this instance's camera. Fails when the instance emits
/// faster than its budget or the event is invalid (the reason says which).
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

/// The id of the camera this instance serves.
///
/// ```no_run
/// let camera = vigil_plugin_sdk::camera();
/// vigil_plugin_sdk::info!("running on {camera}");
/// ```
pub fn camera() -> String {
    wit::host::camera()
}

/// Exports an [`AnalyticsPlugin`] implementation as the component's plugin. Use it
/// once, at the crate root.
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

/// Exports a [`RulePlugin`] implementation as the component's plugin.
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

/// Exports an [`OutputPlugin`] implementation as the component's plugin.
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
