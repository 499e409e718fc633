//! Starting a node, and the handle the host drives it with.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mqtt_cluster_core::node::{Message, Routing};
use mqtt_cluster_core::runtime::{stream_buffer_shortfall, unnamed_node_warning};
use mqtt_cluster_core::{Config, Event, Node, NodeId, Role, Stats, Status};

use crate::client::Carrier;
use crate::clock::{os_seed, Clock};
use crate::driver::{Command, Driver, InputSender, Parts};
use crate::error::{ClusterError, StartError};
use crate::options::Options;
use crate::server::{self, ServerContext, Slots};
use crate::stats::{Counters, RuntimeStats};
use crate::threads::Threads;

/// Starts cluster nodes. See the [crate docs](crate) for the whole picture.
#[derive(Debug)]
pub struct Cluster;

impl Cluster {
    /// Starts a node with default [`Options`]: a core binds `host:port`.
    ///
    /// The node runs on threads of its own until
    /// [`ClusterHandle::shutdown`], [`ClusterHandle::abort`], or until every
    /// clone of the handle is dropped.
    pub fn start(config: Config) -> Result<ClusterHandle, StartError> {
        Cluster::start_with(config, Options::default())
    }

    /// Starts a core that serves on an already bound `listener` (for
    /// example on port 0, for tests). The config must still name the real
    /// port and list the core's real URL in `clusters`.
    pub fn start_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> Result<ClusterHandle, StartError> {
        Cluster::start_with(config, Options::default().listener(listener))
    }

    /// Starts a node with the given runtime [`Options`].
    pub fn start_with(config: Config, options: Options) -> Result<ClusterHandle, StartError> {
        // No TLS here: refuse `https://` peers now rather than fail every
        // request to them later.
        if let Some(url) = config.first_https_url() {
            return Err(StartError::TlsUnavailable {
                url: url.to_string(),
            });
        }
        let clock = Clock::new();
        let seed = options.seed.unwrap_or_else(os_seed);
        let timeout = config.request_timeout;
        let shutdown_timeout = options
            .shutdown_timeout
            .unwrap_or(timeout.saturating_mul(2));
        let is_core = config.core;
        if let Some(shortfall) = stream_buffer_shortfall(&config, options.stream_buffer) {
            log::warn!("{shortfall}");
        }
        if let Some(unnamed) = unnamed_node_warning(&config) {
            log::warn!("{unnamed}");
        }
        let bind_addr = config.listen_address();
        // The node is created before anything is bound so a bad config
        // leaves nothing behind.
        let node = Node::new(config, clock.now(), seed)?;
        let node_id = node.id().clone();
        let role = node.role();
        let max_body = node.max_body_size();

        let listener = match (is_core, options.listener) {
            (false, Some(_)) => return Err(StartError::ListenerForWorker),
            (false, None) => None,
            (true, Some(listener)) => Some(listener),
            (true, None) => {
                Some(
                    TcpListener::bind(&bind_addr).map_err(|source| StartError::Bind {
                        addr: bind_addr.clone(),
                        source,
                    })?,
                )
            }
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());

        let (command_tx, commands) = crossbeam_channel::bounded(options.command_capacity);
        let (input_tx, inputs, deliveries) = InputSender::channels(options.input_capacity);
        let (event_tx, events) = crossbeam_channel::bounded(options.event_capacity);
        let (abort_tx, abort) = crossbeam_channel::bounded(1);
        let (stopped_tx, stopped) = crossbeam_channel::bounded::<()>(0);
        let counters = Arc::new(Counters::default());
        let threads = Threads::new("mqtt-cluster-http");
        let server = match listener {
            None => None,
            Some(listener) => {
                let context = ServerContext {
                    inputs: input_tx.clone(),
                    max_body,
                    timeout,
                    header_timeout: options.header_timeout,
                    connections: Slots::new(options.max_connections),
                    pending_deliveries: Slots::new(options.max_pending_requests),
                    pending_control: Slots::new(options.max_pending_requests),
                    counters: counters.clone(),
                    threads: threads.clone(),
                };
                let serving = server::spawn(listener, Arc::new(context)).map_err(|source| {
                    StartError::Bind {
                        addr: bind_addr.clone(),
                        source,
                    }
                })?;
                Some(serving)
            }
        };
        let carrier = Arc::new(Carrier::new(node_id.clone(), timeout, max_body, input_tx));
        let driver = Driver::new(Parts {
            node,
            clock,
            commands,
            inputs,
            deliveries,
            abort,
            events: event_tx,
            event_capacity: options.event_capacity,
            stream_buffer: options.stream_buffer,
            shutdown_timeout,
            carrier,
            threads,
            counters,
            server,
        });
        std::thread::Builder::new()
            .name(format!("mqtt-cluster-{node_id}"))
            .spawn(move || {
                driver.run();
                // Dropped last: `stopped()` returns once everything is done.
                drop(stopped_tx);
            })
            .map_err(StartError::Thread)?;
        match local_addr {
            Some(addr) => log::info!("cluster node {node_id} ({role}) started on {addr}"),
            None => log::info!("cluster node {node_id} ({role}) started"),
        }
        Ok(ClusterHandle {
            commands: command_tx,
            shared: Arc::new(Shared {
                node_id,
                role,
                local_addr,
                abort: abort_tx,
                stopped,
            }),
            events: Events { queue: events },
        })
    }
}

#[derive(Debug)]
struct Shared {
    node_id: NodeId,
    role: Role,
    local_addr: Option<SocketAddr>,
    abort: Sender<()>,
    /// Disconnects when the node's thread has finished.
    stopped: Receiver<()>,
}

/// Drives a running node. Cheap to clone; all clones drive the same node.
///
/// Every method asks the node's thread and waits for its answer, so a call
/// waits while the command channel is full: that is the node pushing back
/// on a host faster than it.
///
/// The node stops **without leaving** when the last clone is dropped, as if
/// the process had died: the cluster declares it dead after `deadTimeout`.
/// (An [`Events`] reader does not keep it running.) Call
/// [`ClusterHandle::shutdown`] to leave gracefully.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    events: Events,
}

impl ClusterHandle {
    // ----- getters -----

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &NodeId {
        &self.shared.node_id
    }

    /// Core or worker.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The address a core's API is bound to (useful after binding port 0);
    /// `None` for a worker.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr
    }

    /// The cluster as this node sees it (what `GET /status` answers).
    pub fn status(&self) -> Result<Status, ClusterError> {
        self.ask(|reply| Command::Status { reply })
    }

    /// The node's counters.
    pub fn stats(&self) -> Result<Stats, ClusterError> {
        self.ask(|reply| Command::Stats { reply })
    }

    /// Every retained message of the cluster, as this node holds it, sorted
    /// by topic: what a host that starts (or restarts) loads into its own
    /// retained store. Afterwards [`Event::RetainSet`] and
    /// [`Event::RetainCleared`] keep it up to date. Empty when
    /// `retainedLimit` is 0.
    pub fn retained(&self) -> Result<Vec<Message>, ClusterError> {
        self.ask(|reply| Command::Retained { reply })
    }

    /// The runtime's own counters: requests, served streams, events
    /// waiting for the host.
    pub fn runtime_stats(&self) -> Result<RuntimeStats, ClusterError> {
        self.ask(|reply| Command::RuntimeStats { reply })
    }

    // ----- host actions -----

    /// A local client subscribed to `filter` (`$share/{group}/{filter}` for a
    /// shared subscription). `true` if it was the first local subscriber,
    /// which changes the cluster's routes.
    pub fn subscribe(&self, filter: &str) -> Result<bool, ClusterError> {
        let filter = filter.to_owned();
        Ok(self.ask(|reply| Command::Subscribe { filter, reply })??)
    }

    /// A local client unsubscribed from `filter`. `true` if it was the last
    /// local subscriber.
    pub fn unsubscribe(&self, filter: &str) -> Result<bool, ClusterError> {
        let filter = filter.to_owned();
        Ok(self.ask(|reply| Command::Unsubscribe { filter, reply })??)
    }

    /// Many local subscriptions in one trip to the node, as a broker
    /// restoring its persistent sessions at start makes them: the cluster
    /// hears of all of them in one route update instead of one per filter.
    /// Returns how many were the first local subscriber. One invalid filter
    /// refuses the whole call and changes nothing.
    ///
    /// ```no_run
    /// # fn run(node: mqtt_cluster_blocking::ClusterHandle) -> Result<(), mqtt_cluster_blocking::ClusterError> {
    /// // Every persistent session's filters, restored at start.
    /// let filters: Vec<String> = (0..100_000).map(|i| format!("devices/{i}/cmd")).collect();
    /// let first = node.subscribe_many(filters)?;
    /// assert_eq!(first, 100_000);
    /// # Ok(()) }
    /// ```
    pub fn subscribe_many(&self, filters: Vec<String>) -> Result<usize, ClusterError> {
        Ok(self.ask(|reply| Command::SubscribeMany { filters, reply })??)
    }

    /// Many local unsubscriptions in one trip to the node, one route update
    /// for all. Returns how many were the last local subscriber. One invalid
    /// filter refuses the whole call and changes nothing.
    pub fn unsubscribe_many(&self, filters: Vec<String>) -> Result<usize, ClusterError> {
        Ok(self.ask(|reply| Command::UnsubscribeMany { filters, reply })??)
    }

    /// A local client published `message`. The answer says whether the host
    /// delivers it to its own subscribers ([`Routing::local`]) and which
    /// nodes it is forwarded to; forwarding happens in the background.
    ///
    /// A QoS 1 or 2 message gets an id ([`Routing::id`]): exactly one
    /// [`Event::Confirmed`] or [`Event::NotConfirmed`] names it later, once
    /// every destination took it (answer the client's PUBACK then to promise
    /// what the cluster keeps). [`Routing::busy`] means it waits at this node
    /// for a destination's confirmation window: nothing is lost; hold the
    /// client's PUBACK until [`Event::Ready`] or its confirmation.
    pub fn publish(&self, message: Message) -> Result<Routing, ClusterError> {
        Ok(self.ask(|reply| Command::Publish { message, reply })??)
    }

    /// Publishes several messages in one trip to the node's thread, in
    /// order; one answer per message. For hosts that already batch, this
    /// saves a channel round trip per message.
    pub fn publish_many(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<Routing, ClusterError>>, ClusterError> {
        let routings = self.ask(|reply| Command::PublishMany { messages, reply })?;
        Ok(routings
            .into_iter()
            .map(|r| r.map_err(ClusterError::from))
            .collect())
    }

    /// The next event, waiting for one: deliveries for local subscribers,
    /// membership news, drops. `None` once the node has stopped and every
    /// event was read. Short for `handle.events().next()`.
    pub fn next_event(&self) -> Option<Event> {
        self.events.next()
    }

    /// The node's events, to read from another thread. Unlike a clone of
    /// the handle, this does not keep the node running.
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Leaves the cluster gracefully and stops: tells the core(s), waits for
    /// their answer and for requests in flight (up to
    /// [`Options::shutdown_timeout`]), then ends the push streams, stops
    /// serving and returns. Events that do not fit the event channel by then
    /// are dropped. Returns at once if the node has already stopped.
    pub fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply });
        self.stopped();
    }

    /// Stops the node at once, without telling anyone: what a crash looks
    /// like to the cluster. Requests in flight are abandoned.
    pub fn abort(&self) {
        let _ = self.shared.abort.try_send(());
    }

    /// Waits until the node has stopped, for whatever reason.
    pub fn stopped(&self) {
        let _ = self.shared.stopped.recv();
    }

    /// Waits up to `timeout` for the node to stop; `true` if it has.
    pub fn stopped_within(&self, timeout: Duration) -> bool {
        !matches!(
            self.shared.stopped.recv_timeout(timeout),
            Err(RecvTimeoutError::Timeout)
        )
    }

    fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, ClusterError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.commands
            .send(command(reply))
            .map_err(|_| ClusterError::Stopped)?;
        answer.recv().map_err(|_| ClusterError::Stopped)
    }
}

/// The events of a node: deliveries for the host's local subscribers,
/// membership news, drops. Cheap to clone; clones share one queue, so each
/// event goes to one reader.
///
/// Read events promptly: a host that does not makes the node push back on
/// its peers (see the crate docs on backpressure).
///
/// ```no_run
/// # fn run(node: mqtt_cluster_blocking::ClusterHandle) {
/// use mqtt_cluster_core::Event;
/// let events = node.events();
/// std::thread::spawn(move || {
///     for event in events.iter() {
///         match event {
///             Event::Deliver(delivery) => { /* hand to local subscribers */ }
///             Event::RegistrationRejected { .. } => break, // wrong secret: stop
///             other => println!("cluster event: {other:?}"),
///         }
///     }
/// });
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Events {
    queue: Receiver<Event>,
}

impl Events {
    /// The next event, waiting for one; `None` once the node has stopped
    /// and every event was read.
    pub fn next(&self) -> Option<Event> {
        self.queue.recv().ok()
    }

    /// The next event, waiting at most `timeout`; `None` if none came (or
    /// the node has stopped and every event was read).
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        self.queue.recv_timeout(timeout).ok()
    }

    /// Up to `limit` events at once, appended to `buffer`; waits up to
    /// `timeout` for the first. Returns how many were added.
    pub fn next_batch(&self, buffer: &mut Vec<Event>, limit: usize, timeout: Duration) -> usize {
        let Some(first) = self.next_timeout(timeout) else {
            return 0;
        };
        buffer.push(first);
        let more = self.queue.try_iter().take(limit.saturating_sub(1));
        let before = buffer.len();
        buffer.extend(more);
        buffer.len() - before + 1
    }

    /// An event if one is waiting, without waiting.
    pub fn try_next(&self) -> Option<Event> {
        self.queue.try_recv().ok()
    }

    /// Every event, waiting for each, until the node has stopped and every
    /// event was read.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.queue.iter()
    }
}
