//! `mqtt-cluster explain` against real cores over HTTP: a delivered topic,
//! a shared group, a dead member, and a member whose routes lag (a worker
//! played by hand over signed requests, which sends an update out of
//! turn). The partitioned core is in the simulator's suite
//! (`tests/tests/explain.rs`), which cuts links exactly.

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mqtt_cluster_core::auth::Secret;
use mqtt_cluster_core::config::ClusterUrl;
use mqtt_cluster_core::node::{Explanation, MemberVerdict, Message, Unreached};
use mqtt_cluster_core::routing::Subscription;
use mqtt_cluster_core::wire::messages::{
    HeartbeatRequest, MemberState, RegisterRequest, RouteChange, RouteUpdate, RoutesRequest,
    RoutesResponse,
};
use mqtt_cluster_core::wire::Endpoint;
use mqtt_cluster_core::{Incarnation, NodeId, Role};
use mqtt_cluster_tokio::{Operator, Options};

/// Two cores; w1 registered with core1, w2 with core2.
struct Cluster {
    core1: Running,
    _core2: Running,
    w1: Running,
    w2: Running,
    url: String,
}

async fn cluster() -> Cluster {
    let (b1, b2) = (bind().await, bind().await);
    let urls = [b1.url.as_str(), b2.url.as_str()];
    let url = b1.url.clone();
    let core1 = start(
        core_config("core1", b1.port, &urls, ""),
        Options::new().listener(b1.listener),
    )
    .await;
    let core2 = start(
        core_config("core2", b2.port, &urls, ""),
        Options::new().listener(b2.listener),
    )
    .await;
    let w1 = start(worker_config("w1", &[urls[0]], ""), Options::new()).await;
    let w2 = start(worker_config("w2", &[urls[1]], ""), Options::new()).await;
    let cluster = Cluster {
        core1,
        _core2: core2,
        w1,
        w2,
        url,
    };
    eventually("core1 knows all four nodes alive", || async {
        explain_json(&cluster.url, "probe", None)
            .await
            .is_some_and(|e| {
                e.members.len() == 4 && e.members.iter().all(|m| m.state == MemberState::Alive)
            })
    })
    .await;
    cluster
}

fn command(url: &str, topic: &str, from: Option<&str>, json: bool) -> Vec<String> {
    let mut argv = vec![
        env!("CARGO_BIN_EXE_mqtt-cluster").to_owned(),
        "explain".into(),
        url.into(),
        topic.into(),
        "--secret".into(),
        SECRET.into(),
    ];
    if let Some(from) = from {
        argv.extend(["--from".into(), from.into()]);
    }
    if json {
        argv.push("--json".into());
    }
    argv
}

/// Runs the command; its stdout, or `None` if it failed.
async fn run(argv: Vec<String>) -> Option<String> {
    let output =
        tokio::task::spawn_blocking(move || Command::new(&argv[0]).args(&argv[1..]).output())
            .await
            .unwrap()
            .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).unwrap())
}

async fn explain_json(url: &str, topic: &str, from: Option<&str>) -> Option<Explanation> {
    let out = run(command(url, topic, from, true)).await?;
    Some(serde_json::from_str(&out).expect("the JSON is an Explanation"))
}

async fn explain_table(url: &str, topic: &str, from: Option<&str>) -> String {
    run(command(url, topic, from, false))
        .await
        .expect("explain succeeds")
}

fn member<'a>(explained: &'a Explanation, name: &str) -> &'a MemberVerdict {
    explained
        .member(name)
        .unwrap_or_else(|| panic!("{name} not in {explained:#?}"))
}

/// The table row of `name` in the members table.
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .skip_while(|l| !l.starts_with("member "))
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_topic_shows_filter_path_and_links() {
    let cluster = cluster().await;
    cluster.w2.handle.subscribe("site/+/temp").await.unwrap();
    let w1 = cluster.w1.handle.clone();
    eventually("w1 routes site/1/temp to w2", || {
        let w1 = w1.clone();
        async move {
            w1.publish(Message::new("site/1/temp", "21.5").unwrap())
                .await
                .is_ok_and(|r| !r.remote.is_empty())
        }
    })
    .await;
    let url = cluster.url.clone();
    eventually("core1 explains w2 as reached", || {
        let url = url.clone();
        async move {
            explain_json(&url, "site/1/temp", Some("w1"))
                .await
                .is_some_and(|e| member(&e, "w2").reached)
        }
    })
    .await;

    let explained = explain_json(&cluster.url, "site/1/temp", Some("w1"))
        .await
        .unwrap();
    assert_eq!(explained.node.as_str(), "core1");
    let w2 = member(&explained, "w2");
    assert_eq!(w2.filters, [Subscription::parse("site/+/temp").unwrap()]);
    let hops: Vec<(&str, &str)> = w2
        .path
        .iter()
        .map(|h| (h.from.as_str(), h.to.as_str()))
        .collect();
    assert_eq!(hops, [("w1", "core1"), ("core1", "core2"), ("core2", "w2")]);
    // core1 holds one link on the path: to core2, which the publish opened.
    assert!(w2.path[1].link.is_some(), "{w2:#?}");
    assert!(w2.path[0].link.is_none() && w2.path[2].link.is_none());
    for other in ["core1", "core2", "w1"] {
        assert_eq!(
            member(&explained, other).reason,
            Some(Unreached::NoMatchingFilter)
        );
    }

    let table = explain_table(&cluster.url, "site/1/temp", Some("w1")).await;
    assert!(
        table.starts_with(
            "core1 explains a message on site/1/temp published by w1: it reaches 1 of 4 members"
        ),
        "{table}"
    );
    assert!(
        row(&table, "w2").contains("w1 -> core1 -> core2 -> w2"),
        "{table}"
    );
    assert!(row(&table, "w2").contains("site/+/temp"), "{table}");
    assert!(row(&table, "w1").contains("no matching filter"), "{table}");
    assert!(table.contains("core1 -> core2"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_names_the_next_pick() {
    let cluster = cluster().await;
    cluster
        .w1
        .handle
        .subscribe("$share/g/jobs/#")
        .await
        .unwrap();
    cluster
        .w2
        .handle
        .subscribe("$share/g/jobs/#")
        .await
        .unwrap();
    let url = cluster.url.clone();
    eventually("core1 holds both holders of the group", || {
        let url = url.clone();
        async move {
            explain_json(&url, "jobs/a", None)
                .await
                .is_some_and(|e| e.filters.first().is_some_and(|f| f.holders.len() == 2))
        }
    })
    .await;

    let explained = explain_json(&cluster.url, "jobs/a", None).await.unwrap();
    let group = &explained.filters[0];
    assert_eq!(group.filter.to_string(), "$share/g/jobs/#");
    let next = group
        .next
        .clone()
        .expect("core1 publishes: it knows the turn");
    let other = if next.as_str() == "w1" { "w2" } else { "w1" };
    assert!(member(&explained, next.as_str()).reached);
    assert_eq!(
        member(&explained, other).reason,
        Some(Unreached::NotItsTurn {
            filter: group.filter.clone(),
            next: next.clone(),
        })
    );
    // Asking again takes no turn.
    assert_eq!(
        explain_json(&cluster.url, "jobs/a", None)
            .await
            .unwrap()
            .filters[0]
            .next,
        Some(next.clone())
    );
    // A publish by core1 does: the other holder is next.
    cluster
        .core1
        .handle
        .publish(Message::new("jobs/a", "x").unwrap())
        .await
        .unwrap();
    let after = explain_json(&cluster.url, "jobs/a", None).await.unwrap();
    assert_eq!(
        after.filters[0].next.as_ref().map(|n| n.as_str()),
        Some(other)
    );

    let table = explain_table(&cluster.url, "jobs/a", None).await;
    assert!(
        row(&table, next.as_str())
            .contains(&format!("not its turn in $share/g/jobs/# (next: {other})")),
        "{table}"
    );
    // From a worker, whose turns core1 does not keep.
    let from_w1 = explain_json(&cluster.url, "jobs/a", Some("w1"))
        .await
        .unwrap();
    assert_eq!(from_w1.filters[0].next, None);
    assert!(matches!(
        member(&from_w1, "w2").reason,
        Some(Unreached::PublisherPicks { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_member_is_named_dead() {
    let cluster = cluster().await;
    cluster.w2.handle.subscribe("site/#").await.unwrap();
    let url = cluster.url.clone();
    eventually("w2's route reaches core1", || {
        let url = url.clone();
        async move {
            explain_json(&url, "site/x", None)
                .await
                .is_some_and(|e| member(&e, "w2").reached)
        }
    })
    .await;
    cluster.w2.kill();
    eventually("core1 explains w2 as dead", || {
        let url = url.clone();
        async move {
            explain_json(&url, "site/x", None)
                .await
                .is_some_and(|e| member(&e, "w2").reason == Some(Unreached::Dead))
        }
    })
    .await;
    let explained = explain_json(&cluster.url, "site/x", None).await.unwrap();
    assert!(!member(&explained, "w2").reached);
    assert!(explained.filters.is_empty(), "its routes went with it");
    let table = explain_table(&cluster.url, "site/x", None).await;
    assert!(
        row(&table, "w2").contains("dead: its routes were dropped"),
        "{table}"
    );
}

/// A worker played over signed HTTP: registers, heartbeats, and sends its
/// routes as the test says.
struct HandWorker {
    operator: Operator,
    url: String,
    id: NodeId,
}

impl HandWorker {
    async fn post(&self, endpoint: Endpoint, body: serde_json::Value) -> Bytes {
        let body = Bytes::from(body.to_string());
        let response = self
            .operator
            .send(endpoint.request(&self.url, body))
            .await
            .unwrap();
        assert!(response.status().is_success(), "{endpoint:?}: {response:?}");
        response.into_body()
    }

    async fn routes(&self, prev: u64, seq: u64, filter: &str) -> RoutesResponse {
        let update = RouteUpdate {
            node: self.id.clone(),
            incarnation: Incarnation(1),
            seq,
            change: RouteChange::Delta {
                prev,
                add: vec![Subscription::parse(filter).unwrap()],
                remove: vec![],
            },
        };
        let answer = self
            .post(Endpoint::Routes, json(&RoutesRequest { update }))
            .await;
        serde_json::from_slice(&answer).unwrap()
    }
}

fn json(body: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_routes_lag_shows_the_gap() {
    let cluster = cluster().await;
    let id = NodeId::new("w9").unwrap();
    let worker = std::sync::Arc::new(HandWorker {
        operator: Operator::new(id.clone(), Some(Secret::new(SECRET.to_owned()))),
        url: cluster.url.clone(),
        id: id.clone(),
    });
    worker
        .post(
            Endpoint::Register,
            json(&RegisterRequest {
                node: id.clone(),
                role: Role::Worker,
                incarnation: Incarnation(1),
                address: None,
            }),
        )
        .await;
    let beating = worker.clone();
    let heartbeats = tokio::spawn(async move {
        loop {
            let beat = HeartbeatRequest {
                members_digest: String::new(),
                retained_digest: String::new(),
                members_seen: None,
                routes_behind: false,
            };
            beating.post(Endpoint::Heartbeat, json(&beat)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(!worker.routes(0, 1, "site/#").await.resync);
    // Updates 2 and 3 never arrive: 4 leaves a gap, and the core asks for
    // a snapshot, which this worker does not send.
    assert!(worker.routes(3, 4, "lag/#").await.resync);

    let explained = explain_json(&cluster.url, "lag/x", None).await.unwrap();
    let w9 = member(&explained, "w9");
    assert!(!w9.reached);
    assert_eq!(w9.reason, Some(Unreached::RoutesLag));
    let lag = w9.routes_lag.expect("the lag");
    assert_eq!((lag.held, lag.heard, lag.gap), (1, 4, Some(3)));
    let table = explain_table(&cluster.url, "lag/x", None).await;
    assert!(
        row(&table, "w9").contains("routes lag: holds update 1 of w9, heard of 4 (3 missing)"),
        "{table}"
    );
    // What it held before the gap still reaches it, lag shown.
    let held = explain_json(&cluster.url, "site/x", None).await.unwrap();
    let w9 = member(&held, "w9");
    assert!(w9.reached && w9.routes_lag.is_some());

    // The snapshot catches up: the lag is gone.
    let snapshot = RouteUpdate {
        node: id.clone(),
        incarnation: Incarnation(1),
        seq: 4,
        change: RouteChange::Snapshot {
            routes: vec![
                Subscription::parse("site/#").unwrap(),
                Subscription::parse("lag/#").unwrap(),
            ],
        },
    };
    worker
        .post(Endpoint::Routes, json(&RoutesRequest { update: snapshot }))
        .await;
    let caught_up = explain_json(&cluster.url, "lag/x", None).await.unwrap();
    let w9 = member(&caught_up, "w9");
    assert!(w9.reached && w9.routes_lag.is_none(), "{w9:#?}");
    heartbeats.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_is_refused_with_its_reason() {
    let cluster = cluster().await;
    // A filter is not a topic a message is published on.
    let argv = command(&cluster.url, "site/+", None, false);
    let output =
        tokio::task::spawn_blocking(move || Command::new(&argv[0]).args(&argv[1..]).output())
            .await
            .unwrap()
            .unwrap();
    assert!(!output.status.success());
    let operator = Operator::new(
        NodeId::new("operator").unwrap(),
        Some(Secret::new(SECRET.to_owned())),
    );
    let url: ClusterUrl = cluster.url.parse().unwrap();
    let err = operator
        .explain(
            &url,
            &mqtt_cluster_core::wire::explain::ExplainQuery {
                topic: mqtt_cluster_core::routing::TopicName::new("a").unwrap(),
                from: Some(NodeId::new("nobody").unwrap()),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("422"), "{err}");
    assert!(err.to_string().contains("unknown_publisher"), "{err}");
    let raw = operator
        .send(
            http::Request::get(format!("{}/explain?topic=a&topic=b", cluster.url))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), http::StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(raw.body()).contains("bad_query"));
}
