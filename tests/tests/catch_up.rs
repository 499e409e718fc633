//! Member lists repaired by deltas: a heartbeat that quotes a position in
//! the core's log of changes is answered with what changed after it, and
//! only a node without a usable position gets the whole list, counted as a
//! resync.

use bytes::Bytes;
use http::{Method, StatusCode};
use mqtt_cluster_core::node::Node;
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::{
    HeartbeatRequest, HeartbeatResponse, LogPosition, RegisterResponse,
};
use mqtt_cluster_core::Now;
use mqtt_cluster_fuzz_harness::fixture::{core_config, node, Signer};

const WORKERS: usize = 300;

/// A core with `WORKERS` registered workers, the signer of the first, and
/// the position its registration answer gave it.
fn crowded_core(now: Now) -> (Node, Vec<Signer>, LogPosition) {
    let mut core = node(core_config(), now, 1);
    let mut signers: Vec<Signer> = (0..WORKERS)
        .map(|i| Signer::new(&format!("w{i}"), 1))
        .collect();
    let mut first = None;
    for signer in &mut signers {
        let body = Bytes::from(format!(
            r#"{{"node":"{}","role":"worker","incarnation":1}}"#,
            signer.id
        ));
        let request = signer.request(Method::POST, "/register", body, now.wall);
        let response = core.handle_request(now, request);
        assert_eq!(response.status(), StatusCode::OK);
        let answer: RegisterResponse = serde_json::from_slice(response.body()).unwrap();
        first.get_or_insert(answer);
    }
    // The first worker's answer is long out of date: re-register it to get
    // a position near the end of the log.
    let signer = &mut signers[0];
    let body = Bytes::from(r#"{"node":"w0","role":"worker","incarnation":1}"#);
    let request = signer.request(Method::POST, "/register", body, now.wall);
    let answer: RegisterResponse =
        serde_json::from_slice(core.handle_request(now, request).body()).unwrap();
    assert!(!answer.partial);
    assert_eq!(answer.members.len(), WORKERS + 1);
    let at = LogPosition {
        incarnation: answer.core_incarnation,
        version: answer.members_at.expect("a complete answer has a position"),
    };
    (core, signers, at)
}

fn heartbeat(
    core: &mut Node,
    signer: &mut Signer,
    now: Now,
    digest: &str,
    seen: Option<LogPosition>,
) -> (HeartbeatResponse, usize) {
    let body = encode_json(&HeartbeatRequest {
        members_digest: digest.to_owned(),
        retained_digest: String::new(),
        members_seen: seen,
        routes_behind: false,
    });
    let request = signer.request(Method::POST, "/heartbeat", body, now.wall);
    let response = core.handle_request(now, request);
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.body().len();
    (serde_json::from_slice(response.body()).unwrap(), bytes)
}

#[test]
fn a_heartbeat_quoting_a_position_gets_only_the_changes_after_it() {
    let now = mqtt_cluster_fuzz_harness::fixture::at(1_000);
    let (mut core, mut signers, at) = crowded_core(now);
    let before = core.status().members_digest;
    // Two more members join after the worker's position.
    for name in ["late1", "late2"] {
        let mut late = Signer::new(name, 1);
        late.register(&mut core, now);
    }
    let (answer, bytes) = heartbeat(&mut core, &mut signers[0], now, &before, Some(at));
    assert!(answer.members.is_none(), "no whole list: {answer:?}");
    let changes = answer.member_changes.expect("the changes");
    let ids: Vec<&str> = changes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["late1", "late2"]);
    let moved = answer.members_at.expect("the position moved");
    assert_eq!(moved.version, at.version + 2);
    // The answer's size is the change's, not the cluster's.
    assert!(bytes < 1_000, "{bytes} bytes");
    assert_eq!(core.stats().member_resyncs, 0);

    // Quoting the new position: the digests agree, nothing is sent, not
    // even the position.
    let digest = core.status().members_digest;
    let (answer, _) = heartbeat(&mut core, &mut signers[0], now, &digest, Some(moved));
    assert_eq!(
        (answer.members, answer.member_changes, answer.members_at),
        (None, None, None)
    );
}

#[test]
fn a_node_without_a_usable_position_gets_the_whole_list_and_it_is_counted() {
    let now = mqtt_cluster_fuzz_harness::fixture::at(1_000);
    let (mut core, mut signers, at) = crowded_core(now);
    let stale = "0000000000000000";
    // No position at all.
    let (answer, _) = heartbeat(&mut core, &mut signers[1], now, stale, None);
    assert_eq!(answer.members.map(|m| m.len()), Some(WORKERS + 1));
    // A position from another life of the core.
    let other_life = LogPosition {
        incarnation: mqtt_cluster_core::Incarnation(at.incarnation.0 + 1),
        ..at
    };
    let (answer, _) = heartbeat(&mut core, &mut signers[2], now, stale, Some(other_life));
    assert_eq!(answer.members.map(|m| m.len()), Some(WORKERS + 1));
    // A position beyond the end of the log.
    let ahead = LogPosition {
        version: at.version + 1_000,
        ..at
    };
    let (answer, _) = heartbeat(&mut core, &mut signers[3], now, stale, Some(ahead));
    assert_eq!(answer.members.map(|m| m.len()), Some(WORKERS + 1));
    assert_eq!(core.stats().member_resyncs, 3);
    assert!(
        core.metrics()
            .lines()
            .any(|l| l == "mqtt_cluster_member_resyncs_total 3"),
        "{}",
        core.metrics()
    );
}

#[test]
fn a_worker_that_holds_every_change_and_still_differs_is_repaired_whole() {
    let now = mqtt_cluster_fuzz_harness::fixture::at(1_000);
    let (mut core, mut signers, _) = crowded_core(now);
    let current = LogPosition {
        incarnation: core.incarnation(),
        version: {
            // The position a heartbeat with the right digest is told.
            let digest = core.status().members_digest;
            let (answer, _) = heartbeat(&mut core, &mut signers[4], now, &digest, None);
            answer.members_at.expect("a position").version
        },
    };
    // It says it holds everything, but its digest is not the core's: a
    // worker mirrors its core, so only the whole list can repair it.
    let (answer, _) = heartbeat(
        &mut core,
        &mut signers[4],
        now,
        "0000000000000000",
        Some(current),
    );
    assert_eq!(answer.members.map(|m| m.len()), Some(WORKERS + 1));
    assert_eq!(core.stats().member_resyncs, 1);
}

#[test]
fn a_forgotten_tombstone_sends_a_peer_behind_it_the_whole_list() {
    // Below the position of a record since forgotten, the changes cannot
    // say that the record is gone: the list must go whole.
    use mqtt_cluster_core::membership::Membership;
    use mqtt_cluster_core::time::Instant;
    use mqtt_cluster_core::wire::messages::{MemberRecord, MemberState, Stamp};
    use mqtt_cluster_core::{NodeId, Role};
    use std::time::Duration;

    let id = |s: &str| NodeId::new(s).unwrap();
    let record = |name: &str, state, clock| MemberRecord {
        id: id(name),
        role: Role::Worker,
        incarnation: mqtt_cluster_core::Incarnation(1),
        state,
        home: id("c1"),
        address: None,
        stamp: Stamp {
            clock,
            by: id("c1"),
        },
    };
    let me = MemberRecord {
        role: Role::Core,
        ..record("c1", MemberState::Alive, 0)
    };
    let mut list = Membership::new(me, Instant::ZERO);
    list.merge(record("a", MemberState::Alive, 1), Instant::ZERO);
    let behind = list.version();
    list.merge(record("a", MemberState::Dead, 2), Instant::ZERO);
    list.merge(record("b", MemberState::Alive, 3), Instant::ZERO);
    let ids = |records: Vec<MemberRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.id.to_string()).collect()
    };
    assert_eq!(ids(list.changes_since(behind).unwrap()), ["a", "b"]);
    let forgotten =
        list.forget_tombstones(Instant::from_millis(10_000), Duration::from_secs(1), 100);
    assert_eq!(forgotten, 1);
    assert_eq!(list.changes_since(behind), None);
    // A peer that saw the tombstone needs only what came after it.
    assert_eq!(ids(list.changes_since(behind + 1).unwrap()), ["b"]);
}

mod whole_clusters {
    use std::time::Duration;

    use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation};
    use mqtt_cluster_tests::scenario::{build, settle_and_check};

    /// Two cores and twenty workers, each worker with a subscription.
    fn subscribed_cluster() -> (Simulation, mqtt_cluster_tests::scenario::Layout) {
        let mut sim = Simulation::new(5, NetworkModel::reliable());
        let layout = build(&mut sim, 2, 20, "");
        sim.run_for(Duration::from_secs(2)).unwrap();
        for (i, w) in layout.workers.iter().enumerate() {
            sim.act(Action::Subscribe {
                node: w.clone(),
                filter: format!("room/{i}/#"),
            })
            .unwrap();
        }
        sim.run_for(Duration::from_secs(2)).unwrap();
        (sim, layout)
    }

    fn resyncs(sim: &Simulation, layout: &mqtt_cluster_tests::scenario::Layout) -> (u64, u64) {
        layout
            .all()
            .iter()
            .filter_map(|id| sim.node(id).map(|n| n.stats()))
            .fold((0, 0), |(m, r), s| {
                (m + s.member_resyncs, r + s.route_resyncs)
            })
    }

    #[test]
    fn a_formed_cluster_repairs_nothing_whole() {
        let (mut sim, layout) = subscribed_cluster();
        let formed = resyncs(&sim, &layout);
        sim.run_for(Duration::from_secs(20)).unwrap();
        settle_and_check(&mut sim).unwrap();
        assert_eq!(resyncs(&sim, &layout), formed);
    }

    #[test]
    fn a_restarted_core_gets_every_route_again_in_counted_resyncs() {
        let (mut sim, layout) = subscribed_cluster();
        let before = resyncs(&sim, &layout);
        let core2 = layout.cores[1].clone();
        sim.act(Action::Crash {
            node: core2.clone(),
        })
        .unwrap();
        sim.run_for(Duration::from_millis(300)).unwrap();
        sim.act(Action::Restart {
            node: core2.clone(),
        })
        .unwrap();
        settle_and_check(&mut sim).unwrap();
        // The restarted core holds the whole table again, and the other
        // core sent it every route it speaks for once, as a resync.
        let routes = sim.node(&core2).unwrap().status().routes;
        assert_eq!(routes, layout.workers.len());
        let after = resyncs(&sim, &layout);
        assert!(after.1 > before.1, "{before:?} -> {after:?}");
    }
}
