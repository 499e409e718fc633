//! Two cores and three workers, pumped by hand in memory with a manual clock:
//! registration, agreement, failover, death, restart, rejection, and bad
//! requests that change nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use mqtt_cluster_core::auth::{Authenticator, Secret};
use mqtt_cluster_core::wire::messages::MemberState;
use mqtt_cluster_core::{Config, Event, Incarnation, NodeId, Phase, Role};
use mqtt_cluster_fuzz_harness::fixture::observable_state;
use mqtt_cluster_tests::pump::{PumpedCluster, Reachability};

const SECRET: &str = "correct-horse-battery-staple";
const HEARTBEAT: Duration = Duration::from_millis(100);
const SUSPECT: Duration = Duration::from_millis(300);
const DEAD: Duration = Duration::from_millis(1000);

fn core_config(name: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: true\nhost: 0.0.0.0\nport: 8884\nqueueLength: 1024\nqueuePolicy: 0\n\
         clusters:\n- http://core1:8884\n- http://core2:8884\n\
         nodeName: {name}\nsecret: {SECRET}\n\
         heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n"
    ))
    .unwrap()
}

fn worker_config(name: &str, first: &str, second: &str, secret: &str) -> Config {
    Config::from_yaml_str(&format!(
        "core: false\nclusters:\n- http://{first}:8884\n- http://{second}:8884\n\
         nodeName: {name}\nsecret: {secret}\n\
         heartbeatInterval: 100ms\nsuspectTimeout: 300ms\ndeadTimeout: 1s\n"
    ))
    .unwrap()
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

struct Five {
    cluster: PumpedCluster,
    cores: [NodeId; 2],
    workers: [NodeId; 3],
}

fn five() -> Five {
    let mut cluster = PumpedCluster::new();
    let c1 = cluster.add(core_config("core1"), 1);
    let c2 = cluster.add(core_config("core2"), 2);
    let w1 = cluster.add(worker_config("w1", "core1", "core2", SECRET), 3);
    let w2 = cluster.add(worker_config("w2", "core1", "core2", SECRET), 4);
    let w3 = cluster.add(worker_config("w3", "core2", "core1", SECRET), 5);
    cluster.run_for(Duration::from_secs(2));
    Five {
        cluster,
        cores: [c1, c2],
        workers: [w1, w2, w3],
    }
}

/// Every running node holds the same live members, all alive, and these are
/// exactly `expected`.
fn assert_agree(cluster: &PumpedCluster, expected: &[&NodeId]) {
    let statuses = cluster.statuses();
    let expected: BTreeSet<&NodeId> = expected.iter().copied().collect();
    let digests: BTreeSet<&String> = statuses
        .values()
        .filter(|s| s.phase == Phase::Running)
        .map(|s| &s.members_digest)
        .collect();
    assert_eq!(digests.len(), 1, "views differ: {statuses:#?}");
    for status in statuses.values().filter(|s| s.phase == Phase::Running) {
        let alive: BTreeSet<&NodeId> = status
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| &m.id)
            .collect();
        assert_eq!(alive, expected, "view of {}", status.node);
    }
}

#[test]
fn two_cores_and_three_workers_agree_on_membership() {
    let five = five();
    let all: Vec<&NodeId> = five.cores.iter().chain(five.workers.iter()).collect();
    assert_agree(&five.cluster, &all);
    for w in &five.workers {
        let status = five.cluster.node(w).status();
        assert!(status.core.is_some(), "{w} registered");
        assert!(five
            .cluster
            .events(w)
            .iter()
            .any(|e| matches!(e, Event::Registered { node_id, .. } if node_id == w)));
    }
    let c1 = five.cluster.node(&five.cores[0]).status();
    let roles: Vec<(String, Role)> = c1
        .members
        .iter()
        .map(|m| (m.id.to_string(), m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("core1".into(), Role::Core),
            ("core2".into(), Role::Core),
            ("w1".into(), Role::Worker),
            ("w2".into(), Role::Worker),
            ("w3".into(), Role::Worker),
        ]
    );
    // Cores learnt each other's addresses from `clusters`.
    let core2 = c1.members.iter().find(|m| m.id == five.cores[1]).unwrap();
    assert_eq!(core2.address.as_deref(), Some("http://core2:8884"));
}

#[test]
fn worker_fails_over_when_its_core_stops_answering_and_is_seen_alive_by_all() {
    let mut five = five();
    let [c1, c2] = five.cores.clone();
    assert_eq!(
        five.cluster.node(&five.workers[0]).status().core,
        Some(c1.clone())
    );
    five.cluster.set_reachability(&c1, Reachability::Silent);
    // Failover takes the suspect timeout, checked once per heartbeat.
    five.cluster.run_for(SUSPECT + HEARTBEAT * 2);
    for w in &five.workers {
        assert_eq!(
            five.cluster.node(w).status().core,
            Some(c2.clone()),
            "{w} moved to core2 in time"
        );
    }
    five.cluster.run_for(DEAD * 3);
    for w in &five.workers {
        assert_eq!(
            five.cluster.node(w).status().core,
            Some(c2.clone()),
            "{w} moved to core2"
        );
    }
    assert!(five
        .cluster
        .events(&five.workers[0])
        .contains(&Event::CoreUnreachable { core: c1.clone() }));
    let c2_view = five.cluster.node(&c2).status();
    let core1 = c2_view.members.iter().find(|m| m.id == c1).unwrap();
    assert_eq!(core1.state, MemberState::Dead);

    // core1 answers again: it comes back, and everyone agrees once more.
    five.cluster.set_reachability(&c1, Reachability::Up);
    five.cluster.run_for(DEAD * 3);
    let all: Vec<&NodeId> = five.cores.iter().chain(five.workers.iter()).collect();
    assert_agree(&five.cluster, &all);
}

#[test]
fn killed_worker_is_declared_dead_by_all_within_the_dead_timeout() {
    let mut five = five();
    let victim = five.workers[1].clone();
    five.cluster.kill(&victim);
    // Silence is measured from the last heartbeat, up to one interval before
    // the kill; detection runs once per interval.
    five.cluster.run_for(DEAD + HEARTBEAT * 2);
    for (node, status) in five.cluster.statuses() {
        let record = status.members.iter().find(|m| m.id == victim).unwrap();
        assert_eq!(record.state, MemberState::Dead, "{node} sees {victim} dead");
        let saw = five.cluster.events(&node).iter().any(|e| {
            *e == Event::MemberDead {
                node: victim.clone(),
            }
        });
        assert!(saw, "{node} was told");
    }
    let survivors: Vec<&NodeId> = five
        .cores
        .iter()
        .chain(five.workers.iter())
        .filter(|n| **n != victim)
        .collect();
    assert_agree(&five.cluster, &survivors);
}

#[test]
fn restarted_worker_comes_back_with_a_higher_incarnation() {
    let mut five = five();
    let w = five.workers[0].clone();
    let before = five.cluster.node(&w).incarnation();
    five.cluster.run_for(Duration::from_millis(50));
    five.cluster.restart(&w).unwrap();
    five.cluster.run_for(Duration::from_secs(1));
    let after = five.cluster.node(&w).incarnation();
    assert!(after > before, "{after} > {before}");
    for (node, status) in five.cluster.statuses() {
        let record = status.members.iter().find(|m| m.id == w).unwrap();
        assert_eq!(record.incarnation, after, "{node}");
        assert_eq!(record.state, MemberState::Alive, "{node}");
    }
    let all: Vec<&NodeId> = five.cores.iter().chain(five.workers.iter()).collect();
    assert_agree(&five.cluster, &all);
}

#[test]
fn worker_with_the_wrong_secret_is_rejected_and_stops() {
    let mut five = five();
    let intruder = five.cluster.add(
        worker_config("intruder", "core1", "core2", "not-the-secret"),
        9,
    );
    five.cluster.run_for(Duration::from_secs(1));
    let events = five.cluster.events(&intruder);
    assert!(
        matches!(events.first(), Some(Event::RegistrationRejected { core, .. }) if core == "http://core1:8884"),
        "{events:?}"
    );
    let node = five.cluster.node(&intruder);
    assert_eq!(node.status().phase, Phase::Rejected);
    assert_eq!(node.poll_timeout(), None);
    // Nobody let it in.
    for status in five
        .cluster
        .statuses()
        .values()
        .filter(|s| s.node != intruder)
    {
        assert!(status.members.iter().all(|m| m.id != intruder));
    }
}

/// Signs a request as `node` would.
fn signed(
    secret: &str,
    node: &str,
    counter: u64,
    wall_ms: u64,
    method: Method,
    path: &str,
    body: &str,
) -> Request<Bytes> {
    signed_as(
        secret,
        node,
        Incarnation(7),
        counter,
        wall_ms,
        method,
        path,
        body,
    )
}

#[allow(clippy::too_many_arguments)]
fn signed_as(
    secret: &str,
    node: &str,
    incarnation: Incarnation,
    counter: u64,
    wall_ms: u64,
    method: Method,
    path: &str,
    body: &str,
) -> Request<Bytes> {
    let auth = Authenticator::new(Some(Secret::new(secret)), Duration::from_secs(30), 16);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .body(Bytes::from(body.to_owned()))
        .unwrap();
    auth.sign(
        &mut request,
        &id(node),
        incarnation,
        counter,
        mqtt_cluster_core::WallTime::from_unix_millis(wall_ms),
    );
    request
}

#[test]
fn bad_requests_get_the_right_status_and_change_nothing() {
    let mut five = five();
    let core = five.cores[0].clone();
    let wall = five.cluster.now().wall.as_unix_millis();
    let register = r#"{"node":"mallory","role":"worker","incarnation":7}"#;
    let huge = "x".repeat(5 * 1024 * 1024);
    let cases: Vec<(&str, Request<Bytes>, StatusCode)> = vec![
        (
            "unsigned",
            Request::builder()
                .method(Method::POST)
                .uri("/register")
                .body(Bytes::from(register))
                .unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            signed(
                "wrong-secret-wrong",
                "mallory",
                1,
                wall,
                Method::POST,
                "/register",
                register,
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            "stale timestamp",
            signed(
                SECRET,
                "mallory",
                2,
                wall - 120_000,
                Method::POST,
                "/register",
                register,
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed body",
            signed(
                SECRET,
                "mallory",
                3,
                wall,
                Method::POST,
                "/register",
                "{not json",
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "body for another node",
            signed(
                SECRET,
                "mallory",
                4,
                wall,
                Method::POST,
                "/register",
                r#"{"node":"w1","role":"worker","incarnation":7}"#,
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized",
            signed(SECRET, "mallory", 5, wall, Method::POST, "/register", &huge),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "heartbeat from a stranger",
            signed(
                SECRET,
                "mallory",
                6,
                wall,
                Method::POST,
                "/heartbeat",
                r#"{"membersDigest":"00"}"#,
            ),
            StatusCode::CONFLICT,
        ),
        (
            "unknown path",
            signed(SECRET, "mallory", 7, wall, Method::POST, "/nope", "{}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            signed(SECRET, "mallory", 8, wall, Method::GET, "/register", ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "sync from a worker-less stranger",
            signed(
                SECRET,
                "mallory",
                9,
                wall,
                Method::POST,
                "/sync",
                r#"{"members":[]}"#,
            ),
            StatusCode::CONFLICT,
        ),
    ];
    for (name, request, expected) in cases {
        let before = observable_state(five.cluster.node(&core));
        let response = five.cluster.request(&core, request);
        assert_eq!(response.status(), expected, "{name}: {:?}", response.body());
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{name}: JSON error body"
        );
        assert_eq!(
            observable_state(five.cluster.node(&core)),
            before,
            "{name} changed the core's state"
        );
    }

    // A valid request goes through once; the same bytes again are a replay.
    let valid = signed(
        SECRET,
        "mallory",
        100,
        wall,
        Method::POST,
        "/register",
        register,
    );
    let replay = valid.clone();
    assert_eq!(five.cluster.request(&core, valid).status(), StatusCode::OK);
    let before = five.cluster.node(&core).status();
    let response = five.cluster.request(&core, replay);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        five.cluster.node(&core).status(),
        before,
        "replay changed the status"
    );

    // Health needs no credentials; workers serve no API.
    let health = Request::builder()
        .uri("/health")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(five.cluster.request(&core, health).status(), StatusCode::OK);
    let worker = five.workers[0].clone();
    let to_worker = signed(
        SECRET,
        "mallory",
        101,
        wall,
        Method::POST,
        "/register",
        register,
    );
    assert_eq!(
        five.cluster.request(&worker, to_worker).status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn a_worker_that_leaves_is_seen_left_by_everyone() {
    let mut five = five();
    let w = five.workers[2].clone();
    let now = five.cluster.now();
    five.cluster.node_mut(&w).leave(now);
    five.cluster.pump();
    assert!(five.cluster.events(&w).contains(&Event::Left));
    for (node, status) in five.cluster.statuses() {
        if node == w {
            continue;
        }
        let record = status.members.iter().find(|m| m.id == w).unwrap();
        assert_eq!(record.state, MemberState::Left, "{node}");
    }
}

#[test]
fn two_cores_registering_two_workers_at_the_same_moment_give_distinct_ids() {
    let mut cluster = PumpedCluster::new();
    cluster.add(core_config("core1"), 1);
    cluster.add(core_config("core2"), 2);
    cluster.run_for(Duration::from_millis(500));
    // Unnamed workers take their names from their seeds.
    let mut a = worker_config("x", "core1", "core2", SECRET);
    a.node_name = None;
    let mut b = worker_config("x", "core2", "core1", SECRET);
    b.node_name = None;
    let wa = cluster.add(a, 11);
    let wb = cluster.add(b, 12);
    assert_ne!(wa, wb);
    cluster.run_for(Duration::from_secs(1));
    let ids: BTreeSet<NodeId> = cluster
        .statuses()
        .values()
        .flat_map(|s| s.members.iter().map(|m| m.id.clone()))
        .collect();
    assert_eq!(ids.len(), 4);
    assert_agree(&cluster, &[&id("core1"), &id("core2"), &wa, &wb]);
}

/// A wall clock stepped ten minutes away and back again (NTP, a resumed VM),
/// on a worker or on a core, costs only the requests signed or checked while
/// it was wrong: once it is right again every request is accepted at once,
/// and nobody is suspected, declared dead or failed over.
#[test]
fn a_wall_clock_stepped_away_and_back_locks_nobody_out() {
    const TEN_MINUTES_MS: i64 = 10 * 60 * 1000;
    for (jumper, offset) in [
        ("w1", TEN_MINUTES_MS),
        ("w1", -TEN_MINUTES_MS),
        ("core1", TEN_MINUTES_MS),
        ("core1", -TEN_MINUTES_MS),
    ] {
        let Five {
            mut cluster,
            cores,
            workers,
        } = five();
        let jumper = id(jumper);
        let events_before: Vec<usize> = cores
            .iter()
            .chain(&workers)
            .map(|n| cluster.events(n).len())
            .collect();

        let from = cluster.log.len();
        cluster.set_wall_offset(&jumper, offset);
        cluster.run_for(HEARTBEAT);
        let refused = cluster.log[from..]
            .iter()
            .filter(|(_, _, _, status)| *status == 401)
            .count();
        assert!(
            refused > 0,
            "the step made no request stale ({jumper} {offset:+})"
        );

        cluster.set_wall_offset(&jumper, 0);
        let from = cluster.log.len();
        cluster.run_for(DEAD * 3);
        let refused: Vec<_> = cluster.log[from..]
            .iter()
            .filter(|(_, _, _, status)| *status == 401)
            .collect();
        assert!(
            refused.is_empty(),
            "{jumper} {offset:+}: refused after the clock came back: {refused:?}"
        );
        let all: Vec<&NodeId> = cores.iter().chain(workers.iter()).collect();
        assert_agree(&cluster, &all);
        for (node, before) in cores.iter().chain(&workers).zip(events_before) {
            let news: Vec<&Event> = cluster.events(node)[before..]
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        Event::MemberSuspect { .. }
                            | Event::MemberDead { .. }
                            | Event::CoreUnreachable { .. }
                            | Event::Reincarnated { .. }
                    )
                })
                .collect();
            assert!(news.is_empty(), "{jumper} {offset:+}: {node} saw {news:?}");
        }
    }
}

#[test]
fn a_worker_says_when_it_holds_the_routing_table_and_counts_publishes_made_before() {
    let mut cluster = PumpedCluster::new();
    let c1 = cluster.add(core_config("core1"), 1);
    let w2 = cluster.add(worker_config("w2", "core1", "core2", SECRET), 2);
    cluster.run_for(Duration::from_secs(1));
    let now = cluster.now();
    cluster.node_mut(&w2).subscribe(now, "alarms/#").unwrap();
    cluster.run_for(Duration::from_millis(200));
    assert!(cluster
        .events(&w2)
        .iter()
        .any(|e| matches!(e, Event::Synced { core } if *core == c1)));

    // w1's push stream is held back: it registers, but has no tables yet.
    let w1 = id("w1");
    cluster.stall(&w1);
    cluster.add(worker_config("w1", "core1", "core2", SECRET), 3);
    cluster.run_for(Duration::from_millis(200));
    assert!(cluster
        .events(&w1)
        .iter()
        .any(|e| matches!(e, Event::Registered { .. })));
    assert!(!cluster
        .events(&w1)
        .iter()
        .any(|e| matches!(e, Event::Synced { .. })));
    let now = cluster.now();
    let early = mqtt_cluster_core::node::Message::new("alarms/fire", "early").unwrap();
    let routing = cluster.node_mut(&w1).publish(now, early).unwrap();
    assert!(routing.remote.is_empty(), "no routes yet: {routing:?}");
    assert_eq!(cluster.node(&w1).stats().published_unsynced, 1);

    cluster.resume(&w1);
    let synced: Vec<&Event> = cluster
        .events(&w1)
        .iter()
        .filter(|e| matches!(e, Event::Synced { .. }))
        .collect();
    assert_eq!(synced, [&Event::Synced { core: c1.clone() }]);
    let now = cluster.now();
    let late = mqtt_cluster_core::node::Message::new("alarms/fire", "late").unwrap();
    let routing = cluster.node_mut(&w1).publish(now, late).unwrap();
    assert_eq!(routing.remote, vec![w2.clone()]);
    assert_eq!(cluster.node(&w1).stats().published_unsynced, 1);
    // The stream goes on: no second Synced without a new registration.
    cluster.run_for(Duration::from_secs(1));
    let synced = cluster
        .events(&w1)
        .iter()
        .filter(|e| matches!(e, Event::Synced { .. }))
        .count();
    assert_eq!(synced, 1);
    let metrics = cluster.node(&w1).metrics();
    assert!(
        metrics.contains("mqtt_cluster_published_unsynced_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_refused_request_under_a_newer_incarnation_locks_no_one_out() {
    let mut five = five();
    let [c1, _] = five.cores.clone();
    let w1 = five.workers[0].clone();
    assert_eq!(five.cluster.node(&w1).status().core, Some(c1.clone()));
    let live = five.cluster.node(&w1).incarnation();
    let wall = five.cluster.now().wall.as_unix_millis();
    // Signed with the cluster's secret (a restarted w1, or anyone who holds
    // the secret), under a newer incarnation, and refused for its body.
    let refused = signed_as(
        SECRET,
        "w1",
        Incarnation(live.0 + 1),
        1,
        wall,
        Method::POST,
        "/heartbeat",
        "{not json",
    );
    let before = observable_state(five.cluster.node(&c1));
    let response = five.cluster.request(&c1, refused);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(observable_state(five.cluster.node(&c1)), before);

    // The live w1 goes on heartbeating with core1 as if nothing happened.
    five.cluster.run_for(Duration::from_secs(3));
    assert_eq!(five.cluster.node(&w1).status().core, Some(c1.clone()));
    assert_eq!(five.cluster.node(&w1).incarnation(), live);
    let refusals = five.cluster.node(&c1).stats().requests_refused;
    assert_eq!(
        refusals.keys().collect::<Vec<_>>(),
        ["malformed"],
        "only the refused request itself: {refusals:?}"
    );
    assert!(!five
        .cluster
        .events(&w1)
        .iter()
        .any(|e| matches!(e, Event::CoreUnreachable { .. })));
    let all: Vec<&NodeId> = five.cores.iter().chain(five.workers.iter()).collect();
    assert_agree(&five.cluster, &all);
}
