//! The driver: the one task that owns a [`Node`].
//!
//! Per wake it takes an input (a host command, a request served, a response
//! or stream bytes received, a timer), drains every output of the node until
//! `None`, takes what else is ready up to a cap, and re-arms its single timer
//! only when the node's deadline moved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use mqtt_cluster_core::node::{Message, PublishError, Routing};
use mqtt_cluster_core::routing::TopicError;
use mqtt_cluster_core::runtime::{carries_deliveries, EventBacklog, Offer, PushReader};
use mqtt_cluster_core::{
    Event, Node, RequestId, Stats, Status, StreamId, StreamOutput, Transmit, TransportError,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Sleep;

use crate::body::{ClosedStreams, StreamGuard};
use crate::client::{self, Carrier};
use crate::clock::Clock;
use crate::server::{AbortOnDrop, StreamParts};
use crate::stats::{Counters, RuntimeStats};

/// Inputs taken per source in one wake beyond the first, so a flood on one
/// channel cannot starve the others or delay the timer.
const MAX_INPUTS_PER_WAKE: usize = 64;

/// A host call, with where to send the answer.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        filter: String,
        reply: oneshot::Sender<Result<bool, TopicError>>,
    },
    Unsubscribe {
        filter: String,
        reply: oneshot::Sender<Result<bool, TopicError>>,
    },
    SubscribeMany {
        filters: Vec<String>,
        reply: oneshot::Sender<Result<usize, TopicError>>,
    },
    UnsubscribeMany {
        filters: Vec<String>,
        reply: oneshot::Sender<Result<usize, TopicError>>,
    },
    Publish {
        message: Message,
        reply: oneshot::Sender<Result<Routing, PublishError>>,
    },
    PublishMany {
        messages: Vec<Message>,
        reply: oneshot::Sender<Vec<Result<Routing, PublishError>>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Retained {
        reply: oneshot::Sender<Vec<Message>>,
    },
    RuntimeStats {
        reply: oneshot::Sender<RuntimeStats>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Something that came in from the network.
#[derive(Debug)]
pub(crate) enum Input {
    /// A peer's request to this core.
    Request {
        request: Request<Bytes>,
        reply: oneshot::Sender<Reply>,
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
}

impl Input {
    /// Whether it may bring the host deliveries: a peer's `/forward`, or
    /// anything of this worker's push stream (kept together, in order).
    fn carries_deliveries(&self) -> bool {
        match self {
            Input::Request { request, .. } => carries_deliveries(request.uri()),
            Input::Response { streaming, .. } => *streaming,
            Input::StreamData { .. } | Input::StreamEnd { .. } => true,
        }
    }
}

/// Where the server and the request tasks hand the driver what came in:
/// inputs that may bring deliveries go through a channel of their own,
/// which the driver stops reading while deliveries wait for the host, so
/// that the node's control traffic (heartbeats, their answers, `/sync`,
/// acks) never waits behind a slow host.
#[derive(Clone, Debug)]
pub(crate) struct InputSender {
    control: mpsc::Sender<Input>,
    deliveries: mpsc::Sender<Input>,
}

impl InputSender {
    /// The sender, and the receivers of control inputs and of inputs that
    /// carry deliveries, each with room for `capacity`.
    pub(crate) fn channels(
        capacity: usize,
    ) -> (Self, mpsc::Receiver<Input>, mpsc::Receiver<Input>) {
        let (control, control_rx) = mpsc::channel(capacity);
        let (deliveries, deliveries_rx) = mpsc::channel(capacity);
        let sender = InputSender {
            control,
            deliveries,
        };
        (sender, control_rx, deliveries_rx)
    }

    /// Hands `input` to the driver, waiting for room; an error once the
    /// driver is gone.
    pub(crate) async fn send(&self, input: Input) -> Result<(), ()> {
        let channel = if input.carries_deliveries() {
            &self.deliveries
        } else {
            &self.control
        };
        channel.send(input).await.map_err(|_| ())
    }
}

/// The core's answer to a served request, and for `GET /stream` the body's
/// frames.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) response: Response<Bytes>,
    pub(crate) stream: Option<StreamParts>,
}

/// A shutdown in progress.
#[derive(Debug)]
struct Leaving {
    deadline: tokio::time::Instant,
    waiters: Vec<oneshot::Sender<()>>,
}

/// What the driver is built from.
pub(crate) struct Parts {
    pub(crate) node: Node,
    pub(crate) clock: Clock,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) inputs: mpsc::Receiver<Input>,
    pub(crate) deliveries: mpsc::Receiver<Input>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) event_capacity: usize,
    pub(crate) stream_buffer: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) carrier: Arc<Carrier>,
    pub(crate) closed: Arc<ClosedStreams>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) server: Option<AbortOnDrop>,
}

pub(crate) struct Driver {
    node: Node,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    /// A command taken while stalled, run once the host has read events.
    deferred: Option<Command>,
    inputs: mpsc::Receiver<Input>,
    /// Inputs that may bring deliveries: not read while deliveries wait.
    deliveries: mpsc::Receiver<Input>,
    events: mpsc::Sender<Event>,
    /// Events produced while the event channel was full.
    backlog: EventBacklog,
    /// The push streams this core feeds.
    served: BTreeMap<StreamId, mpsc::Sender<Bytes>>,
    stream_buffer: usize,
    closed: Arc<ClosedStreams>,
    /// Every request task, so that stopping aborts them all.
    tasks: JoinSet<()>,
    in_flight: usize,
    /// This worker's push stream, and the task reading it.
    reader: PushReader<AbortHandle>,
    carrier: Arc<Carrier>,
    counters: Arc<Counters>,
    requests_sent: u64,
    streams_closed_slow: u64,
    timer: std::pin::Pin<Box<Sleep>>,
    /// What the timer is set to; `None` once it fired or with no deadline.
    armed: Option<tokio::time::Instant>,
    /// The earliest the timer may be set to next: just after it fired, so a
    /// deadline the node did not move cannot spin the driver.
    not_before: Option<tokio::time::Instant>,
    shutdown_timeout: Duration,
    leaving: Option<Leaving>,
    /// Dropping it stops the server and closes its connections.
    server: Option<AbortOnDrop>,
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
            events: parts.events,
            backlog: EventBacklog::new(parts.event_capacity),
            served: BTreeMap::new(),
            stream_buffer: parts.stream_buffer,
            closed: parts.closed,
            tasks: JoinSet::new(),
            in_flight: 0,
            reader: PushReader::new(),
            carrier: parts.carrier,
            counters: parts.counters,
            requests_sent: 0,
            streams_closed_slow: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            not_before: None,
            shutdown_timeout: parts.shutdown_timeout,
            leaving: None,
            server: parts.server,
        }
    }

    /// Runs the node until it is shut down or every handle is dropped.
    pub(crate) async fn run(mut self) {
        // `Node::new` already queued its first requests.
        self.drain();
        loop {
            if !self.stalled() {
                if let Some(command) = self.deferred.take() {
                    self.on_command(command);
                }
            }
            self.arm_timer();
            let has_backlog = !self.backlog.is_empty();
            // Timers always run: they keep the node's heartbeats going.
            let timer_on = self.armed.is_some();
            let takes_command = self.deferred.is_none();
            tokio::select! {
                command = self.commands.recv(), if takes_command => match command {
                    // Held back, not refused: the caller waits for its answer,
                    // and the channel stays watched for the last handle going.
                    Some(command) if self.stalled() => self.deferred = Some(command),
                    Some(command) => self.on_command(command),
                    // Every handle is gone: stop at once, without leaving,
                    // as if the process had died.
                    None => return self.stop(),
                },
                Some(input) = self.inputs.recv() => self.on_input(input),
                Some(input) = self.deliveries.recv(), if self.takes_deliveries() => {
                    self.on_input(input);
                }
                // An owned permit, so the handler may use `self` freely.
                permit = self.events.clone().reserve_owned(), if has_backlog => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.backlog.take_oldest() {
                            permit.send(event);
                        }
                        self.flush_backlog();
                    }
                    Err(_) => self.backlog.clear(),
                },
                () = &mut self.timer, if timer_on => self.on_timer(),
                () = self.closed.notify.notified() => {}
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
            for stream in self.closed.take() {
                self.served.remove(&stream);
                self.node.handle_stream_closed(self.clock.now(), stream);
                self.drain();
            }
            while self.tasks.try_join_next().is_some() {}
            if self.done_leaving() {
                return self.stop();
            }
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
    /// its events in the same task that publishes never gets here, so it
    /// cannot deadlock on its own publish.
    fn stalled(&self) -> bool {
        self.backlog.stalled(self.leaving.is_some())
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
                    let (feed, frames) = mpsc::channel(self.stream_buffer);
                    self.served.insert(id, feed);
                    (frames, StreamGuard::new(id, self.closed.clone()))
                });
                // If the connection is gone already, the reply (and with it
                // the stream's guard) is dropped, which reports the stream
                // closed.
                let _ = reply.send(Reply { response, stream });
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
        }
        self.drain();
    }

    fn on_timer(&mut self) {
        self.armed = None;
        self.not_before = Some(tokio::time::Instant::now() + Duration::from_millis(1));
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
            self.tasks.spawn(client::exchange(carrier, transmit));
            return;
        }
        // A worker reads one push stream at a time: a new one means the node
        // gave up on the old, whose connection would otherwise stay open
        // until TCP noticed the peer was gone.
        let id = transmit.id;
        let task = self.tasks.spawn(client::stream(carrier, transmit));
        if let Some(old) = self.reader.open(&mut self.node, self.clock.now(), id, task) {
            old.abort();
        }
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
                        tracing::warn!(
                            node = %self.node.id(),
                            stream = stream.0,
                            "closing a push stream whose reader fell {} frames behind",
                            self.stream_buffer
                        );
                        self.served.remove(&stream);
                        Some(stream)
                    }
                    Err(TrySendError::Closed(_)) => {
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

    /// Sets the timer to the node's deadline (or the shutdown deadline),
    /// touching it only when that changed.
    fn arm_timer(&mut self) {
        let node = self
            .node
            .poll_timeout()
            .map(|deadline| self.clock.to_tokio(deadline));
        let leave = self.leaving.as_ref().map(|l| l.deadline);
        let mut target = match (node, leave) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(t), Some(floor)) = (target, self.not_before) {
            target = Some(t.max(floor));
        }
        if target != self.armed {
            if let Some(t) = target {
                self.timer.as_mut().reset(t);
            }
            self.armed = target;
        }
    }

    fn begin_leaving(&mut self, reply: oneshot::Sender<()>) {
        if let Some(leaving) = &mut self.leaving {
            leaving.waiters.push(reply);
            return;
        }
        tracing::info!(node = %self.node.id(), "leaving the cluster");
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
        finished || tokio::time::Instant::now() >= leaving.deadline
    }

    fn stop(&mut self) {
        tracing::info!(node = %self.node.id(), "stopped");
        // Ends every push stream this core feeds and stops the server.
        self.served.clear();
        self.server = None;
        self.tasks.abort_all();
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
            connections_accepted: self.counters.connections.load(Relaxed),
            requests_received: self.counters.requests.load(Relaxed),
            requests_refused_by_runtime: self.counters.refused.load(Relaxed),
            connections_refused: self.counters.connections_refused.load(Relaxed),
            requests_refused_in_clear: self.counters.refused_in_clear.load(Relaxed),
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
fn after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Offers an event to the host's channel without waiting.
fn offer(events: &mpsc::Sender<Event>, event: Event) -> Offer {
    match events.try_send(event) {
        Ok(()) => Offer::Taken,
        Err(TrySendError::Full(event)) => Offer::Full(event),
        Err(TrySendError::Closed(_)) => Offer::Gone,
    }
}
