//! Starting a node, and the handle the host drives it with.

use std::net::SocketAddr;
use std::sync::Arc;

use mqtt_cluster_core::node::{Message, Routing};
use mqtt_cluster_core::runtime::{stream_buffer_shortfall, unnamed_node_warning};
use mqtt_cluster_core::{Config, Event, Node, NodeId, Role, Stats, Status};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};
use tokio::task::AbortHandle;

use crate::body::ClosedStreams;
use crate::client::Carrier;
use crate::clock::{os_seed, Clock};
use crate::driver::{Command, Driver, InputSender, Parts};
use crate::error::{ClusterError, StartError};
use crate::options::Options;
use crate::server::{self, ServerContext};
use crate::stats::{Counters, RuntimeStats};

/// Starts cluster nodes. See the [crate docs](crate) for the whole picture.
#[derive(Debug)]
pub struct Cluster;

impl Cluster {
    /// Starts a node with default [`Options`]: a core binds `host:port`.
    ///
    /// Must be called from within a tokio runtime; the node runs on it until
    /// [`ClusterHandle::shutdown`], [`ClusterHandle::abort`], or until every
    /// clone of the handle is dropped.
    pub async fn start(config: Config) -> Result<ClusterHandle, StartError> {
        Cluster::start_with(config, Options::default()).await
    }

    /// Starts a core that serves on an already bound `listener` (for
    /// example on port 0, for tests). The config must still name the real
    /// port and list the core's real URL in `clusters`.
    pub async fn start_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> Result<ClusterHandle, StartError> {
        Cluster::start_with(config, Options::default().listener(listener)).await
    }

    /// Starts a node with the given runtime [`Options`].
    pub async fn start_with(config: Config, options: Options) -> Result<ClusterHandle, StartError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StartError::NoRuntime);
        }
        check_schemes(&config)?;
        let clock = Clock::new();
        let seed = options.seed.unwrap_or_else(os_seed);
        let timeout = config.request_timeout;
        let shutdown_timeout = options
            .shutdown_timeout
            .unwrap_or(timeout.saturating_mul(2));
        let is_core = config.core;
        if let Some(shortfall) = stream_buffer_shortfall(&config, options.stream_buffer) {
            tracing::warn!("{shortfall}");
        }
        if let Some(unnamed) = unnamed_node_warning(&config) {
            tracing::warn!("{unnamed}");
        }
        let bind_addr = config.listen_address();
        // The node is created before anything is bound so a bad config
        // leaves nothing behind.
        let node = Node::new(config, clock.now(), seed)?;
        let node_id = node.id().clone();
        let role = node.role();
        let max_body = node.max_body_size();

        #[cfg(feature = "tls")]
        let tls = options
            .tls
            .as_ref()
            .map(crate::tls::TlsOptions::load)
            .transpose()?;
        let listener =
            match (is_core, options.listener) {
                (false, Some(_)) => return Err(StartError::ListenerForWorker),
                (false, None) => None,
                (true, Some(listener)) => Some(listener),
                (true, None) => Some(TcpListener::bind(&bind_addr).await.map_err(|source| {
                    StartError::Bind {
                        addr: bind_addr.clone(),
                        source,
                    }
                })?),
            };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());

        let (command_tx, commands) = mpsc::channel(options.command_capacity);
        let (input_tx, inputs, deliveries) = InputSender::channels(options.input_capacity);
        let (event_tx, events) = mpsc::channel(options.event_capacity);
        let counters = Arc::new(Counters::default());
        let server = listener.map(|listener| {
            let context = ServerContext {
                inputs: input_tx.clone(),
                max_body,
                timeout,
                header_timeout: options.header_timeout,
                connections: permits(options.max_connections),
                pending_deliveries: permits(options.max_pending_requests),
                pending_control: permits(options.max_pending_requests),
                counters: counters.clone(),
                #[cfg(feature = "tls")]
                tls: tls.as_ref().and_then(|t| t.acceptor.clone()),
            };
            server::spawn(listener, Arc::new(context))
        });
        let carrier = Arc::new(Carrier::new(
            node_id.clone(),
            timeout,
            max_body,
            input_tx,
            options.observer,
            counters.clone(),
            #[cfg(feature = "tls")]
            tls.map(|t| t.connector),
        ));
        let driver = Driver::new(Parts {
            node,
            clock,
            commands,
            inputs,
            deliveries,
            events: event_tx,
            event_capacity: options.event_capacity,
            stream_buffer: options.stream_buffer,
            shutdown_timeout,
            carrier,
            closed: Arc::new(ClosedStreams::default()),
            counters,
            server,
        });
        let task = tokio::spawn(driver.run()).abort_handle();
        match local_addr {
            Some(addr) => tracing::info!(node = %node_id, %role, %addr, "cluster node started"),
            None => tracing::info!(node = %node_id, %role, "cluster node started"),
        }
        Ok(ClusterHandle {
            commands: command_tx,
            shared: Arc::new(Shared {
                node_id,
                role,
                local_addr,
                driver: task,
            }),
            events: Events {
                queue: Arc::new(Mutex::new(events)),
            },
        })
    }
}

/// Refuses `https://` peers in a build that cannot reach them, rather
/// than failing every request later.
fn check_schemes(config: &Config) -> Result<(), StartError> {
    match config.first_https_url() {
        Some(url) if cfg!(not(feature = "tls")) => Err(StartError::TlsUnavailable {
            url: url.to_string(),
        }),
        _ => Ok(()),
    }
}

struct Shared {
    node_id: NodeId,
    role: Role,
    local_addr: Option<SocketAddr>,
    driver: AbortHandle,
}

/// Drives a running node. Cheap to clone; all clones drive the same node.
///
/// Every method asks the node's driver task and waits for its answer, so a
/// call waits while the command channel is full: that is the node pushing
/// back on a host faster than it.
///
/// The node stops **without leaving** when the last clone is dropped, as if
/// the process had died: the cluster declares it dead after `deadTimeout`.
/// (An [`Events`] reader does not keep it running.) Call
/// [`ClusterHandle::shutdown`] to leave gracefully.
#[derive(Clone)]
pub struct ClusterHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    events: Events,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("node_id", &self.shared.node_id)
            .field("role", &self.shared.role)
            .field("local_addr", &self.shared.local_addr)
            .finish()
    }
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
    pub async fn status(&self) -> Result<Status, ClusterError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<Stats, ClusterError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Every retained message of the cluster, as this node holds it, sorted
    /// by topic: what a host that starts (or restarts) loads into its own
    /// retained store. Afterwards [`Event::RetainSet`] and
    /// [`Event::RetainCleared`] keep it up to date. Empty when
    /// `retainedLimit` is 0.
    pub async fn retained(&self) -> Result<Vec<Message>, ClusterError> {
        self.ask(|reply| Command::Retained { reply }).await
    }

    /// The runtime's own counters: connections, requests in flight, served
    /// streams, events waiting for the host.
    pub async fn runtime_stats(&self) -> Result<RuntimeStats, ClusterError> {
        self.ask(|reply| Command::RuntimeStats { reply }).await
    }

    // ----- host actions -----

    /// A local client subscribed to `filter` (`$share/{group}/{filter}` for a
    /// shared subscription). `true` if it was the first local subscriber,
    /// which changes the cluster's routes.
    pub async fn subscribe(&self, filter: &str) -> Result<bool, ClusterError> {
        let filter = filter.to_owned();
        Ok(self
            .ask(|reply| Command::Subscribe { filter, reply })
            .await??)
    }

    /// A local client unsubscribed from `filter`. `true` if it was the last
    /// local subscriber.
    pub async fn unsubscribe(&self, filter: &str) -> Result<bool, ClusterError> {
        let filter = filter.to_owned();
        Ok(self
            .ask(|reply| Command::Unsubscribe { filter, reply })
            .await??)
    }

    /// Many local subscriptions in one trip to the node, as a broker
    /// restoring its persistent sessions at start makes them: the cluster
    /// hears of all of them in one route update instead of one per filter.
    /// Returns how many were the first local subscriber. One invalid filter
    /// refuses the whole call and changes nothing.
    ///
    /// ```no_run
    /// # async fn run(node: mqtt_cluster_tokio::ClusterHandle) -> Result<(), mqtt_cluster_tokio::ClusterError> {
    /// // Every persistent session's filters, restored at start.
    /// let filters: Vec<String> = (0..100_000).map(|i| format!("devices/{i}/cmd")).collect();
    /// let first = node.subscribe_many(filters).await?;
    /// assert_eq!(first, 100_000);
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_many(&self, filters: Vec<String>) -> Result<usize, ClusterError> {
        Ok(self
            .ask(|reply| Command::SubscribeMany { filters, reply })
            .await??)
    }

    /// Many local unsubscriptions in one trip to the node, one route update
    /// for all. Returns how many were the last local subscriber. One invalid
    /// filter refuses the whole call and changes nothing.
    pub async fn unsubscribe_many(&self, filters: Vec<String>) -> Result<usize, ClusterError> {
        Ok(self
            .ask(|reply| Command::UnsubscribeMany { filters, reply })
            .await??)
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
    pub async fn publish(&self, message: Message) -> Result<Routing, ClusterError> {
        Ok(self
            .ask(|reply| Command::Publish { message, reply })
            .await??)
    }

    /// Publishes several messages in one trip to the driver, in order; one
    /// answer per message. For hosts that already batch, this saves a
    /// channel round trip per message.
    pub async fn publish_many(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<Routing, ClusterError>>, ClusterError> {
        let routings = self
            .ask(|reply| Command::PublishMany { messages, reply })
            .await?;
        Ok(routings
            .into_iter()
            .map(|r| r.map_err(ClusterError::from))
            .collect())
    }

    /// The next event: deliveries for local subscribers, membership news,
    /// drops. `None` once the node has stopped and every event was read.
    /// Short for `handle.events().next()`.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.next().await
    }

    /// The node's events, to read from another task. Unlike a clone of the
    /// handle, this does not keep the node running.
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Leaves the cluster gracefully and stops: tells the core(s), waits for
    /// their answer and for requests in flight (up to
    /// [`Options::shutdown_timeout`]), then ends the push streams, stops
    /// serving and returns. Events that do not fit the event channel by then
    /// are dropped. Returns at once if the node has already stopped.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }

    /// Stops the node at once, without telling anyone: what a crash looks
    /// like to the cluster. Requests in flight are abandoned.
    pub fn abort(&self) {
        self.shared.driver.abort();
    }

    /// Waits until the node has stopped, for whatever reason.
    pub async fn stopped(&self) {
        self.commands.closed().await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ClusterError::Stopped)?;
        answer.await.map_err(|_| ClusterError::Stopped)
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
/// # async fn run(node: mqtt_cluster_tokio::ClusterHandle) {
/// use mqtt_cluster_core::Event;
/// let events = node.events();
/// tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         match event {
///             Event::Deliver(delivery) => { /* hand to local subscribers */ }
///             Event::RegistrationRejected { .. } => break, // wrong secret: stop
///             other => tracing::info!(?other, "cluster event"),
///         }
///     }
/// });
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Events {
    queue: Arc<Mutex<mpsc::Receiver<Event>>>,
}

impl Events {
    /// The next event; `None` once the node has stopped and every event
    /// was read.
    pub async fn next(&self) -> Option<Event> {
        self.queue.lock().await.recv().await
    }

    /// Up to `limit` events at once, appended to `buffer`; waits for at
    /// least one. Returns how many were added, 0 once the node has stopped
    /// and every event was read.
    pub async fn next_batch(&self, buffer: &mut Vec<Event>, limit: usize) -> usize {
        self.queue
            .lock()
            .await
            .recv_many(buffer, limit.max(1))
            .await
    }

    /// An event if one is waiting, without waiting.
    pub fn try_next(&self) -> Option<Event> {
        self.queue.try_lock().ok()?.try_recv().ok()
    }
}

/// A semaphore of `n` permits, at most as many as tokio can count.
fn permits(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))
}
