//! The chaos suite's building blocks: real broker processes on a real
//! network that the kernel damages.
//!
//! [`netns`] builds a private network of Linux network namespaces joined
//! by a bridge, one namespace per broker and one for the MQTT clients, and
//! cuts and heals links between them. It needs root and `ip` (iproute2);
//! [`netns::unavailable`] says why it cannot run elsewhere, and
//! [`netns::netem_unavailable`] whether the kernel can delay, lose,
//! duplicate and reorder packets. [`process`] runs brokers in the
//! namespaces and kills, restarts, stops and continues them; [`faults`]
//! plans faults from a seed; [`clients`] publish and subscribe through
//! them ([`in_flight`] pairs each PUBACK with the message it confirms); [`health`] reads the brokers' status files to tell when the
//! cluster recovered; [`checker`] judges what arrived against the
//! cluster's promise.

pub mod checker;
pub mod clients;
pub mod faults;
pub mod health;
pub mod in_flight;
pub mod netns;
pub mod process;
