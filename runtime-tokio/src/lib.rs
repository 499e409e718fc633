//! # mqtt-cluster-tokio
//!
//! Runs a [`mqtt_cluster_core::Node`] on tokio and hyper: a broker embeds a
//! cluster node with [`Cluster::start`] and drives it through the
//! [`ClusterHandle`] it gets back. The runtime only moves bytes and time in
//! and out of the node: every decision (retries, failover, authentication,
//! routing) is the core's.
//!
//! ```
//! use mqtt_cluster_core::node::Message;
//! use mqtt_cluster_core::Config;
//! use mqtt_cluster_tokio::Cluster;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A core on an ephemeral port: bind first, then tell the config.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let port = listener.local_addr()?.port();
//! let config = Config::from_yaml_str(&format!(
//!     "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core1\n\
//!      clusters: [http://127.0.0.1:{port}]\nsecret: change-me-to-a-long-random-string\n"
//! ))?;
//! let node = Cluster::start_with_listener(config, listener).await?;
//!
//! // The broker reports its clients' subscriptions and publishes...
//! node.subscribe("sensors/#").await?;
//! let routing = node.publish(Message::new("sensors/1/temp", "21.5")?).await?;
//! assert!(routing.local); // ...and delivers locally where the node says so.
//!
//! // Deliveries from other nodes and membership news arrive as events:
//! // `while let Some(event) = node.next_event().await { ... }`
//! node.shutdown().await; // leaves the cluster gracefully
//! # Ok(())
//! # }
//! ```
//!
//! ## What runs
//!
//! - **One driver task per node** owns the [`Node`](mqtt_cluster_core::Node).
//!   Per wake it takes an input, drains every output until `None`, takes more
//!   ready inputs up to a cap, and re-arms its single timer only when the
//!   node's deadline moved. Time is tokio's clock in milliseconds since the
//!   driver started, paired with the system clock as wall time.
//! - **A core serves HTTP/1.1** (hyper) on `host:port` or on a listener given
//!   with [`Options::listener`]. Each request body is read up to the node's
//!   `maxBodySize` and no further (the core then answers `413`), and handed to
//!   the driver, which answers it with `handle_request`. `GET /stream` answers
//!   with a body the driver feeds from `poll_stream`; when the reader goes
//!   away the node is told with `handle_stream_closed`.
//! - **Requests the node sends** go out on a pooled keep-alive client, one
//!   task each, bounded by `requestTimeout` (also the connect timeout), and
//!   are reported exactly once with `handle_response`. A push stream reports
//!   its head as soon as it arrives, then its body chunk by chunk, then its
//!   end.
//!
//! ## Backpressure
//!
//! Every channel is bounded ([`Options`] sets the sizes). Host calls wait
//! while the command channel is full. Events wait in a channel of
//! [`Options::event_capacity`]; when the host does not read them the node
//! pushes back instead of dropping anything (a dropped delivery would be a
//! lost QoS 1 message):
//!
//! 1. while a delivery waits behind the full event channel, the driver
//!    takes no network input that may bring more: peers' `/forward`
//!    requests and this worker's push stream wait in a channel of their
//!    own, and a `/forward` not taken within `requestTimeout` fails and is
//!    retried by its sender. Everything else goes on: heartbeats and their
//!    answers, registration, `/sync`, `/routes`, acks, the answers to the
//!    node's own requests, its timers and host calls. A host that is merely
//!    slow therefore never makes its node look dead (no failover, no
//!    suspicion), and a host that publishes from the same task that reads
//!    events does not deadlock;
//! 2. if the host keeps calling without reading until its own calls have
//!    added a channel's worth of events, host calls wait too, until it
//!    reads.
//!
//! A push stream whose reader falls
//! [`Options::stream_buffer`] frames behind is closed instead, so one slow
//! worker cannot stall its core; the worker reconnects and receives again
//! whatever it had not acknowledged.
//!
//! ## Stopping
//!
//! [`ClusterHandle::shutdown`] leaves gracefully. Dropping the last handle,
//! or [`ClusterHandle::abort`], stops at once without leaving, like a crash.
//! An [`Event::RegistrationRejected`](mqtt_cluster_core::Event) means the
//! cluster refused this node's credentials: the node does nothing more, and
//! the host should shut it down.
//!
//! ## Features
//!
//! - `cli` (off by default): the `mqtt-cluster` binary (`node`, `demo`,
//!   `status`, `simulate`) and what only it needs (clap, a log subscriber,
//!   the core's simulator). `cargo install mqtt-cluster-tokio --features cli`
//!   installs the command; a broker embedding the library leaves it off.
//! - `tls`: HTTPS between nodes with rustls ([`Options::tls`], `TlsOptions`);
//!   cores serve HTTPS and every node checks peers against a CA. Items that
//!   need it are marked in these docs.
//!
//! ## Logging
//!
//! The crate logs with `tracing` and installs no subscriber. Every request
//! sent is logged at `debug` under the target `mqtt_cluster_tokio::traffic`
//! as `METHOD path from -> to status`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod client;
mod clock;
mod driver;
mod error;
mod handle;
mod operator;
mod options;
mod server;
mod stats;
#[cfg(feature = "tls")]
mod tls;
mod traffic;

pub use error::{ClusterError, StartError};
pub use handle::{Cluster, ClusterHandle, Events};
pub use operator::{Operator, OperatorError};
pub use options::{
    Options, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_REQUESTS,
};
pub use stats::RuntimeStats;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{TlsError, TlsOptions};
pub use traffic::{Observer, Traffic};

/// The core crate, re-exported so a host needs only this one dependency.
pub use mqtt_cluster_core as core;

/// The README's examples, compiled and run as doctests so the registry page
/// never shows code that does not build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
