//! One plugin instance per (plugin, camera): an actor task on the plugin runtime
//! that owns the Store, takes inputs (frames or events) from a bounded inbox that
//! drops the oldest when full, calls the plugin with a deadline, and on a trap
//! drops the store and restarts with backoff — quarantined after repeated failures.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use wasmtime::Store;
use wasmtime::component::Resource;

use super::Loaded;
use super::host_impl::{FrameData, InstanceCtx, PluginState, to_wit_event};
use super::runtime::{self, Bound, Kind, Runtime, StoreSpec, describe_trap};
use crate::codec::Picture;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;

/// Failures within this window count towards quarantine.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Failures within the window that quarantine an instance.
pub const QUARANTINE_AFTER: usize = 5;

/// A decoded frame for an analytics instance.
#[derive(Clone, Debug)]
pub struct FrameInput {
    pub picture: Arc<Picture>,
    pub media_ns: i64,
    pub wall_ms: u64,
    pub key: bool,
}

/// What an instance processes.
#[derive(Clone, Debug)]
pub enum Input {
    Frame(FrameInput),
    Event(Arc<Event>),
    /// A tick at this time (ms since the UNIX epoch), for rule plugins whose
    /// ticks follow a replayed timeline rather than the clock.
    Tick(u64),
    /// An encoded packet, for output plugins that asked for them.
    Packet(Arc<super::packets::PacketInput>),
}

/// A bounded queue that drops its oldest entry when full, counting drops.
#[derive(Debug)]
pub struct Inbox {
    q: Mutex<VecDeque<Input>>,
    cap: usize,
    notify: Notify,
    /// Signalled when an entry is taken (room for [`Inbox::push_wait`]).
    room: Notify,
    pub dropped: AtomicU64,
    /// Events dropped by [`Inbox::push_event`] (also in `dropped_total` of the
    /// status; kept apart so the packet pump does not take them for a gap).
    pub events_dropped: AtomicU64,
    pub received: AtomicU64,
}

impl Inbox {
    pub fn new(cap: usize) -> Self {
        Self {
            q: Mutex::new(VecDeque::with_capacity(cap)),
            cap: cap.max(1),
            notify: Notify::new(),
            room: Notify::new(),
            dropped: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Never waits: a slow plugin loses its oldest inputs, the producer goes on.
    pub fn push(&self, i: Input) {
        {
            let mut q = self.q.lock().unwrap();
            if q.len() >= self.cap {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(i);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Queues an event beside packets: when full, the oldest queued *event* is
    /// dropped (counted), never a packet, so a packet stream keeps its GOPs
    /// whole; with no event queued, this one is dropped (counted).
    pub fn push_event(&self, i: Input) {
        {
            let mut q = self.q.lock().unwrap();
            if q.len() >= self.cap {
                let oldest_event = q.iter().position(|x| !matches!(x, Input::Packet(_)));
                match oldest_event {
                    Some(at) => {
                        q.remove(at);
                        self.events_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        self.events_dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            q.push_back(i);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Queues when there is room, waiting for it otherwise: for a producer
    /// with its own bounded buffer (a packet pump reading the camera's ring,
    /// which counts what it skips), so a burst is absorbed rather than dropped.
    pub async fn push_wait(&self, i: Input) {
        loop {
            let room = self.room.notified();
            {
                let mut q = self.q.lock().unwrap();
                if q.len() < self.cap {
                    q.push_back(i);
                    break;
                }
            }
            room.await;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    async fn pop(&self) -> Input {
        loop {
            let popped = self.q.lock().unwrap().pop_front();
            if let Some(i) = popped {
                self.room.notify_one();
                return i;
            }
            self.notify.notified().await;
        }
    }

    /// Empties the queue (a restart); what it held counts as dropped.
    fn clear(&self) {
        let mut q = self.q.lock().unwrap();
        self.dropped.fetch_add(q.len() as u64, Ordering::Relaxed);
        q.clear();
        self.room.notify_one();
    }
}

/// Where an instance stands.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    /// Failed; restarting after a backoff.
    Restarting,
    /// Failed too often; waits for the operator (reconfigure, upgrade or re-enable).
    Quarantined,
    Stopped,
}

/// Counters of an instance, for the API and `/metrics`.
#[derive(Debug)]
pub struct Stats {
    pub state: Mutex<State>,
    pub restarts: AtomicU64,
    pub calls: AtomicU64,
    /// Calls that returned a plugin error (the instance keeps running).
    pub errors: AtomicU64,
    /// Calls that trapped (deadline, memory, bug): the instance restarts.
    pub traps: AtomicU64,
    pub call_ns_total: AtomicU64,
    pub call_ns_max: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub started: Mutex<Option<Instant>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::Starting),
            restarts: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            call_ns_total: AtomicU64::new(0),
            call_ns_max: AtomicU64::new(0),
            last_error: Mutex::new(None),
            started: Mutex::new(None),
        }
    }
}

impl Stats {
    fn set(&self, s: State) {
        *self.state.lock().unwrap() = s;
    }
    fn error(&self, e: &str) {
        *self.last_error.lock().unwrap() = Some(e.chars().take(2000).collect());
    }
}

/// Operator requests to a running instance.
pub enum Control {
    /// New configuration (already schema-checked); answered once the plugin took
    /// it (or refused it: the instance then keeps the previous one).
    Configure(serde_json::Value, oneshot::Sender<Result<()>>),
    /// A new version of the plugin: restart on it.
    Upgrade(Arc<Loaded>),
    Stop,
}

/// How a call went.
enum Outcome<T> {
    Ok(T),
    /// The plugin returned an error: counted, the instance goes on.
    PluginError(String),
    /// A trap or a deadline: the store is unusable.
    Trap(String),
}

/// Runs a call with the instance's deadline. The epoch callback interrupts wasm
/// that runs past it; the outer timeout covers time blocked in host calls.
async fn call<T>(
    store: &mut Store<PluginState>,
    timeout: Duration,
    stats: &Stats,
    f: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<std::result::Result<T, String>>,
) -> Outcome<T> {
    store.data_mut().deadline = Instant::now() + timeout;
    let t0 = Instant::now();
    let r = tokio::time::timeout(timeout + Duration::from_secs(2), f(store)).await;
    let ns = t0.elapsed().as_nanos() as u64;
    stats.calls.fetch_add(1, Ordering::Relaxed);
    stats.call_ns_total.fetch_add(ns, Ordering::Relaxed);
    stats.call_ns_max.fetch_max(ns, Ordering::Relaxed);
    match r {
        Err(_) => Outcome::Trap(format!(
            "call deadline of {timeout:?} exceeded while blocked in a host call"
        )),
        Ok(Err(e)) => Outcome::Trap(describe_trap(&e)),
        Ok(Ok(Err(m))) => Outcome::PluginError(m),
        Ok(Ok(Ok(v))) => Outcome::Ok(v),
    }
}

fn plugin_error(e: super::bindings::analytics::vigil::plugin::types::PluginError) -> String {
    use super::bindings::analytics::vigil::plugin::types::PluginError;
    match e {
        PluginError::InvalidConfig(m) => format!("invalid configuration: {m}"),
        PluginError::Failed(m) => m,
    }
}

/// Everything the actor needs.
pub struct Actor {
    pub runtime: Arc<Runtime>,
    pub plugin: Arc<Loaded>,
    pub config: serde_json::Value,
    pub ctx: Arc<InstanceCtx>,
    pub spec: StoreSpec,
    pub inbox: Arc<Inbox>,
    pub stats: Arc<Stats>,
    pub control: mpsc::Receiver<Control>,
    pub call_timeout: Duration,
    /// Tick rule plugins from the clock (false: only `Input::Tick` ticks).
    pub clock_ticks: bool,
    /// Told how the first start went: `Err` when the plugin refused its
    /// configuration (the actor then stops); `Ok` once it runs, or when it
    /// failed otherwise (a trap: it is enabled and restarts).
    pub first_start: Option<oneshot::Sender<Result<()>>>,
}

/// A start that failed: the reason, and whether the plugin refused its
/// configuration (a domain error from `configure`) rather than failing.
struct StartFailure {
    message: String,
    refused: bool,
}

/// An instance that ran this long without failing starts over with the
/// shortest backoff when it fails.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

struct Running {
    store: Store<PluginState>,
    bound: Bound,
    /// Packets are skipped until a video key frame: a fresh instance (a start,
    /// a restart, a new configuration) never begins mid-GOP, whatever was queued.
    awaiting_key: bool,
}

impl Actor {
    async fn start(&mut self) -> std::result::Result<Running, StartFailure> {
        let failed = |message: String| StartFailure {
            message,
            refused: false,
        };
        let mut store = self
            .runtime
            .store(self.ctx.clone(), &self.spec)
            .map_err(|e| failed(e.to_string()))?;
        let bound = runtime::instantiate(&self.plugin.pre, &mut store, self.call_timeout)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let cfg = self.config.to_string();
        let outcome = call(&mut store, self.call_timeout, &self.stats, async |s| {
            let r = match &bound {
                Bound::Analytics(b) => {
                    b.vigil_plugin_analytics_plugin()
                        .call_configure(&mut *s, &cfg)
                        .await
                }
                Bound::Rule(b) => {
                    b.vigil_plugin_rule_plugin()
                        .call_configure(&mut *s, &cfg)
                        .await
                }
                Bound::Output(b) => {
                    b.vigil_plugin_output_plugin()
                        .call_configure(&mut *s, &cfg)
                        .await
                }
            };
            r.map(|r| r.map_err(plugin_error))
        })
        .await;
        match outcome {
            Outcome::Ok(()) => Ok(Running {
                store,
                bound,
                awaiting_key: true,
            }),
            Outcome::PluginError(m) => Err(StartFailure {
                message: format!("the plugin refused its configuration: {m}"),
                refused: true,
            }),
            Outcome::Trap(m) => Err(failed(format!("configure: {m}"))),
        }
    }

    async fn handle(&mut self, run: &mut Running, input: Input) -> std::result::Result<(), String> {
        let stats = self.stats.clone();
        let outcome = match (input, &run.bound) {
            (Input::Frame(f), Bound::Analytics(b)) => {
                let data = FrameData {
                    camera: Arc::from(self.ctx.camera.as_str()),
                    picture: f.picture.clone(),
                    media_time_ns: f.media_ns,
                    wall_ms: f.wall_ms,
                    key: f.key,
                };
                let own = match run.store.data_mut().table.push(data) {
                    Ok(r) => r,
                    Err(e) => return Err(format!("resource table: {e}")),
                };
                let rep = own.rep();
                run.store.data_mut().current_frame = Some((f.picture, f.media_ns));
                let o = call(&mut run.store, self.call_timeout, &stats, async |s| {
                    b.vigil_plugin_analytics_plugin()
                        .call_on_frame(&mut *s, Resource::new_borrow(rep))
                        .await
                        .map(|r| r.map_err(plugin_error))
                })
                .await;
                let data = run.store.data_mut();
                data.current_frame = None;
                let _ = data.table.delete(own);
                o
            }
            (Input::Event(e), Bound::Rule(b)) => {
                let ev = to_wit_event(&e);
                call(&mut run.store, self.call_timeout, &stats, async |s| {
                    b.vigil_plugin_rule_plugin()
                        .call_on_event(&mut *s, &ev)
                        .await
                        .map(|r| r.map_err(plugin_error))
                })
                .await
            }
            (Input::Event(e), Bound::Output(b)) => {
                let ev = to_wit_event(&e);
                call(&mut run.store, self.call_timeout, &stats, async |s| {
                    b.vigil_plugin_output_plugin()
                        .call_on_event(&mut *s, &ev)
                        .await
                        .map(|r| r.map_err(plugin_error))
                })
                .await
            }
            (Input::Tick(now), Bound::Rule(_)) => return self.tick(run, now).await,
            (Input::Packet(p), Bound::Output(b)) => {
                let wants_video = self.plugin.manifest.packets.is_some_and(|r| r.video);
                if run.awaiting_key && wants_video {
                    if !(p.video && p.key) {
                        return Ok(());
                    }
                    run.awaiting_key = false;
                }
                let packet = p.to_wit();
                call(&mut run.store, self.call_timeout, &stats, async |s| {
                    b.vigil_plugin_output_plugin()
                        .call_on_packet(&mut *s, &packet)
                        .await
                        .map(|r| r.map_err(plugin_error))
                })
                .await
            }
            _ => return Ok(()), // an input this kind does not take
        };
        self.settle(outcome)
    }

    async fn tick(&mut self, run: &mut Running, now: u64) -> std::result::Result<(), String> {
        let Bound::Rule(b) = &run.bound else {
            return Ok(());
        };
        let stats = self.stats.clone();
        let o = call(&mut run.store, self.call_timeout, &stats, async |s| {
            b.vigil_plugin_rule_plugin()
                .call_on_tick(&mut *s, now)
                .await
                .map(|r| r.map_err(plugin_error))
        })
        .await;
        self.settle(o)
    }

    fn settle(&self, o: Outcome<()>) -> std::result::Result<(), String> {
        match o {
            Outcome::Ok(()) => Ok(()),
            Outcome::PluginError(m) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.error(&m);
                Ok(())
            }
            Outcome::Trap(m) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                Err(m)
            }
        }
    }

    /// The actor's life: start, serve, restart on failure, quarantine, stop.
    pub async fn run(mut self) {
        let (p, c) = (self.ctx.plugin.clone(), self.ctx.camera.clone());
        let mut failures: VecDeque<Instant> = VecDeque::new();
        let mut backoff = Duration::from_millis(200);
        let mut pending_ack: Option<(oneshot::Sender<Result<()>>, serde_json::Value)> = None;
        let mut first = self.first_start.take();
        let mut healthy_since: Option<Instant> = None;
        'outer: loop {
            self.stats.set(State::Starting);
            let failure = match self.start().await {
                Ok(mut run) => {
                    // Running before anyone is told: the API answers the
                    // status right after the acknowledgement.
                    self.stats.set(State::Running);
                    let now = Instant::now();
                    *self.stats.started.lock().unwrap() = Some(now);
                    healthy_since = Some(now);
                    if let Some((ack, _)) = pending_ack.take() {
                        let _ = ack.send(Ok(()));
                    }
                    if let Some(first) = first.take() {
                        let _ = first.send(Ok(()));
                    }
                    let tick_ms = self
                        .plugin
                        .manifest
                        .tick_interval_ms
                        .filter(|_| self.plugin.kind == Kind::Rule && self.clock_ticks);
                    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(
                        tick_ms.unwrap_or(3_600_000),
                    )));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    tick.tick().await;
                    let inbox = self.inbox.clone();
                    loop {
                        tokio::select! {
                            c = self.control.recv() => match c {
                                None | Some(Control::Stop) => break 'outer,
                                Some(Control::Configure(cfg, ack)) => {
                                    // Restart on the new configuration; on refusal, back to the old one.
                                    let old = std::mem::replace(&mut self.config, cfg);
                                    pending_ack = Some((ack, old));
                                    continue 'outer;
                                }
                                Some(Control::Upgrade(p)) => {
                                    self.plugin = p;
                                    continue 'outer;
                                }
                            },
                            input = inbox.pop() => {
                                if let Err(m) = self.handle(&mut run, input).await {
                                    break m;
                                }
                            }
                            _ = tick.tick(), if tick_ms.is_some() => {
                                if let Err(m) = self.tick(&mut run, crate::events::now_ms()).await {
                                    break m;
                                }
                            }
                        }
                    }
                }
                Err(StartFailure { message, refused }) => {
                    if let Some((ack, old)) = pending_ack.take() {
                        // The new configuration was refused: report it, restore the old.
                        let _ = ack.send(Err(Error::new(ErrorKind::InvalidConfig, message)));
                        self.config = old;
                        continue 'outer;
                    }
                    if let Some(first) = first.take() {
                        if refused {
                            // Never ran: not enabled. The caller reports why.
                            self.stats.error(&message);
                            let _ = first.send(Err(Error::new(ErrorKind::InvalidConfig, message)));
                            break 'outer;
                        }
                        let _ = first.send(Ok(()));
                    }
                    message
                }
            };
            if healthy_since
                .take()
                .is_some_and(|t| t.elapsed() >= HEALTHY_RUN)
            {
                backoff = Duration::from_millis(200);
            }
            // A failure: the store is gone with `run`.
            tracing::warn!(plugin = %p, camera = %c, error = %failure, "plugin instance failed");
            self.stats.error(&failure);
            let now = Instant::now();
            failures.push_back(now);
            while failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
            {
                failures.pop_front();
            }
            if failures.len() >= QUARANTINE_AFTER {
                tracing::warn!(plugin = %p, camera = %c, "plugin instance quarantined after {} failures", failures.len());
                self.stats.set(State::Quarantined);
                self.inbox.clear();
                // Wait for the operator.
                match self.control.recv().await {
                    None | Some(Control::Stop) => break 'outer,
                    Some(Control::Configure(cfg, ack)) => {
                        let old = std::mem::replace(&mut self.config, cfg);
                        pending_ack = Some((ack, old));
                    }
                    Some(Control::Upgrade(p)) => self.plugin = p,
                }
                failures.clear();
                backoff = Duration::from_millis(200);
                continue 'outer;
            }
            self.stats.set(State::Restarting);
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                c = self.control.recv() => match c {
                    None | Some(Control::Stop) => break 'outer,
                    Some(Control::Configure(cfg, ack)) => {
                        let old = std::mem::replace(&mut self.config, cfg);
                        pending_ack = Some((ack, old));
                    }
                    Some(Control::Upgrade(p)) => self.plugin = p,
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            self.inbox.clear();
        }
        if let Some((ack, _)) = pending_ack.take() {
            let _ = ack.send(Err(Error::new(
                ErrorKind::Unavailable,
                "the instance stopped",
            )));
        }
        self.stats.set(State::Stopped);
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Actor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::packets::PacketInput;

    fn packet(key: bool) -> Input {
        Input::Packet(Arc::new(PacketInput {
            video: true,
            codec: "h264",
            pts_ns: 0,
            key,
            generation: 1,
            data: vec![0, 0, 0, 1],
        }))
    }

    fn kinds(inbox: &Inbox) -> Vec<&'static str> {
        inbox
            .q
            .lock()
            .unwrap()
            .iter()
            .map(|i| match i {
                Input::Packet(p) if p.key => "K",
                Input::Packet(_) => "P",
                Input::Tick(_) => "T",
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn events_never_push_packets_out() {
        let inbox = Inbox::new(3);
        inbox.push_event(Input::Tick(1));
        inbox.push(packet(true));
        inbox.push(packet(false));
        // Full: the new event replaces the oldest event, not a packet.
        inbox.push_event(Input::Tick(2));
        assert_eq!(kinds(&inbox), ["K", "P", "T"]);
        assert_eq!(inbox.events_dropped.load(Ordering::Relaxed), 1);
        // Full of packets only: the event is the one dropped.
        let inbox = Inbox::new(2);
        inbox.push(packet(true));
        inbox.push(packet(false));
        inbox.push_event(Input::Tick(3));
        assert_eq!(kinds(&inbox), ["K", "P"]);
        assert_eq!(inbox.events_dropped.load(Ordering::Relaxed), 1);
        // The packet pump's gap counter is untouched by event drops.
        assert_eq!(inbox.dropped.load(Ordering::Relaxed), 0);
    }
}
