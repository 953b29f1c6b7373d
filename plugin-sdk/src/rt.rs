//! Glue between the generated bindings and the plugin traits (used by the export
//! macros; not part of the public API).

use std::any::Any;
use std::cell::RefCell;

use crate::__bindings::analytics::vigil::plugin::{frames, types};
use crate::{AnalyticsPlugin, Error, Event, Frame, Manifest, OutputPlugin, Packet, RulePlugin};

pub enum Kind {
    Analytics,
    Rule,
    Output,
}

thread_local! {
    // The instance of this component: one per (plugin, camera) on the host.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn to_wit(e: Error) -> types::PluginError {
    match e {
        Error::InvalidConfig(m) => types::PluginError::InvalidConfig(m),
        Error::Failed(m) => types::PluginError::Failed(m),
    }
}

pub fn manifest(m: Manifest, kind: Kind) -> types::Manifest {
    m.into_wit(match kind {
        Kind::Analytics => types::PluginKind::Analytics,
        Kind::Rule => types::PluginKind::Rule,
        Kind::Output => types::PluginKind::Output,
    })
}

fn parse<C: serde::de::DeserializeOwned>(config: &str) -> Result<C, types::PluginError> {
    serde_json::from_str(config).map_err(|e| types::PluginError::InvalidConfig(e.to_string()))
}

fn install<T: 'static>(t: T) {
    INSTANCE.with(|i| *i.borrow_mut() = Some(Box::new(t)));
}

fn with<T: 'static, R>(
    f: impl FnOnce(&mut T) -> Result<R, Error>,
) -> Result<R, types::PluginError> {
    INSTANCE.with(|i| {
        let mut slot = i.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<T>()) {
            Some(t) => f(t).map_err(to_wit),
            None => Err(types::PluginError::Failed(
                "the plugin is not configured yet".into(),
            )),
        }
    })
}

pub fn configure_analytics<T: AnalyticsPlugin>(config: String) -> Result<(), types::PluginError> {
    install(T::new(parse(&config)?).map_err(to_wit)?);
    Ok(())
}

pub fn on_frame<T: AnalyticsPlugin>(frame: &frames::Frame) -> Result<(), types::PluginError> {
    with::<T, _>(|t| t.on_frame(&Frame::from_raw(frame)))
}

pub fn configure_rule<T: RulePlugin>(config: String) -> Result<(), types::PluginError> {
    install(T::new(parse(&config)?).map_err(to_wit)?);
    Ok(())
}

pub fn rule_event<T: RulePlugin>(event: types::Event) -> Result<(), types::PluginError> {
    let e = Event::from_wit(event);
    with::<T, _>(|t| t.on_event(&e))
}

pub fn rule_tick<T: RulePlugin>(now_ms: u64) -> Result<(), types::PluginError> {
    with::<T, _>(|t| t.on_tick(now_ms))
}

pub fn configure_output<T: OutputPlugin>(config: String) -> Result<(), types::PluginError> {
    install(T::new(parse(&config)?).map_err(to_wit)?);
    Ok(())
}

pub fn output_event<T: OutputPlugin>(event: types::Event) -> Result<(), types::PluginError> {
    let e = Event::from_wit(event);
    with::<T, _>(|t| t.on_event(&e))
}

pub fn output_packet<T: OutputPlugin>(packet: types::Packet) -> Result<(), types::PluginError> {
    let p = Packet::from_wit(packet);
    with::<T, _>(|t| t.on_packet(&p))
}
