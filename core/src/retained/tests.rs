use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::wire::messages::Qos;
use crate::wire::retained::RetainedRequest;

const BUDGET: usize = 1 << 20;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn write(topic: &str, clock: u64, origin: &str, payload: &str) -> RetainedEntry {
    RetainedEntry {
        topic: TopicName::new(topic).unwrap(),
        stamp: RetainStamp {
            clock,
            origin: id(origin),
        },
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: Qos::AtLeastOnce,
        properties: None,
    }
}

fn set(limit: usize) -> RetainedSet {
    RetainedSet::new(id("me"), 1, limit, 16)
}

fn visible(set: &RetainedSet) -> Vec<(String, String)> {
    set.retained()
        .map(|m| {
            (
                m.topic.as_str().to_owned(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )
        })
        .collect()
}

#[test]
fn the_highest_stamp_wins_and_ties_go_to_the_higher_origin() {
    let mut s = set(10);
    assert!(matches!(
        s.merge(write("a", 5, "w1", "one"), BUDGET, Instant::ZERO),
        Merged::Set(_)
    ));
    assert_eq!(
        s.merge(write("a", 4, "w9", "older"), BUDGET, Instant::ZERO),
        Merged::Unchanged
    );
    assert!(matches!(
        s.merge(write("a", 5, "w2", "tie"), BUDGET, Instant::ZERO),
        Merged::Set(_)
    ));
    assert_eq!(
        s.merge(write("a", 5, "w1", "one"), BUDGET, Instant::ZERO),
        Merged::Unchanged
    );
    assert_eq!(visible(&s), [("a".to_string(), "tie".to_string())]);
    assert_eq!(s.clock(), 5, "the clock jumps past what it merged");
}

#[test]
fn a_clear_is_kept_so_an_older_set_cannot_bring_the_message_back() {
    let mut s = set(10);
    s.merge(write("a", 5, "w1", "on"), BUDGET, Instant::ZERO);
    assert_eq!(
        s.merge(write("a", 6, "w2", ""), BUDGET, Instant::ZERO),
        Merged::Cleared(TopicName::new("a").unwrap())
    );
    assert_eq!(
        s.merge(write("a", 5, "w3", "late"), BUDGET, Instant::ZERO),
        Merged::Unchanged
    );
    assert!(s.is_empty());
    assert_eq!(s.tombstones(), 1);
    // A clear of a topic that shows nothing is still news to pass on.
    assert_eq!(
        s.merge(write("b", 6, "w2", ""), BUDGET, Instant::ZERO),
        Merged::Tombstone
    );
}

#[test]
fn tombstones_are_forgotten_by_age_and_beyond_their_bound() {
    let mut s = RetainedSet::new(id("me"), 1, 100, 3);
    for i in 0..5u64 {
        s.merge(
            write(&format!("t/{i}"), 10 + i, "w1", ""),
            BUDGET,
            Instant::from_millis(i),
        );
    }
    assert_eq!(s.tombstones(), 3, "the bound holds while merging");
    assert!(s.stamp_of(&TopicName::new("t/0").unwrap()).is_none());
    assert!(s.stamp_of(&TopicName::new("t/4").unwrap()).is_some());
    let forgotten = s.forget_tombstones(Instant::from_millis(1003), Duration::from_secs(1));
    assert_eq!(forgotten, 2, "t/2 and t/3 are a second old");
    assert_eq!(s.tombstones(), 1);
}

#[test]
fn a_full_set_keeps_the_lowest_stamps_whatever_the_order() {
    let writes = [
        write("a", 1, "w1", "a"),
        write("b", 2, "w1", "b"),
        write("c", 3, "w1", "c"),
    ];
    let mut forward = set(2);
    let outcomes: Vec<Merged> = writes
        .iter()
        .map(|w| forward.merge(w.clone(), BUDGET, Instant::ZERO))
        .collect();
    assert_eq!(
        outcomes[2],
        Merged::Refused(TopicName::new("c").unwrap(), RetainRefusal::Limit)
    );
    let mut backward = set(2);
    let outcomes: Vec<Merged> = writes
        .iter()
        .rev()
        .map(|w| backward.merge(w.clone(), BUDGET, Instant::ZERO))
        .collect();
    assert!(matches!(&outcomes[2], Merged::SetEvicting(m, victim)
        if m.topic.as_str() == "a" && victim.as_str() == "c"));
    assert_eq!(visible(&forward), visible(&backward));
    assert_eq!(forward.digest(), backward.digest());
    assert_eq!(forward.len(), 2);
}

#[test]
fn a_nodes_own_publish_beyond_the_limit_is_refused() {
    let mut s = set(1);
    let first = Message::new("a", "1").unwrap().retained();
    let second = Message::new("b", "2").unwrap().retained();
    assert!(s.publish(&first, BUDGET, Instant::ZERO).is_ok());
    assert_eq!(
        s.publish(&second, BUDGET, Instant::ZERO),
        Err(RetainRefusal::Limit)
    );
    // Replacing a held topic needs no room.
    let again = Message::new("a", "3").unwrap().retained();
    assert!(s.publish(&again, BUDGET, Instant::ZERO).is_ok());
    assert_eq!(visible(&s), [("a".to_string(), "3".to_string())]);
}

#[test]
fn an_entry_that_fits_no_page_is_refused() {
    let mut s = set(10);
    let big = Message::new("a", vec![b'x'; 2000]).unwrap().retained();
    assert_eq!(
        s.publish(&big, page_budget(2048), Instant::ZERO),
        Err(RetainRefusal::TooLarge)
    );
    assert!(s.publish(&big, page_budget(4096), Instant::ZERO).is_ok());
}

#[test]
fn the_digest_is_empty_for_an_empty_set_and_ignores_tombstones() {
    let mut s = set(10);
    assert_eq!(s.digest(), "");
    s.merge(write("a", 1, "w1", ""), BUDGET, Instant::ZERO);
    assert_eq!(s.digest(), "");
    s.merge(write("b", 2, "w1", "x"), BUDGET, Instant::ZERO);
    assert_eq!(s.digest().len(), 64);
}

fn arb_write() -> impl Strategy<Value = RetainedEntry> {
    (
        0..4u8,
        1..6u64,
        0..3u8,
        prop_oneof![Just(""), Just("x"), Just("y")],
    )
        .prop_map(|(topic, clock, origin, payload)| {
            write(&format!("t/{topic}"), clock, &format!("w{origin}"), payload)
        })
}

/// A stamp names one write: drops later writes that reuse one (the
/// generator makes them; nodes never do).
fn unique(mut writes: Vec<RetainedEntry>) -> Vec<RetainedEntry> {
    let mut seen = std::collections::BTreeSet::new();
    writes.retain(|w| seen.insert(w.stamp.clone()));
    writes
}

fn shuffled(writes: &[RetainedEntry], seed: u64) -> Vec<RetainedEntry> {
    let mut out = writes.to_vec();
    // A cheap deterministic shuffle.
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

proptest! {
    /// Without a limit to choose by, two nodes that merged the same writes
    /// in any order hold the same set: the last writer of each topic.
    #[test]
    fn merging_is_order_independent(
        writes in prop::collection::vec(arb_write(), 0..24),
        seed in any::<u64>(),
    ) {
        let writes = unique(writes);
        let mut a = set(100);
        let mut b = set(100);
        for w in &writes {
            a.merge(w.clone(), BUDGET, Instant::ZERO);
        }
        for w in shuffled(&writes, seed) {
            b.merge(w, BUDGET, Instant::ZERO);
        }
        prop_assert_eq!(visible(&a), visible(&b));
        prop_assert_eq!(a.digest(), b.digest());
        let mut expected: BTreeMap<String, (RetainStamp, String)> = BTreeMap::new();
        for w in &writes {
            let held = expected.get(w.topic.as_str()).map(|(s, _)| s.clone());
            if held.is_none_or(|s| s < w.stamp) {
                let payload = String::from_utf8_lossy(&w.payload).into_owned();
                expected.insert(w.topic.as_str().to_owned(), (w.stamp.clone(), payload));
            }
        }
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .filter(|(_, (_, p))| !p.is_empty())
            .map(|(t, (_, p))| (t, p))
            .collect();
        prop_assert_eq!(visible(&a), expected);
        // Merging a copy of the other's entries changes nothing.
        for e in b.entries() {
            let merged = a.merge(e, BUDGET, Instant::ZERO);
            prop_assert!(matches!(merged, Merged::Unchanged), "{:?}", merged);
        }
    }

    /// With a limit, nodes that merged the same writes in other orders may
    /// hold different topics for a moment; exchanging their whole sets (what
    /// a digest mismatch in a heartbeat starts) brings them to one set, of
    /// at most the limit.
    #[test]
    fn full_sets_exchanged_agree_within_the_limit(
        writes in prop::collection::vec(arb_write(), 0..24),
        limit in 1usize..5,
        seed in any::<u64>(),
    ) {
        let writes = unique(writes);
        let mut a = set(limit);
        let mut b = set(limit);
        for w in &writes {
            a.merge(w.clone(), BUDGET, Instant::ZERO);
        }
        for w in shuffled(&writes, seed) {
            b.merge(w, BUDGET, Instant::ZERO);
        }
        for _ in 0..4 {
            if a.digest() == b.digest() {
                break;
            }
            let from_a: Vec<RetainedEntry> = a.entries().collect();
            for e in b.entries().collect::<Vec<_>>() {
                a.merge(e, BUDGET, Instant::ZERO);
            }
            for e in from_a {
                b.merge(e, BUDGET, Instant::ZERO);
            }
        }
        prop_assert_eq!(visible(&a), visible(&b));
        prop_assert!(a.len() <= limit);
        let published: Vec<(String, String)> = writes
            .iter()
            .map(|w| (w.topic.as_str().to_owned(), String::from_utf8_lossy(&w.payload).into_owned()))
            .collect();
        for held in visible(&a) {
            prop_assert!(published.contains(&held), "{:?} was never published", held);
        }
    }

    /// Pages hold every entry once, in order, and each fits the budget.
    #[test]
    fn pages_hold_every_entry_and_fit(
        sizes in prop::collection::vec(0usize..900, 0..40),
        max_body in 1024usize..4096,
    ) {
        let mut s = set(1000);
        let budget = page_budget(max_body);
        let mut kept = 0;
        for (i, size) in sizes.iter().enumerate() {
            let m = Message::new(&format!("t/{i:03}"), vec![b'x'; size + 1]).unwrap().retained();
            if s.publish(&m, budget, Instant::ZERO).is_ok() {
                kept += 1;
            }
        }
        let pages = Pager::pages(s.entries(), budget);
        let mut seen = Vec::new();
        for page in &pages {
            prop_assert!(page.len() + PAGE_ENVELOPE - 14 <= max_body);
            let request: RetainedRequest = serde_json::from_slice(page).unwrap();
            prop_assert!(!request.entries.is_empty());
            seen.extend(request.entries);
        }
        prop_assert_eq!(seen.len(), kept);
        prop_assert_eq!(seen, s.entries().collect::<Vec<_>>());
    }
}
