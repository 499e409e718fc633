//! `Node::explain` on simulated clusters: the pure function behind
//! `GET /explain`, for the cases an operator asks about, a partition
//! among them (which only the simulator makes exactly).

use std::time::Duration;

use mqtt_cluster_core::node::{Explanation, MemberVerdict, Unreached};
use mqtt_cluster_core::routing::TopicName;
use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation};
use mqtt_cluster_core::wire::explain::ExplainQuery;
use mqtt_cluster_core::wire::messages::{MemberState, Qos};
use mqtt_cluster_core::NodeId;

use mqtt_cluster_tests::scenario::build;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Two cores; w1 registered with core1, w2 with core2.
fn cluster() -> Simulation {
    let mut sim = Simulation::new(7, NetworkModel::reliable());
    build(&mut sim, 2, 2, "");
    sim.run_for(Duration::from_secs(1)).unwrap();
    sim
}

fn explain(sim: &Simulation, at: &str, topic: &str, from: Option<&str>) -> Explanation {
    let query = ExplainQuery {
        topic: TopicName::new(topic).unwrap(),
        from: from.map(id),
    };
    sim.node(&id(at)).unwrap().explain(&query).unwrap()
}

fn member<'a>(explained: &'a Explanation, name: &str) -> &'a MemberVerdict {
    explained
        .member(name)
        .unwrap_or_else(|| panic!("{name} not in {explained:#?}"))
}

fn path(verdict: &MemberVerdict) -> Vec<String> {
    let mut nodes: Vec<String> = verdict.path.iter().map(|h| h.from.to_string()).collect();
    nodes.extend(verdict.path.last().map(|h| h.to.to_string()));
    nodes
}

fn subscribe(sim: &mut Simulation, node: &str, filter: &str) {
    sim.act(Action::Subscribe {
        node: id(node),
        filter: filter.into(),
    })
    .unwrap();
}

#[test]
fn a_delivered_topic_shows_its_filter_and_its_path_across_cores() {
    let mut sim = cluster();
    subscribe(&mut sim, "w2", "site/+/temp");
    sim.run_for(Duration::from_millis(500)).unwrap();
    sim.act(Action::Publish {
        node: id("w1"),
        topic: "site/1/temp".into(),
        payload: "21.5".into(),
        qos: Qos::AtLeastOnce,
    })
    .unwrap();
    sim.run_for(Duration::from_millis(200)).unwrap();

    let explained = explain(&sim, "core1", "site/1/temp", Some("w1"));
    assert_eq!(explained.from, id("w1"));
    assert_eq!(explained.filters.len(), 1);
    assert_eq!(explained.filters[0].holders, [id("w2")]);
    let w2 = member(&explained, "w2");
    assert!(w2.reached, "{w2:#?}");
    assert_eq!(w2.filters[0].to_string(), "site/+/temp");
    assert_eq!(path(w2), ["w1", "core1", "core2", "w2"]);
    // core1 sends on to core2 itself: that link is shown (idle again once
    // the message was acknowledged), the others are not core1's.
    let link = w2.path[1].link.as_ref().expect("core1's link to core2");
    assert_eq!((link.queued, link.in_flight, link.busy), (0, 0, false));
    assert!(link.last_error.is_none());
    assert!(w2.path[0].link.is_none() && w2.path[2].link.is_none());
    for other in ["core1", "core2", "w1"] {
        let verdict = member(&explained, other);
        assert!(!verdict.reached);
        assert_eq!(verdict.reason, Some(Unreached::NoMatchingFilter));
        assert!(verdict.path.is_empty());
    }
    // Explaining changes nothing.
    let again = explain(&sim, "core1", "site/1/temp", Some("w1"));
    assert_eq!(again, explained);
}

#[test]
fn a_shared_group_names_whose_turn_is_next_without_taking_it() {
    let mut sim = cluster();
    subscribe(&mut sim, "w1", "$share/g/jobs/#");
    subscribe(&mut sim, "w2", "$share/g/jobs/#");
    sim.run_for(Duration::from_millis(500)).unwrap();

    let explained = explain(&sim, "core1", "jobs/a", None);
    let group = &explained.filters[0];
    assert_eq!(group.filter.to_string(), "$share/g/jobs/#");
    assert_eq!(group.holders, [id("w1"), id("w2")]);
    assert_eq!(group.next, Some(id("w1")));
    assert!(group.why.as_deref().unwrap().contains("in turn by node id"));
    assert!(member(&explained, "w1").reached);
    let w2 = member(&explained, "w2");
    assert!(!w2.reached);
    assert_eq!(
        w2.reason,
        Some(Unreached::NotItsTurn {
            filter: group.filter.clone(),
            next: id("w1"),
        })
    );
    assert_eq!(explain(&sim, "core1", "jobs/a", None), explained);

    // A publish takes the turn; the explanation follows it.
    sim.act(Action::Publish {
        node: id("core1"),
        topic: "jobs/a".into(),
        payload: "x".into(),
        qos: Qos::AtMostOnce,
    })
    .unwrap();
    let after = explain(&sim, "core1", "jobs/a", None);
    assert_eq!(after.filters[0].next, Some(id("w2")));
    assert!(member(&after, "w2").reached);
    assert_eq!(path(member(&after, "w2")), ["core1", "core2", "w2"]);

    // Another publisher keeps its own turns: core1 cannot say.
    let from_w1 = explain(&sim, "core1", "jobs/a", Some("w1"));
    assert_eq!(from_w1.filters[0].next, None);
    assert_eq!(
        member(&from_w1, "w2").reason,
        Some(Unreached::PublisherPicks {
            filter: group.filter.clone(),
            publisher: id("w1"),
        })
    );
}

#[test]
fn a_dead_member_is_not_reached_and_says_so() {
    let mut sim = cluster();
    subscribe(&mut sim, "w2", "site/#");
    sim.run_for(Duration::from_millis(500)).unwrap();
    assert!(member(&explain(&sim, "core1", "site/x", None), "w2").reached);

    sim.act(Action::Crash { node: id("w2") }).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    let explained = explain(&sim, "core1", "site/x", None);
    let w2 = member(&explained, "w2");
    assert_eq!(w2.state, MemberState::Dead);
    assert!(!w2.reached);
    assert_eq!(w2.reason, Some(Unreached::Dead));
    assert!(explained.filters.is_empty(), "its routes went with it");
}

#[test]
fn a_partitioned_core_and_its_workers_are_cut_off_from_this_core() {
    let mut sim = cluster();
    subscribe(&mut sim, "w2", "site/#");
    subscribe(&mut sim, "core2", "site/#");
    sim.run_for(Duration::from_millis(500)).unwrap();

    sim.act(Action::Partition {
        side_a: vec![id("core1"), id("w1")],
        side_b: vec![id("core2"), id("w2")],
    })
    .unwrap();
    // Past suspectTimeout (300 ms), before deadTimeout (1 s).
    sim.run_for(Duration::from_millis(600)).unwrap();
    let explained = explain(&sim, "core1", "site/x", Some("w1"));
    for name in ["core2", "w2"] {
        let verdict = member(&explained, name);
        assert!(!verdict.reached, "{verdict:#?}");
        match &verdict.reason {
            Some(Unreached::Partitioned {
                core, silent_ms, ..
            }) => {
                assert_eq!(*core, id("core2"));
                assert!(*silent_ms > 300, "{silent_ms}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(verdict.path.last().unwrap().to, id(name));
    }

    sim.act(Action::Heal).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    let healed = explain(&sim, "core1", "site/x", Some("w1"));
    assert!(member(&healed, "w2").reached, "{healed:#?}");
    assert!(member(&healed, "core2").reached);
}

#[test]
fn explaining_is_refused_for_a_publisher_it_cannot_speak_for() {
    let sim = cluster();
    let query = ExplainQuery {
        topic: TopicName::new("a").unwrap(),
        from: Some(id("nobody")),
    };
    let err = sim.node(&id("core1")).unwrap().explain(&query).unwrap_err();
    assert_eq!(err.kind(), "unknown_publisher");
    assert_eq!(err.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
}
