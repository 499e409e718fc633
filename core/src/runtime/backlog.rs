//! Events waiting for the host, and the backpressure they exert.

use std::collections::VecDeque;

use crate::node::Event;

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

/// Events produced while the host's channel was full, oldest first, and the
/// run loop's rules for them.
///
/// A runtime hands every event of the node to the host through a bounded
/// channel. When the host does not keep up, events wait here rather than
/// being dropped (a dropped delivery would be a lost QoS 1 message), and
/// the loop pushes back:
///
/// 1. while anything waits, it takes no network input
///    ([`takes_network`](EventBacklog::takes_network)), so peers' requests
///    wait and, after their timeout, are retried by their senders; host
///    calls and timers still run, so a host that publishes from the same
///    thread that reads events does not deadlock;
/// 2. once the host's own calls and the timers alone have added another
///    channel's worth of events (not a burst from one network input, which
///    stops by rule 1), host calls and timers wait too
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
/// assert!(!backlog.takes_network(false));
/// ```
#[derive(Debug)]
pub struct EventBacklog {
    waiting: VecDeque<Event>,
    /// How much of `waiting` one network input added in one go.
    burst: usize,
    /// The host channel's capacity.
    capacity: usize,
}

impl EventBacklog {
    /// An empty backlog for a host channel of `capacity` events.
    pub fn new(capacity: usize) -> Self {
        EventBacklog {
            waiting: VecDeque::new(),
            burst: 0,
            capacity,
        }
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether the loop takes network input now: not while events wait,
    /// unless `leaving`.
    pub fn takes_network(&self, leaving: bool) -> bool {
        self.waiting.is_empty() || leaving
    }

    /// Whether host calls and timers must wait for the host to read, unless
    /// `leaving`.
    pub fn stalled(&self, leaving: bool) -> bool {
        !leaving && self.waiting.len() >= self.burst + self.capacity
    }

    /// Hands `event` to the host with `offer` (a send that does not wait),
    /// or keeps it: behind the others once any wait, so order holds.
    pub fn emit(&mut self, event: Event, offer: impl FnOnce(Event) -> Offer) {
        if !self.waiting.is_empty() {
            return self.waiting.push_back(event);
        }
        match offer(event) {
            Offer::Taken | Offer::Gone => {}
            Offer::Full(event) => self.waiting.push_back(event),
        }
    }

    /// Marks the end of a network input: what it left waiting counts as a
    /// burst, which does not stall the host's own calls.
    pub fn end_network_input(&mut self) {
        self.burst = self.waiting.len();
    }

    /// Hands waiting events over, oldest first, until the channel is full.
    pub fn flush(&mut self, mut offer: impl FnMut(Event) -> Offer) {
        while let Some(event) = self.take_oldest() {
            match offer(event) {
                Offer::Taken => {}
                Offer::Full(event) => return self.waiting.push_front(event),
                Offer::Gone => return self.clear(),
            }
        }
    }

    /// The oldest waiting event, for a loop that has waited for room in the
    /// channel itself and now sends it.
    pub fn take_oldest(&mut self) -> Option<Event> {
        let event = self.waiting.pop_front();
        self.burst = self.burst.min(self.waiting.len());
        event
    }

    /// Forgets every waiting event: the host stopped reading for good.
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.burst = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn event(n: u32) -> Event {
        Event::MemberLeft {
            node: NodeId::new(&format!("n{n}")).unwrap(),
        }
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
    fn a_network_burst_stops_network_input_but_does_not_stall_the_host() {
        let mut backlog = EventBacklog::new(1);
        let mut channel = Vec::new();
        for n in 0..10 {
            backlog.emit(event(n), offer_to(&mut channel, 1));
        }
        backlog.end_network_input();
        assert!(!backlog.takes_network(false));
        assert!(backlog.takes_network(true), "a leave still finishes");
        assert!(
            !backlog.stalled(false),
            "a burst alone does not stall the host"
        );
        // The host's own calls add a channel's worth more: now it waits.
        backlog.emit(event(10), offer_to(&mut channel, 1));
        assert!(backlog.stalled(false));
        assert!(!backlog.stalled(true));
        // The burst shrinks with the backlog as the host reads, so the
        // host's calls wait until it has read what waits.
        let mut read = 0;
        while backlog.stalled(false) {
            channel.clear();
            backlog.flush(offer_to(&mut channel, 1));
            read += channel.len();
        }
        assert_eq!(read, 10);
        assert!(backlog.takes_network(false));
    }

    #[test]
    fn a_host_gone_for_good_clears_the_backlog() {
        let mut backlog = EventBacklog::new(1);
        let mut channel = Vec::new();
        backlog.emit(event(0), offer_to(&mut channel, 1));
        backlog.emit(event(1), offer_to(&mut channel, 1));
        backlog.flush(|_| Offer::Gone);
        assert!(backlog.is_empty());
        backlog.emit(event(2), |_| Offer::Gone);
        assert!(
            backlog.is_empty(),
            "nothing is kept for a reader that is gone"
        );
    }
}
