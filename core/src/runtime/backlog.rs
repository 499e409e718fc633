//! Events waiting for the host, and the backpressure they exert.

use std::collections::VecDeque;

use crate::node::Event;
use crate::wire::Endpoint;

/// What became of an event offered to the host's channel.
#[derive(Debug)]
pub enum Offer {
    /// The channel took it.
    Taken,
    /// The channel is full; here it is back.
    Full(Event),
    /// Nobody reads the channel any more.
    Gone,
}

/// Whether a peer's request may hand the host deliveries: only `/forward`
/// does. A runtime queues such requests apart from the node's control
/// traffic, so that deliveries waiting for a slow host hold up only more
/// deliveries (see [`EventBacklog`]).
///
/// ```
/// use mqtt_cluster_core::runtime::carries_deliveries;
/// let forward: http::Uri = "/forward".parse().unwrap();
/// let heartbeat: http::Uri = "/heartbeat".parse().unwrap();
/// assert!(carries_deliveries(&forward));
/// assert!(!carries_deliveries(&heartbeat));
/// ```
pub fn carries_deliveries(uri: &http::Uri) -> bool {
    uri.path() == Endpoint::Forward.path()
}

/// Where the events being produced come from, for the rule that stalls the
/// host's own calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A host call (`publish`, `subscribe`, ...).
    Host,
    /// The network or a timer.
    Node,
}

/// Events produced while the host's channel was full, oldest first, and the
/// run loop's rules for them.
///
/// A runtime hands every event of the node to the host through a bounded
/// channel. When the host does not keep up, events wait here rather than
/// being dropped (a dropped delivery would be a lost QoS 1 message), and
/// the loop pushes back, on deliveries only:
///
/// 1. while a delivery waits, it takes no network input that may bring
///    more ([`takes_deliveries`](EventBacklog::takes_deliveries); a peer's
///    `/forward`, see [`carries_deliveries`], and a worker's push stream):
///    those wait and, after their timeout, are retried by their senders.
///    So at most one input's worth of deliveries waits here. Everything
///    else goes on: the node's control traffic (heartbeats and their
///    answers, registration, `/sync`, `/routes`, acks, the answers to its
///    own requests), its timers and host calls, so a slow host never makes
///    its node look dead, and a host that publishes from the same thread
///    that reads events does not deadlock;
/// 2. once the host's own calls have added a channel's worth of events
///    that still wait, host calls wait too
///    ([`stalled`](EventBacklog::stalled)), until the host reads.
///
/// While the node is leaving, neither rule applies, so the leave can
/// finish.
///
/// ```
/// use mqtt_cluster_core::runtime::{EventBacklog, Offer};
/// use mqtt_cluster_core::Event;
///
/// let mut backlog = EventBacklog::new(1);
/// let mut channel: Vec<Event> = Vec::new();
/// let mut offer = |event| if channel.len() < 1 { channel.push(event); Offer::Taken } else { Offer::Full(event) };
/// backlog.emit(Event::Left, &mut offer);
/// backlog.emit(Event::Left, &mut offer);
/// assert_eq!(backlog.len(), 1);
/// // No delivery waits: deliveries are still taken.
/// assert!(backlog.takes_deliveries(false));
/// ```
#[derive(Debug)]
pub struct EventBacklog {
    waiting: VecDeque<(Event, Source)>,
    /// How many of `waiting` are deliveries.
    deliveries: usize,
    /// How many of `waiting` host calls produced.
    from_host: usize,
    /// Where events emitted now come from.
    source: Source,
    /// The host channel's capacity.
    capacity: usize,
}

impl EventBacklog {
    /// An empty backlog for a host channel of `capacity` events.
    pub fn new(capacity: usize) -> Self {
        EventBacklog {
            waiting: VecDeque::new(),
            deliveries: 0,
            from_host: 0,
            source: Source::Node,
            capacity,
        }
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// How many of the waiting events are deliveries.
    pub fn deliveries(&self) -> usize {
        self.deliveries
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether the loop takes network input that may bring deliveries now:
    /// not while a delivery waits, unless `leaving`. Other network input is
    /// always taken.
    pub fn takes_deliveries(&self, leaving: bool) -> bool {
        self.deliveries == 0 || leaving
    }

    /// Whether host calls must wait for the host to read, unless `leaving`.
    pub fn stalled(&self, leaving: bool) -> bool {
        !leaving && self.from_host >= self.capacity
    }

    /// Marks the start of a host call: the events it produces count towards
    /// [`stalled`](EventBacklog::stalled).
    pub fn begin_host_call(&mut self) {
        self.source = Source::Host;
    }

    /// Marks the end of a host call.
    pub fn end_host_call(&mut self) {
        self.source = Source::Node;
    }

    /// Hands `event` to the host with `offer` (a send that does not wait),
    /// or keeps it: behind the others once any wait, so order holds.
    pub fn emit(&mut self, event: Event, offer: impl FnOnce(Event) -> Offer) {
        if !self.waiting.is_empty() {
            return self.keep(event);
        }
        match offer(event) {
            Offer::Taken | Offer::Gone => {}
            Offer::Full(event) => self.keep(event),
        }
    }

    fn keep(&mut self, event: Event) {
        self.deliveries += usize::from(matches!(event, Event::Deliver(_)));
        self.from_host += usize::from(self.source == Source::Host);
        self.waiting.push_back((event, self.source));
    }

    /// Hands waiting events over, oldest first, until the channel is full.
    pub fn flush(&mut self, mut offer: impl FnMut(Event) -> Offer) {
        while let Some((event, source)) = self.pop() {
            match offer(event) {
                Offer::Taken => {}
                Offer::Full(event) => return self.push_front(event, source),
                Offer::Gone => return self.clear(),
            }
        }
    }

    /// The oldest waiting event, for a loop that has waited for room in the
    /// channel itself and now sends it.
    pub fn take_oldest(&mut self) -> Option<Event> {
        self.pop().map(|(event, _)| event)
    }

    fn pop(&mut self) -> Option<(Event, Source)> {
        let (event, source) = self.waiting.pop_front()?;
        self.deliveries -= usize::from(matches!(event, Event::Deliver(_)));
        self.from_host -= usize::from(source == Source::Host);
        Some((event, source))
    }

    fn push_front(&mut self, event: Event, source: Source) {
        self.deliveries += usize::from(matches!(event, Event::Deliver(_)));
        self.from_host += usize::from(source == Source::Host);
        self.waiting.push_front((event, source));
    }

    /// Forgets every waiting event: the host stopped reading for good.
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.deliveries = 0;
        self.from_host = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Delivery;
    use crate::wire::messages::Qos;
    use crate::NodeId;

    fn event(n: u32) -> Event {
        Event::MemberLeft {
            node: NodeId::new(&format!("n{n}")).unwrap(),
        }
    }

    fn delivery(n: u64) -> Event {
        Event::Deliver(Delivery {
            origin: NodeId::new("origin").unwrap(),
            incarnation: crate::Incarnation(1),
            topic: crate::routing::TopicName::new("t").unwrap(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: Qos::AtLeastOnce,
            retain: false,
            properties: None,
            seq: n,
        })
    }

    /// A channel of `capacity` as a vector.
    fn offer_to(channel: &mut Vec<Event>, capacity: usize) -> impl FnMut(Event) -> Offer + '_ {
        move |event| {
            if channel.len() < capacity {
                channel.push(event);
                Offer::Taken
            } else {
                Offer::Full(event)
            }
        }
    }

    #[test]
    fn events_wait_in_order_and_flush_oldest_first() {
        let mut backlog = EventBacklog::new(2);
        let mut channel = Vec::new();
        for n in 0..5 {
            backlog.emit(event(n), offer_to(&mut channel, 2));
        }
        assert_eq!(channel, [event(0), event(1)]);
        assert_eq!(backlog.len(), 3);
        channel.clear();
        backlog.flush(offer_to(&mut channel, 2));
        assert_eq!(channel, [event(2), event(3)]);
        channel.clear();
        // A new event goes behind the one still waiting.
        backlog.emit(event(5), offer_to(&mut channel, 2));
        assert!(channel.is_empty());
        backlog.flush(offer_to(&mut channel, 2));
        assert_eq!(channel, [event(4), event(5)]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn waiting_deliveries_stop_only_more_deliveries() {
        let mut backlog = EventBacklog::new(1);
        let mut channel = Vec::new();
        // Membership events waiting do not stop deliveries.
        for n in 0..3 {
            backlog.emit(event(n), offer_to(&mut channel, 1));
        }
        assert!(backlog.takes_deliveries(false));
        // A delivery waiting does, until the host has read it.
        backlog.emit(delivery(1), offer_to(&mut channel, 1));
        backlog.emit(delivery(2), offer_to(&mut channel, 1));
        assert_eq!(backlog.deliveries(), 2);
        assert!(!backlog.takes_deliveries(false));
        assert!(backlog.takes_deliveries(true), "a leave still finishes");
        assert!(!backlog.stalled(false), "the network never stalls the host");
        let mut read = Vec::new();
        while !backlog.takes_deliveries(false) {
            channel.clear();
            backlog.flush(offer_to(&mut channel, 1));
            read.append(&mut channel);
        }
        assert_eq!(read, [event(1), event(2), delivery(1), delivery(2)]);
    }

    #[test]
    fn the_hosts_own_calls_stall_it_after_a_channel_of_events() {
        let mut backlog = EventBacklog::new(2);
        let mut channel = Vec::new();
        for n in 0..10 {
            backlog.emit(event(n), offer_to(&mut channel, 2));
        }
        assert!(!backlog.stalled(false), "a burst from the node alone");
        backlog.begin_host_call();
        backlog.emit(delivery(1), offer_to(&mut channel, 2));
        assert!(!backlog.stalled(false));
        backlog.emit(delivery(2), offer_to(&mut channel, 2));
        backlog.end_host_call();
        assert!(backlog.stalled(false));
        assert!(!backlog.stalled(true));
        // The host's calls wait until it has read what they added.
        let mut read = 0;
        while backlog.stalled(false) {
            channel.clear();
            backlog.flush(offer_to(&mut channel, 2));
            read += channel.len();
        }
        assert_eq!(read, 10);
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_host_gone_for_good_clears_the_backlog() {
        let mut backlog = EventBacklog::new(1);
        let mut channel = Vec::new();
        backlog.emit(event(0), offer_to(&mut channel, 1));
        backlog.emit(delivery(1), offer_to(&mut channel, 1));
        backlog.flush(|_| Offer::Gone);
        assert!(backlog.is_empty());
        assert!(backlog.takes_deliveries(false));
        backlog.emit(event(2), |_| Offer::Gone);
        assert!(
            backlog.is_empty(),
            "nothing is kept for a reader that is gone"
        );
    }
}
