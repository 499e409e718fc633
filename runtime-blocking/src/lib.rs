//! # mqtt-cluster-blocking
//!
//! Runs a [`mqtt_cluster_core::Node`] on plain threads, for brokers that
//! are not async: a small HTTP/1.1 server of its own serves a core's API,
//! ureq sends every node's requests, and std threads with bounded channels
//! tie them together. A
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
//! - **A core serves HTTP/1.1** on `host:port` or on a listener given with
//!   [`Options::listener`]. Each connection is served on a thread of its
//!   own, one request after the other (see the limits below): its body is read up to the node's `maxBodySize` and no
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
//! node bounds what it has in flight, and [`Options::max_connections`] what
//! it serves, which bounds the threads.
//!
//! ## Backpressure
//!
//! Every channel is bounded ([`Options`] sets the sizes). Host calls wait
//! while the command channel is full. Events wait in a channel of
//! [`Options::event_capacity`]; when the host does not read them the node
//! pushes back instead of dropping anything (a dropped delivery would be a
//! lost QoS 1 message):
//!
//! 1. while a delivery waits behind the full event channel, the node's
//!    thread takes no network input that may bring more: peers' `/forward`
//!    requests and this worker's push stream wait in a channel of their
//!    own, and a `/forward` not taken within `requestTimeout` fails and is
//!    retried by its sender. Everything else goes on: heartbeats and their
//!    answers, registration, `/sync`, `/routes`, acks, the answers to the
//!    node's own requests, its timers and host calls. A host that is merely
//!    slow therefore never makes its node look dead (no failover, no
//!    suspicion), and a host that publishes from the thread that reads
//!    events does not deadlock;
//! 2. if the host keeps calling without reading until its own calls have
//!    added a channel's worth of events, host calls wait too, until it
//!    reads.
//!
//! A push stream whose reader falls [`Options::stream_buffer`] frames
//! behind is closed, so one slow worker cannot stall its core; the worker
//! reconnects and receives again whatever it had not acknowledged.
//!
//! ## Limits on what clients can make a core hold
//!
//! The core's HTTP/1.1 server is the runtime's own (heads parsed with
//! `httparse`), so that it can bound what unauthenticated clients take:
//!
//! - at most [`Options::max_connections`] connections are served at once,
//!   each on one thread; one more is closed as soon as it is accepted
//!   ([`RuntimeStats::connections_refused`]);
//! - a head must arrive within [`Options::header_timeout`] (idle time
//!   between requests included, and however slowly it trickles), a body
//!   within `requestTimeout`; a head over 16 KiB is refused `431`;
//! - a body is read no further than one byte past `maxBodySize` (the core
//!   then answers `413`), and one announced larger is not read at all; the
//!   connection is then closed after the answer, never kept;
//! - at most [`Options::max_pending_requests`] requests of each kind
//!   (`/forward`, all others) are held from their head to their answer;
//!   one more is answered `503 busy` without its body being read;
//! - a failed `accept` (out of file descriptors, say) is counted in
//!   [`RuntimeStats::accept_failures`] and tried again after a short pause.
//!
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
pub use options::{
    Options, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_REQUESTS,
};
pub use stats::RuntimeStats;

/// The core crate, re-exported so a host needs only this one dependency.
pub use mqtt_cluster_core as core;

/// The README's examples, compiled and run as doctests so the registry page
/// never shows code that does not build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
