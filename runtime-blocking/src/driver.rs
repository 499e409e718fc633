//! The node's thread: the one place a [`Node`] lives.
//!
//! It waits for the first of a host call, a network input, room in the
//! event channel, or the node's deadline; handles it; drains every output
//! of the node until `None`; takes what else is ready up to a cap; and
//! waits again.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use http::{Request, Response};
use mqtt_cluster_core::node::{Message, PublishError, Routing};
use mqtt_cluster_core::routing::TopicError;
use mqtt_cluster_core::runtime::{carries_deliveries, EventBacklog, Offer, PushReader};
use mqtt_cluster_core::{
    Event, Node, RequestId, Stats, Status, StreamId, StreamOutput, Transmit, TransportError,
};

use crate::client::{self, Cancel, Carrier};
use crate::clock::Clock;
use crate::server::Serving;
use crate::stats::{Counters, RuntimeStats};
use crate::threads::Threads;

/// Inputs taken per source in one wake beyond the first, so a flood on one
/// channel cannot starve the others or delay the timer.
const MAX_INPUTS_PER_WAKE: usize = 64;

/// A host call, with where to send the answer.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        filter: String,
        reply: Sender<Result<bool, TopicError>>,
    },
    Unsubscribe {
        filter: String,
        reply: Sender<Result<bool, TopicError>>,
    },
    SubscribeMany {
        filters: Vec<String>,
        reply: Sender<Result<usize, TopicError>>,
    },
    UnsubscribeMany {
        filters: Vec<String>,
        reply: Sender<Result<usize, TopicError>>,
    },
    Publish {
        message: Message,
        reply: Sender<Result<Routing, PublishError>>,
    },
    PublishMany {
        messages: Vec<Message>,
        reply: Sender<Vec<Result<Routing, PublishError>>>,
    },
    Status {
        reply: Sender<Status>,
    },
    Stats {
        reply: Sender<Stats>,
    },
    Retained {
        reply: Sender<Vec<Message>>,
    },
    RuntimeStats {
        reply: Sender<RuntimeStats>,
    },
    Shutdown {
        reply: Sender<()>,
    },
}

/// Something that came in from the network.
#[derive(Debug)]
pub(crate) enum Input {
    /// A peer's request to this core.
    Request {
        request: Request<Bytes>,
        reply: Sender<Reply>,
    },
    /// The fate of a transmit (for a push stream: its head).
    Response {
        id: RequestId,
        result: Result<Response<Bytes>, TransportError>,
        streaming: bool,
    },
    /// Bytes of this worker's push stream.
    StreamData { id: RequestId, data: Bytes },
    /// The push stream ended.
    StreamEnd { id: RequestId },
    /// A push stream this core served is over: its reader went away, or
    /// it was ended.
    StreamClosed { stream: StreamId },
}

impl Input {
    /// Whether it may bring the host deliveries: a peer's `/forward`, or
    /// anything of this worker's push stream (kept together, in order).
    fn carries_deliveries(&self) -> bool {
        match self {
            Input::Request { request, .. } => carries_deliveries(request.uri()),
            Input::Response { streaming, .. } => *streaming,
            Input::StreamData { .. } | Input::StreamEnd { .. } => true,
            Input::StreamClosed { .. } => false,
        }
    }
}

/// Where the server and the request threads hand the node's thread what
/// came in: inputs that may bring deliveries go through a channel of their
/// own, which the node's thread stops reading while deliveries wait for the
/// host, so that the node's control traffic (heartbeats, their answers,
/// `/sync`, acks) never waits behind a slow host.
#[derive(Clone, Debug)]
pub(crate) struct InputSender {
    control: Sender<Input>,
    deliveries: Sender<Input>,
}

impl InputSender {
    /// The sender, and the receivers of control inputs and of inputs that
    /// carry deliveries, each with room for `capacity`.
    pub(crate) fn channels(capacity: usize) -> (Self, Receiver<Input>, Receiver<Input>) {
        let (control, control_rx) = crossbeam_channel::bounded(capacity);
        let (deliveries, deliveries_rx) = crossbeam_channel::bounded(capacity);
        let sender = InputSender {
            control,
            deliveries,
        };
        (sender, control_rx, deliveries_rx)
    }

    /// Hands `input` to the node's thread, waiting for room; an error once
    /// the node has stopped.
    pub(crate) fn send(&self, input: Input) -> Result<(), ()> {
        let channel = if input.carries_deliveries() {
            &self.deliveries
        } else {
            &self.control
        };
        channel.send(input).map_err(|_| ())
    }
}

/// The core's answer to a served request, and for `GET /stream` the
/// stream's frames.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) response: Response<Bytes>,
    pub(crate) stream: Option<(Receiver<Bytes>, StreamId)>,
}

/// A shutdown in progress.
#[derive(Debug)]
struct Leaving {
    deadline: std::time::Instant,
    waiters: Vec<Sender<()>>,
}

/// What the node's thread is built from.
pub(crate) struct Parts {
    pub(crate) node: Node,
    pub(crate) clock: Clock,
    pub(crate) commands: Receiver<Command>,
    pub(crate) inputs: Receiver<Input>,
    pub(crate) deliveries: Receiver<Input>,
    pub(crate) abort: Receiver<()>,
    pub(crate) events: Sender<Event>,
    pub(crate) event_capacity: usize,
    pub(crate) stream_buffer: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) carrier: Arc<Carrier>,
    pub(crate) threads: Threads,
    pub(crate) counters: Arc<Counters>,
    pub(crate) server: Option<Serving>,
}

pub(crate) struct Driver {
    node: Node,
    clock: Clock,
    commands: Receiver<Command>,
    /// A command taken while stalled, run once the host has read events.
    deferred: Option<Command>,
    inputs: Receiver<Input>,
    /// Inputs that may bring deliveries: not read while deliveries wait.
    deliveries: Receiver<Input>,
    abort: Receiver<()>,
    events: Sender<Event>,
    /// Events produced while the event channel was full.
    backlog: EventBacklog,
    /// The push streams this core feeds.
    served: BTreeMap<StreamId, Sender<Bytes>>,
    stream_buffer: usize,
    in_flight: usize,
    /// This worker's push stream, and the flag that stops its reader.
    reader: PushReader<Cancel>,
    carrier: Arc<Carrier>,
    threads: Threads,
    counters: Arc<Counters>,
    requests_sent: u64,
    streams_closed_slow: u64,
    /// The earliest the node's timer may fire next: just after it fired, so
    /// a deadline the node did not move cannot spin the thread.
    not_before: Option<std::time::Instant>,
    shutdown_timeout: Duration,
    leaving: Option<Leaving>,
    /// Dropping it stops the server.
    server: Option<Serving>,
}

/// What woke the thread.
enum Wake {
    Command(Option<Command>),
    Input(Input),
    EventSent,
    Timer,
    Abort,
}

impl Driver {
    pub(crate) fn new(parts: Parts) -> Self {
        Driver {
            node: parts.node,
            clock: parts.clock,
            commands: parts.commands,
            deferred: None,
            inputs: parts.inputs,
            deliveries: parts.deliveries,
            abort: parts.abort,
            events: parts.events,
            backlog: EventBacklog::new(parts.event_capacity),
            served: BTreeMap::new(),
            stream_buffer: parts.stream_buffer,
            in_flight: 0,
            reader: PushReader::new(),
            carrier: parts.carrier,
            threads: parts.threads,
            counters: parts.counters,
            requests_sent: 0,
            streams_closed_slow: 0,
            not_before: None,
            shutdown_timeout: parts.shutdown_timeout,
            leaving: None,
            server: parts.server,
        }
    }

    /// Runs the node until it is shut down, aborted, or every handle is
    /// dropped.
    pub(crate) fn run(mut self) {
        // `Node::new` already queued its first requests.
        self.drain();
        loop {
            if !self.stalled() {
                if let Some(command) = self.deferred.take() {
                    self.on_command(command);
                }
            }
            match self.wait() {
                Wake::Abort => return self.stop(),
                // Every handle is gone: stop at once, without leaving, as if
                // the process had died.
                Wake::Command(None) => return self.stop(),
                // Held back, not refused: the caller waits for its answer.
                Wake::Command(Some(command)) if self.stalled() => self.deferred = Some(command),
                Wake::Command(Some(command)) => self.on_command(command),
                Wake::Input(input) => self.on_input(input),
                Wake::EventSent => self.flush_backlog(),
                Wake::Timer => self.on_timer(),
            }
            for _ in 0..MAX_INPUTS_PER_WAKE {
                if self.stalled() || self.deferred.is_some() {
                    break;
                }
                match self.commands.try_recv() {
                    Ok(command) => self.on_command(command),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_INPUTS_PER_WAKE {
                match self.inputs.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_INPUTS_PER_WAKE {
                if !self.takes_deliveries() {
                    break;
                }
                match self.deliveries.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            if self.done_leaving() {
                return self.stop();
            }
        }
    }

    /// Blocks until something is ready: a host call (unless one waits
    /// already), a network input (one that may bring deliveries only while
    /// none wait for the host), room for a waiting event, an abort, or the
    /// deadline. The timer always runs: it keeps the heartbeats going.
    fn wait(&mut self) -> Wake {
        let takes_deliveries = self.takes_deliveries();
        let deadline = self.deadline();
        let mut select = Select::new();
        let abort = select.recv(&self.abort);
        let command = self.deferred.is_none().then(|| select.recv(&self.commands));
        let input = select.recv(&self.inputs);
        let delivery = takes_deliveries.then(|| select.recv(&self.deliveries));
        // Room in the host's channel, for the oldest waiting event.
        let event = (!self.backlog.is_empty()).then(|| select.send(&self.events));
        let operation = match deadline {
            Some(deadline) => match select.select_deadline(deadline) {
                Ok(operation) => operation,
                Err(_) => return Wake::Timer,
            },
            None => select.select(),
        };
        let index = operation.index();
        if index == abort {
            let _ = operation.recv(&self.abort);
            Wake::Abort
        } else if Some(index) == command {
            Wake::Command(operation.recv(&self.commands).ok())
        } else if index == input {
            // The carrier and the server hold senders for as long as the
            // node runs, so the channel cannot close here.
            operation
                .recv(&self.inputs)
                .map_or(Wake::EventSent, Wake::Input)
        } else if Some(index) == delivery {
            operation
                .recv(&self.deliveries)
                .map_or(Wake::EventSent, Wake::Input)
        } else {
            debug_assert_eq!(Some(index), event);
            // The only branch left, which exists only with an event
            // waiting; a selected send must be completed, so the event is
            // taken now.
            if let Some(next) = self.backlog.take_oldest() {
                if operation.send(&self.events, next).is_err() {
                    // The host dropped its reader.
                    self.backlog.clear();
                }
            }
            Wake::EventSent
        }
    }

    /// Whether to take network input that may bring deliveries: not while
    /// deliveries wait for the host (that is what pushes back on peers),
    /// except while leaving, so the leave can finish.
    fn takes_deliveries(&self) -> bool {
        self.backlog.takes_deliveries(self.leaving.is_some())
    }

    /// Whether the host's own calls must wait: once they alone have added a
    /// channel's worth of events the host has not read. A host that reads
    /// its events on the thread that publishes never gets here, so it
    /// cannot deadlock on its own publish.
    fn stalled(&self) -> bool {
        self.backlog.stalled(self.leaving.is_some())
    }

    /// When to wake for the node's timer (or the end of a shutdown).
    fn deadline(&self) -> Option<std::time::Instant> {
        let node = self.node.poll_timeout().map(|d| self.clock.to_std(d));
        let leave = self.leaving.as_ref().map(|l| l.deadline);
        let target = match (node, leave) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (target, self.not_before) {
            (Some(t), Some(floor)) => Some(t.max(floor)),
            (t, _) => t,
        }
    }

    fn on_command(&mut self, command: Command) {
        self.backlog.begin_host_call();
        self.run_command(command);
        self.backlog.end_host_call();
    }

    fn run_command(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Subscribe { filter, reply } => {
                let _ = reply.send(self.node.subscribe(now, &filter));
            }
            Command::Unsubscribe { filter, reply } => {
                let _ = reply.send(self.node.unsubscribe(now, &filter));
            }
            Command::SubscribeMany { filters, reply } => {
                let filters = filters.iter().map(String::as_str);
                let _ = reply.send(self.node.subscribe_many(now, filters));
            }
            Command::UnsubscribeMany { filters, reply } => {
                let filters = filters.iter().map(String::as_str);
                let _ = reply.send(self.node.unsubscribe_many(now, filters));
            }
            Command::Publish { message, reply } => {
                let _ = reply.send(self.node.publish(now, message));
            }
            Command::PublishMany { messages, reply } => {
                let mut routings = Vec::with_capacity(messages.len());
                for message in messages {
                    routings.push(self.node.publish(now, message));
                    // Each publish is an input of its own.
                    self.drain();
                }
                let _ = reply.send(routings);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.node.status());
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.node.stats());
            }
            Command::Retained { reply } => {
                let _ = reply.send(self.node.retained().cloned().collect());
            }
            Command::RuntimeStats { reply } => {
                let _ = reply.send(self.runtime_stats());
            }
            Command::Shutdown { reply } => self.begin_leaving(reply),
        }
        self.drain();
    }

    fn on_input(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Request { request, reply } => {
                let mut response = self.node.handle_request(now, request);
                let stream = response.extensions_mut().remove::<StreamId>().map(|id| {
                    let (feed, frames) = crossbeam_channel::bounded(self.stream_buffer);
                    self.served.insert(id, feed);
                    (frames, id)
                });
                if let Err(unsent) = reply.send(Reply { response, stream }) {
                    // The request's thread is gone: so is the stream.
                    if let Some((_, id)) = unsent.into_inner().stream {
                        self.served.remove(&id);
                        self.node.handle_stream_closed(now, id);
                    }
                }
            }
            Input::Response {
                id,
                result,
                streaming,
            } => {
                if streaming {
                    self.reader.head(&mut self.node, now, id, result);
                } else {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.node.handle_response(now, id, result);
                }
            }
            Input::StreamData { id, data } => self.reader.data(&mut self.node, now, id, &data),
            Input::StreamEnd { id } => self.reader.end(&mut self.node, now, id),
            Input::StreamClosed { stream } => {
                self.served.remove(&stream);
                self.node.handle_stream_closed(now, stream);
            }
        }
        self.drain();
    }

    fn on_timer(&mut self) {
        self.not_before = Some(std::time::Instant::now() + Duration::from_millis(1));
        self.node.handle_timeout(self.clock.now());
        self.drain();
    }

    /// Takes every output of the node until each queue is empty.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            while let Some(transmit) = self.node.poll_transmit() {
                moved = true;
                self.send(transmit);
            }
            let mut broken = Vec::new();
            while let Some(output) = self.node.poll_stream() {
                moved = true;
                broken.extend(self.write_stream(output));
            }
            while let Some(event) = self.node.poll_event() {
                moved = true;
                self.emit(event);
            }
            if !broken.is_empty() {
                let now = self.clock.now();
                for stream in broken {
                    self.node.handle_stream_closed(now, stream);
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn send(&mut self, transmit: Transmit) {
        self.requests_sent += 1;
        let carrier = self.carrier.clone();
        if !transmit.streaming {
            self.in_flight += 1;
            self.threads
                .run(move || client::exchange(&carrier, transmit));
            return;
        }
        // A worker reads one push stream at a time: a new one means the node
        // gave up on the old.
        let cancel = Cancel::default();
        let id = transmit.id;
        if let Some(old) = self
            .reader
            .open(&mut self.node, self.clock.now(), id, cancel.clone())
        {
            old.store(true, Ordering::Release);
        }
        self.threads
            .run(move || client::stream(&carrier, transmit, &cancel));
    }

    /// Writes to a served stream; returns it if it had to be closed.
    fn write_stream(&mut self, output: StreamOutput) -> Option<StreamId> {
        match output {
            StreamOutput::Data { stream, bytes } => {
                let feed = self.served.get(&stream)?;
                match feed.try_send(bytes) {
                    Ok(()) => None,
                    Err(TrySendError::Full(_)) => {
                        // Waiting would stall the whole node for one slow
                        // reader; closing lets it reconnect, and the core
                        // sends again what was not acknowledged.
                        self.streams_closed_slow += 1;
                        log::warn!(
                            "{}: closing push stream {} whose reader fell {} frames behind",
                            self.node.id(),
                            stream.0,
                            self.stream_buffer
                        );
                        self.served.remove(&stream);
                        Some(stream)
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        self.served.remove(&stream);
                        Some(stream)
                    }
                }
            }
            StreamOutput::Close { stream } => {
                // Dropping the feed ends the body once its frames are out.
                self.served.remove(&stream);
                None
            }
        }
    }

    fn emit(&mut self, event: Event) {
        let events = &self.events;
        self.backlog.emit(event, |event| offer(events, event));
    }

    fn flush_backlog(&mut self) {
        let events = &self.events;
        self.backlog.flush(|event| offer(events, event));
    }

    fn begin_leaving(&mut self, reply: Sender<()>) {
        if let Some(leaving) = &mut self.leaving {
            leaving.waiters.push(reply);
            return;
        }
        log::info!("{}: leaving the cluster", self.node.id());
        self.leaving = Some(Leaving {
            deadline: after(self.shutdown_timeout),
            waiters: vec![reply],
        });
        self.node.leave(self.clock.now());
        self.drain();
    }

    /// Left (or refused) and nothing in flight, or out of time.
    fn done_leaving(&self) -> bool {
        let Some(leaving) = &self.leaving else {
            return false;
        };
        let finished = self.node.poll_timeout().is_none() && self.in_flight == 0;
        finished || std::time::Instant::now() >= leaving.deadline
    }

    fn stop(&mut self) {
        log::info!("{}: stopped", self.node.id());
        // Ends every push stream this core feeds and stops the server.
        self.served.clear();
        self.server = None;
        if let Some(cancel) = self.reader.abandon() {
            cancel.store(true, Ordering::Release);
        }
        self.flush_backlog();
        if let Some(leaving) = self.leaving.take() {
            for waiter in leaving.waiters {
                let _ = waiter.send(());
            }
        }
    }

    fn runtime_stats(&self) -> RuntimeStats {
        use std::sync::atomic::Ordering::Relaxed;
        RuntimeStats {
            requests_received: self.counters.requests.load(Relaxed),
            requests_refused_by_runtime: self.counters.refused.load(Relaxed),
            connections_accepted: self.counters.connections.load(Relaxed),
            connections_refused: self.counters.connections_refused.load(Relaxed),
            accept_failures: self.counters.accept_failures.load(Relaxed),
            requests_sent: self.requests_sent,
            requests_in_flight: self.in_flight,
            streams_served: self.served.len(),
            streams_closed_slow: self.streams_closed_slow,
            events_waiting: self.backlog.len(),
        }
    }
}

/// The moment `timeout` from now; a year from now for a timeout too long to
/// add (`Duration::MAX` means "no limit" to a caller).
fn after(timeout: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Offers an event to the host's channel without waiting.
fn offer(events: &Sender<Event>, event: Event) -> Offer {
    match events.try_send(event) {
        Ok(()) => Offer::Taken,
        Err(TrySendError::Full(event)) => Offer::Full(event),
        Err(TrySendError::Disconnected(_)) => Offer::Gone,
    }
}
