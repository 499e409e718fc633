//! # mqtt-cluster-core
//!
//! The cluster layer of an MQTT broker as a pure state machine: membership,
//! failure detection and (with the routing modules) where each publish must
//! go. It performs no I/O, starts no threads, reads no clock and draws no
//! randomness it was not given. A runtime (the crates `mqtt-cluster-tokio`
//! and `mqtt-cluster-blocking`, or a test) moves bytes and time in and out.
//!
//! ## The contract
//!
//! A [`Node`] is driven by inputs, each carrying the current time as a
//! [`Now`] (a monotonic [`Instant`] plus the [`WallTime`] read beside it):
//!
//! - [`Node::handle_request`]: a peer's HTTP request (cores only); answers
//!   with the response to send.
//! - [`Node::handle_response`]: what became of a [`Transmit`], exactly once
//!   per [`RequestId`], including transport errors and timeouts.
//! - [`Node::handle_stream_data`] / [`Node::handle_stream_end`]: the body of
//!   a worker's `GET /stream`, in chunks split anywhere.
//! - [`Node::handle_stream_closed`]: a stream a core serves lost its reader.
//! - [`Node::handle_timeout`]: at or after [`Node::poll_timeout`].
//!
//! After **every** input, drain the outputs until they return `None`, in
//! this order: [`Node::poll_transmit`] (requests to send),
//! [`Node::poll_stream`] (bytes for the streams a core serves),
//! [`Node::poll_event`] (news for the host), then [`Node::poll_timeout`]
//! (when to call `handle_timeout` next). Monotonic time never goes
//! backwards inside a node: an earlier instant counts as the latest one
//! seen. Wall time is taken as given, so a clock stepped forward and back
//! (NTP, a resumed VM) signs with the right time again at once.
//!
//! ## The whole loop, in memory
//!
//! A core and a worker wired together by hand, with a manual clock:
//!
//! ```
//! use std::time::Duration;
//! use mqtt_cluster_core::{Config, Event, Instant, Node, Now, StreamId, StreamOutput, WallTime};
//!
//! let core_yaml = "core: true\nport: 8884\nnodeName: core1\nsecret: s3cret-s3cret\n\
//!                  clusters: [http://core1:8884]\n";
//! let worker_yaml = "clusters: [http://core1:8884]\nnodeName: w1\nsecret: s3cret-s3cret\n";
//! let mut now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1_700_000_000_000));
//! let mut core = Node::new(Config::from_yaml_str(core_yaml)?, now, 1)?;
//! let mut worker = Node::new(Config::from_yaml_str(worker_yaml)?, now, 2)?;
//! let mut stream = None; // (the core's StreamId, the worker's RequestId)
//! let mut synced = false;
//!
//! for _ in 0..20 {
//!     // Everything the worker sends goes to the core (its only peer here);
//!     // the core's own requests go to itself, through its `clusters` list.
//!     while let Some(t) = worker.poll_transmit() {
//!         let response = core.handle_request(now, t.request);
//!         if let Some(id) = response.extensions().get::<StreamId>() {
//!             stream = Some((*id, t.id));
//!         }
//!         worker.handle_response(now, t.id, Ok(response));
//!     }
//!     while let Some(t) = core.poll_transmit() {
//!         let response = core.handle_request(now, t.request);
//!         core.handle_response(now, t.id, Ok(response));
//!     }
//!     while let Some(out) = core.poll_stream() {
//!         if let (StreamOutput::Data { bytes, .. }, Some((_, request))) = (out, stream) {
//!             worker.handle_stream_data(now, request, &bytes);
//!         }
//!     }
//!     while let Some(event) = worker.poll_event() {
//!         match &event {
//!             Event::Registered { core, .. } => assert_eq!(core.as_str(), "core1"),
//!             // From here on the worker's publishes reach every subscriber.
//!             Event::Synced { .. } => synced = true,
//!             _ => {}
//!         }
//!     }
//!     while core.poll_event().is_some() {}
//!     // Jump to the earliest deadline of the two.
//!     let next = core.poll_timeout().into_iter().chain(worker.poll_timeout()).min().unwrap();
//!     now = now.after(next.saturating_since(now.instant));
//!     core.handle_timeout(now);
//!     worker.handle_timeout(now);
//! }
//! assert_eq!(core.status().members_digest, worker.status().members_digest);
//! assert_eq!(worker.status().core.unwrap().as_str(), "core1");
//! assert!(synced);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Delivery confirmed end to end
//!
//! Once a node reports [`Event::Confirmed`] for a QoS 1/2 publish (its
//! [`Routing::id`](node::Routing::id)), every node that had a matching
//! subscription when it was published (as the origin's copy of the
//! routing table knew it: a worker publishing before [`Event::Synced`]
//! routes by what it holds so far) has taken the message for local
//! delivery. Until then the origin keeps it and sends it again through
//! whatever path exists, so whichever single node other than the origin
//! dies, relaying cores included, each destination that stays up receives
//! it exactly once (destinations deduplicate by origin, incarnation and
//! sequence number). Exactly one [`Event::Confirmed`] or
//! [`Event::NotConfirmed`] follows each QoS 1/2 publish. The limits: the
//! origin dying before the confirmation loses what it kept (a broker that
//! answers PUBACK only on `Confirmed` never acknowledged those, so its
//! clients publish them again); a message not confirmed within
//! `messageExpiry` is reported as not confirmed (`Expired`), as is one
//! whose destination died, left or restarted (`DestinationGone`). An origin
//! holds at most 4096 unconfirmed copies per destination; publishes beyond
//! that wait at the origin ([`Routing::busy`](node::Routing::busy), then
//! [`Event::Ready`]), never dropped. `queueLength` and `queuePolicy` bound
//! and drop QoS 0 messages only. `ARCHITECTURE.md` has the acknowledgement
//! and retry rules.
//!
//! ## Modules
//!
//! [`config`] reads plugin.yaml; [`wire`] holds the protocol's bodies, HTTP
//! mapping and stream framing; [`auth`] signs and checks requests;
//! [`membership`] merges member records; [`node`] ties them together;
//! [`routing`] matches topics against the cluster's subscriptions;
//! [`retained`] is the cluster's replicated set of retained messages (last
//! writer wins by Lamport stamp and origin, bounded by `retainedLimit`;
//! the [`node`] docs say how a host keeps its own store in step);
//! [`queue`] bounds what waits for a peer; [`runtime`] holds what every
//! runtime's run loop does around a node.
//!
//! ## Features
//!
//! - `sim`: [`sim`], the deterministic whole-cluster simulator (seeded
//!   network with delay, loss, duplication, reordering, partitions and
//!   crashes, and a checker of the guarantees). Add it to a dev-dependency
//!   to test your own cluster setups; production builds leave it off.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod config;
pub mod forward;
pub mod id;
pub mod membership;
pub mod node;
pub mod queue;
pub mod retained;
pub mod routing;
pub mod runtime;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
pub mod time;
pub mod wire;

pub use config::{Config, ConfigError};
pub use id::{Incarnation, InvalidNodeId, NodeId, RequestId, Role, StreamId};
pub use node::{
    Event, MemberStatus, Node, NodeError, Phase, RequestError, Stats, Status, StreamOutput,
    Transmit, TransportError,
};
pub use time::{Instant, Now, WallTime};

/// The README's examples, compiled and run as doctests so the registry page
/// never shows code that does not build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
