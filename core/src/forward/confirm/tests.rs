use super::*;
use crate::id::Incarnation;
use crate::routing::TopicName;
use crate::wire::messages::Target;
use proptest::prelude::*;
use std::collections::BTreeSet;

const RESEND: Duration = Duration::from_secs(3);
const EXPIRY: Duration = Duration::from_secs(60);

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn me() -> NodeId {
    node("origin")
}

fn message(qos: Qos, targets: &[(&str, u64)]) -> ForwardedMessage {
    ForwardedMessage {
        origin: me(),
        incarnation: Incarnation(7),
        topic: TopicName::new("t").unwrap(),
        payload: "p".into(),
        qos,
        retain: false,
        properties: None,
        targets: targets
            .iter()
            .map(|(n, seq)| Target {
                node: node(n),
                seq: *seq,
            })
            .collect(),
    }
}

fn confirmation(to: &str, from: u64, through: u64) -> Confirmation {
    Confirmation {
        origin: me(),
        incarnation: Incarnation(7),
        to: node(to),
        from,
        through,
    }
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn admit(o: &mut Outstanding, now: Instant, targets: &[(&str, u64)]) -> (PublishId, Admitted) {
    let id = o.next_id();
    let admitted = o.admit(now, Some(id), message(Qos::AtLeastOnce, targets));
    (id, admitted)
}

#[test]
fn a_publish_settles_when_its_last_destination_confirms() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    let (id, admitted) = admit(&mut o, at(0), &[("a", 1), ("b", 1)]);
    assert!(matches!(admitted, Admitted::Send(_)));
    assert!(o.confirm(&confirmation("a", 1, 1)).is_empty());
    assert_eq!(o.unconfirmed(), 1);
    let settled = o.confirm(&confirmation("b", 1, 1));
    assert_eq!(
        settled,
        vec![Settled {
            id,
            confirmed: vec![node("a"), node("b")],
            failure: None,
        }]
    );
    assert_eq!(o.unconfirmed(), 0);
    // A confirmation repeated (the destination took a resent copy again)
    // settles nothing twice.
    assert!(o.confirm(&confirmation("b", 1, 1)).is_empty());
}

#[test]
fn confirmations_of_unknown_or_inverted_ranges_change_nothing() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    admit(&mut o, at(0), &[("a", 5)]);
    assert!(o.confirm(&confirmation("b", 1, 10)).is_empty());
    assert!(o.confirm(&confirmation("a", 6, 4)).is_empty());
    assert!(o.confirm(&confirmation("a", 6, 9)).is_empty());
    assert_eq!(o.unconfirmed(), 1);
    assert_eq!(o.confirm(&confirmation("a", 1, u64::MAX)).len(), 1);
}

#[test]
fn the_window_holds_the_publish_beyond_it_until_the_oldest_is_confirmed() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    for seq in 1..=WINDOW {
        assert!(matches!(
            admit(&mut o, at(0), &[("a", seq)]).1,
            Admitted::Send(_)
        ));
    }
    assert!(!o.is_busy());
    let (held, admitted) = admit(&mut o, at(1), &[("a", WINDOW + 1)]);
    assert!(matches!(admitted, Admitted::Held));
    assert!(o.is_busy());
    // Another destination's message waits too: publish order is kept.
    let id = o.next_id();
    assert!(matches!(
        o.admit(at(1), Some(id), message(Qos::AtLeastOnce, &[("b", 1)])),
        Admitted::Held
    ));
    let state: Vec<(NodeId, usize, bool)> = o
        .per_destination()
        .map(|(n, count, busy)| (n.clone(), count, busy))
        .collect();
    assert_eq!(state, vec![(node("a"), WINDOW as usize, true)]);
    assert!(o.release(at(2)).is_empty());
    o.confirm(&confirmation("a", 1, 1));
    let released = o.release(at(2));
    assert_eq!(released.len(), 2);
    assert_eq!(released[0].targets[0].seq, WINDOW + 1);
    assert!(!o.is_busy());
    assert!(o.entries.get(held).is_some());
}

#[test]
fn qos0_messages_wait_behind_the_window_up_to_their_limit() {
    let mut o = Outstanding::new(RESEND, EXPIRY).with_waiting_limit(2);
    for seq in 1..=WINDOW {
        admit(&mut o, at(0), &[("a", seq)]);
    }
    for seq in 1..=2 {
        let admitted = o.admit(
            at(0),
            None,
            message(Qos::AtMostOnce, &[("a", WINDOW + seq)]),
        );
        assert!(matches!(admitted, Admitted::Held));
    }
    let admitted = o.admit(at(0), None, message(Qos::AtMostOnce, &[("a", WINDOW + 3)]));
    assert!(matches!(admitted, Admitted::Dropped(_)));
    let (settled, waiting) = o.abandon();
    assert_eq!(settled.len(), WINDOW as usize);
    assert!(settled.iter().all(|s| s
        .failure
        .as_ref()
        .is_some_and(|(r, _)| *r == ConfirmFailure::Left)));
    assert_eq!(waiting.len(), 2);
    assert_eq!(o.waiting(), 0);
}

#[test]
fn unconfirmed_messages_go_again_after_resend_after_and_expire_after_expiry() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    let (id, _) = admit(&mut o, at(0), &[("a", 1), ("b", 1)]);
    o.confirm(&confirmation("a", 1, 1));
    let (resend, settled) = o.tick(at(2_999), |_| false);
    assert!(resend.is_empty() && settled.is_empty());
    let (resend, settled) = o.tick(at(3_000), |_| false);
    assert!(settled.is_empty());
    // Only the destination that has not confirmed is sent to again.
    assert_eq!(resend.len(), 1);
    assert_eq!(
        resend[0].targets,
        vec![Target {
            node: node("b"),
            seq: 1
        }]
    );
    let (resend, settled) = o.tick(at(60_000), |_| false);
    assert!(resend.is_empty());
    assert_eq!(
        settled,
        vec![Settled {
            id,
            confirmed: vec![node("a")],
            failure: Some((ConfirmFailure::Expired, vec![node("b")])),
        }]
    );
    assert_eq!(o.unconfirmed(), 0);
}

#[test]
fn a_path_change_sends_everything_again_except_to_destinations_gone() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    let (gone_only, _) = admit(&mut o, at(0), &[("gone", 1)]);
    admit(&mut o, at(0), &[("a", 1), ("gone", 2)]);
    let (resend, settled) = o.resend_all(at(10), |n| n.as_str() == "gone");
    assert_eq!(
        settled,
        vec![Settled {
            id: gone_only,
            confirmed: vec![],
            failure: Some((ConfirmFailure::DestinationGone, vec![node("gone")])),
        }]
    );
    assert_eq!(resend.len(), 1);
    assert_eq!(
        resend[0].targets,
        vec![Target {
            node: node("a"),
            seq: 1
        }]
    );
    // The resend restarted its timer.
    assert!(o.tick(at(3_009), |_| false).0.is_empty());
    assert_eq!(o.tick(at(3_010), |_| false).0.len(), 1);
}

#[test]
fn a_destination_that_restarted_fails_sent_and_waiting_publishes() {
    let mut o = Outstanding::new(RESEND, EXPIRY);
    for seq in 1..=WINDOW {
        admit(&mut o, at(0), &[("a", seq)]);
    }
    let (held, admitted) = admit(&mut o, at(0), &[("a", WINDOW + 1), ("b", 1)]);
    assert!(matches!(admitted, Admitted::Held));
    let settled = o.fail_destination(&node("a"));
    assert_eq!(settled.len(), WINDOW as usize);
    // The held publish still waits for b, which nothing holds back now.
    assert_eq!(o.unconfirmed(), 1);
    let released = o.release(at(1));
    assert_eq!(released.len(), 1);
    assert_eq!(
        released[0].targets,
        vec![Target {
            node: node("b"),
            seq: 1
        }]
    );
    let settled = o.confirm(&confirmation("b", 1, 1));
    assert_eq!(settled[0].id, held);
    assert_eq!(
        settled[0].failure,
        Some((ConfirmFailure::DestinationGone, vec![node("a")]))
    );
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        qos: u8,
        targets: Vec<usize>,
    },
    Confirm {
        dest: usize,
        from: u64,
        len: u64,
    },
    Tick {
        advance_ms: u64,
        gone: Option<usize>,
    },
    ResendAll {
        gone: Option<usize>,
    },
    Restarted(usize),
}

const DESTS: [&str; 3] = ["a", "b", "c"];

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, prop::collection::btree_set(0..3usize, 0..=3))
            .prop_map(|(qos, t)| Op::Publish { qos, targets: t.into_iter().collect() }),
        3 => (0..3usize, 0..1200u64, 0..40u64)
            .prop_map(|(dest, from, len)| Op::Confirm { dest, from, len }),
        1 => (0..5_000u64, prop::option::of(0..3usize))
            .prop_map(|(advance_ms, gone)| Op::Tick { advance_ms, gone }),
        1 => prop::option::of(0..3usize).prop_map(|gone| Op::ResendAll { gone }),
        1 => (0..3usize).prop_map(Op::Restarted),
    ]
}

proptest! {
    /// Whatever happens, each tracked publish settles exactly once, naming
    /// each of its destinations once; nothing is sent beyond a window; and
    /// abandoning settles the rest.
    #[test]
    fn every_publish_settles_once_and_windows_hold(
        ops in prop::collection::vec(arb_op(), 0..400),
    ) {
        let mut o = Outstanding::new(RESEND, EXPIRY).with_waiting_limit(50);
        let mut now = at(0);
        let mut next_seq = [1u64; 3];
        let mut published: BTreeMap<PublishId, BTreeSet<NodeId>> = BTreeMap::new();
        let mut settled_ids: BTreeSet<PublishId> = BTreeSet::new();
        let mut check = |settled: Vec<Settled>,
                         published: &BTreeMap<PublishId, BTreeSet<NodeId>>|
         -> Result<(), TestCaseError> {
            for s in settled {
                prop_assert!(settled_ids.insert(s.id), "{:?} settled twice", s.id);
                let mut named: Vec<NodeId> = s.confirmed.clone();
                if let Some((_, failed)) = &s.failure {
                    prop_assert!(!failed.is_empty());
                    named.extend(failed.iter().cloned());
                }
                let named_set: BTreeSet<NodeId> = named.iter().cloned().collect();
                prop_assert_eq!(named_set.len(), named.len(), "a destination named twice");
                prop_assert_eq!(Some(&named_set), published.get(&s.id));
            }
            Ok(())
        };
        for op in ops {
            match op {
                Op::Publish { qos, targets } => {
                    let targets: Vec<(&str, u64)> = targets
                        .iter()
                        .map(|d| {
                            let seq = next_seq[*d];
                            next_seq[*d] += 1;
                            (DESTS[*d], seq)
                        })
                        .collect();
                    let qos = Qos::from_u8(qos).unwrap();
                    let id = Outstanding::tracks(qos).then(|| o.next_id());
                    if let Some(id) = id {
                        published.insert(id, targets.iter().map(|(n, _)| node(n)).collect());
                    }
                    let tracked = id.is_some();
                    let empty = targets.is_empty();
                    let _ = o.admit(now, id, message(qos, &targets));
                    if tracked && empty {
                        // The node settles a publish with no remote target at
                        // once; here it is simply confirmed by nobody.
                        published.remove(&id.unwrap());
                        o.entries.remove(id.unwrap());
                    }
                }
                Op::Confirm { dest, from, len } => {
                    let settled = o.confirm(&confirmation(DESTS[dest], from, from + len));
                    check(settled, &published)?;
                    let _ = o.release(now);
                }
                Op::Tick { advance_ms, gone } => {
                    now = now + Duration::from_millis(advance_ms);
                    let (_, settled) = o.tick(now, |n| gone.is_some_and(|g| n.as_str() == DESTS[g]));
                    check(settled, &published)?;
                    let _ = o.release(now);
                }
                Op::ResendAll { gone } => {
                    let (_, settled) =
                        o.resend_all(now, |n| gone.is_some_and(|g| n.as_str() == DESTS[g]));
                    check(settled, &published)?;
                    let _ = o.release(now);
                }
                Op::Restarted(d) => {
                    let settled = o.fail_destination(&node(DESTS[d]));
                    check(settled, &published)?;
                    let _ = o.release(now);
                }
            }
            for sent in o.by_destination.values() {
                let (Some(oldest), Some(newest)) = (sent.oldest(), sent.newest())
                else {
                    continue;
                };
                prop_assert!(newest - oldest < WINDOW, "window overrun: {oldest}..{newest}");
            }
        }
        let (settled, _) = o.abandon();
        check(settled, &published)?;
        let all: BTreeSet<PublishId> = published.keys().copied().collect();
        prop_assert_eq!(&settled_ids, &all, "every publish settled once");
        prop_assert_eq!(o.unconfirmed(), 0);
    }
}
