//! # mqtt-cluster-blocking
//!
//! Runs a [`mqtt_cluster_core::Node`] on plain threads, for brokers that
//! are not async: tiny_http serves a core's API, ureq sends every node's
//! requests, and std threads with bounded channels tie them together. A
//! broker embeds a cluster node with [`Cluster::start`] and drives it
//! through the [`ClusterHandle`] it gets back. The runtime only moves bytes
//! and time in and out of the node: every decision (retries, failover,
//! authentication, routing) is the core's.
//!
//! ```
//! use mqtt_cluster_core::node::Message;
//! use mqtt_cluster_core::Config;
//! use mqtt_cluster_blocking::Cluster;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A core on an ephemeral port: bind first, then tell the config.
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let port = listener.local_addr()?.port();
//! let config = Config::from_yaml_str(&format!(
//!     "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core1\n\
//!      clusters: [http://127.0.0.1:{port}]\nsecret: change-me-to-a-long-random-string\n"
//! ))?;
//! let node = Cluster::start_with_listener(config, listener)?;
//!
//! // The broker reports its clients' subscriptions and publishes...
//! node.subscribe("sensors/#")?;
//! let routing = node.publish(Message::new("sensors/1/temp", "21.5")?)?;
//! assert!(routing.local); // ...and delivers locally where the node says so.
//!
//! // Deliveries from other nodes and membership news arrive as events:
//! // `for event in node.events().iter() { ... }` on a thread of its own.
//! node.shutdown(); // leaves the cluster gracefully
//! # Ok(())
//! # }
//! ```
//!
//! ## What runs
//!
//! - **One thread per node** owns the [`Node`](mqtt_cluster_core::Node). It
//!   waits for the first of a host call, a network input, room in the event
//!   channel, or the node's deadline; handles it; drains every output until
//!   `None`; takes more ready inputs up to a cap; and waits again. Time is
//!   the monotonic clock in milliseconds since the node started, paired
//!   with the system clock as wall time.
//! - **A core serves HTTP/1.1** (tiny_http) on `host:port` or on a listener
//!   given with [`Options::listener`]. Each request is handled on a thread
//!   of its own: its body is read up to the node's `maxBodySize` and no
//!   further (the core then answers `413`), and handed to the node's
//!   thread, which answers it with `handle_request`. `GET /stream` is then
//!   written on that thread as a chunked body, each frame flushed as the
//!   node produces it; when the reader goes away the node is told with
//!   `handle_stream_closed`.
//! - **Requests the node sends** go out with ureq on keep-alive
//!   connections, each on a thread of its own, bounded by `requestTimeout`
//!   (connecting included), and are reported exactly once with
//!   `handle_response`. A push stream reports its head as soon as it
//!   arrives, then its body as it is read, then its end.
//!
//! Threads are reused: a job goes to a thread that is idle, and a new one
//! starts only when none is. Idle threads exit after a few seconds. The
//! node bounds what it has in flight, which bounds the threads.
//!
//! ## Backpressure
//!
//! Every channel is bounded ([`Options`] sets the sizes). Host calls wait
//! while the command channel is full. Events wait in a channel of
//! [`Options::event_capacity`]; when the host does not read them the node
//! pushes back instead of dropping anything (a dropped delivery would be a
//! lost QoS 1 message):
//!
//! 1. with the event channel full, the node's thread stops taking network
//!    input (requests served, responses and stream bytes received), so
//!    peers' requests wait and, after `requestTimeout`, fail and are
//!    retried by their senders; host calls and timers still run, so a host
//!    that publishes from the thread that reads events does not deadlock;
//! 2. if the host keeps calling without reading until its calls and the
//!    timers alone have added another channel's worth of events, host calls
//!    wait too, until it reads.
//!
//! A push stream whose reader falls [`Options::stream_buffer`] frames
//! behind is closed, so one slow worker cannot stall its core; the worker
//! reconnects and receives again whatever it had not acknowledged.
//!
//! ## Limits, and what the runtime does about tiny_http's
//!
//! - tiny_http sets no timeouts on the connections it serves: a peer that
//!   sends a head and then nothing holds one thread until it hangs up (the
//!   core still answers everyone else). Requests this node *sends* are
//!   all bounded by `requestTimeout`.
//! - tiny_http throws away the unread rest of a body into one buffer of
//!   that size. For a body announced larger than 1 GiB (far beyond any
//!   `maxBodySize`) that would abort the process, so the runtime answers
//!   `413` and then keeps the connection open instead, counting it in
//!   [`RuntimeStats::connections_abandoned`].
//! - tiny_http's acceptor ends for good at its first failed `accept` (out
//!   of file descriptors, say), which closes the port. A watchdog checks
//!   the port every second and, finding it closed, listens on it anew,
//!   counting it in [`RuntimeStats::acceptors_replaced`].
//! - tiny_http's chunked writer holds small writes back until 8 KiB have
//!   gathered, which would hold push stream frames back: the runtime
//!   writes a stream's chunks itself and flushes each batch of frames.
//! - HTTPS is not offered: use the tokio runtime with its `tls` feature, or
//!   a TLS-terminating proxy in front of the cores.
//!
//! ## Stopping
//!
//! [`ClusterHandle::shutdown`] leaves gracefully. Dropping the last handle,
//! or [`ClusterHandle::abort`], stops at once without leaving, like a crash.
//! An [`Event::RegistrationRejected`](mqtt_cluster_core::Event) means the
//! cluster refused this node's credentials: the node does nothing more, and
//! the host should shut it down.
//!
//! ## Logging
//!
//! The crate logs with `log` and installs no logger.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod clock;
mod driver;
mod error;
mod handle;
mod options;
mod server;
mod stats;
mod threads;

pub use error::{ClusterError, StartError};
pub use handle::{Cluster, ClusterHandle, Events};
pub use options::Options;
pub use stats::RuntimeStats;

/// The core crate, re-exported so a host needs only this one dependency.
pub use mqtt_cluster_core as core;

/// The README's examples, compiled and run as doctests so the registry page
/// never shows code that does not build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
