//! Behaviour of topic validation and of the route table: golden tables for
//! the MQTT matching rules, and properties checked against a naive matcher.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::id::NodeId;

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn sub(text: &str) -> Subscription {
    Subscription::parse(text).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::new(text).unwrap()
}

fn matched(table: &mut RouteTable, topic_text: &str) -> Vec<NodeId> {
    let mut out = Vec::new();
    table.matches(&topic(topic_text), &mut out);
    out
}

/// A matcher written independently of the crate's, as directly from the
/// MQTT text as possible, to compare against.
fn reference_matches(filter: &str, topic: &str) -> bool {
    fn levels_match(filter: &[&str], topic: &[&str]) -> bool {
        match filter.split_first() {
            None => topic.is_empty(),
            Some((&"#", rest)) => rest.is_empty(),
            Some((&"+", rest)) => !topic.is_empty() && levels_match(rest, &topic[1..]),
            Some((level, rest)) => topic.first() == Some(level) && levels_match(rest, &topic[1..]),
        }
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    if topic[0].starts_with('$') && (filter[0] == "+" || filter[0] == "#") {
        return false;
    }
    levels_match(&filter, &topic)
}

// ---------------------------------------------------------------- golden tables

/// An input and a check that the error it gets is the right one.
type ErrorCase<'a> = (&'a str, fn(&TopicError) -> bool);

/// (filter, topic, matches?)
const MATCHING: &[(&str, &str, bool)] = &[
    ("a", "a", true),
    ("a", "b", false),
    ("a", "a/b", false),
    ("a/b", "a", false),
    ("a/b/c", "a/b/c", true),
    // `#` matches the parent level and everything below.
    ("a/#", "a", true),
    ("a/#", "a/", true),
    ("a/#", "a/b", true),
    ("a/#", "a/b/c", true),
    ("a/#", "ab", false),
    ("a/#", "b/a", false),
    ("a/b/#", "a", false),
    ("#", "a", true),
    ("#", "a/b/c", true),
    ("#", "/", true),
    ("#", "/a", true),
    // `+` matches exactly one level, an empty one included.
    ("a/+", "a/b", true),
    ("a/+", "a/", true),
    ("a/+", "a", false),
    ("a/+", "a/b/c", false),
    ("a/+/b", "a//b", true),
    ("a/+/b", "a/x/b", true),
    ("a/+/b", "a/b", false),
    ("+", "a", true),
    ("+", "/a", false),
    ("+", "a/b", false),
    ("+/+", "a/b", true),
    ("+/+", "/", true),
    ("+/+", "/a", true),
    ("+/+", "a", false),
    ("+/+", "a/b/c", false),
    ("/+", "/a", true),
    ("/+", "/", true),
    ("/+", "a/b", false),
    ("/+", "a", false),
    ("+/", "a/", true),
    ("+/", "/", true),
    ("+/", "a", false),
    ("+/", "a/b", false),
    ("+/#", "a", true),
    ("+/#", "a/b/c", true),
    ("a/+/#", "a/b", true),
    ("a/+/#", "a", false),
    // Empty levels are levels.
    ("a//b", "a//b", true),
    ("a//b", "a/b", false),
    ("a/b", "a//b", false),
    ("/", "/", true),
    ("/", "//", false),
    ("//", "//", true),
    ("/a", "/a", true),
    ("/a", "a", false),
    ("a/", "a/", true),
    ("a/", "a", false),
    // `$` topics hide from filters that start with a wildcard.
    ("#", "$SYS/x", false),
    ("#", "$SYS", false),
    ("+/x", "$SYS/x", false),
    ("+", "$SYS", false),
    ("+/#", "$SYS/x", false),
    ("$SYS/#", "$SYS/x", true),
    ("$SYS/#", "$SYS", true),
    ("$SYS/+", "$SYS/x", true),
    ("$SYS/x", "$SYS/x", true),
    ("x/+", "x/$y", true),
    ("x/#", "x/$y", true),
    ("+/$y", "x/$y", true),
    ("$", "$", true),
    ("#", "a$", true),
];

#[test]
fn routing_golden_table_matches_like_mqtt() {
    let holder = node("holder");
    for &(filter_text, topic_text, expected) in MATCHING {
        let filter = TopicFilter::new(filter_text).unwrap();
        assert_eq!(
            filter.matches(&topic(topic_text)),
            expected,
            "TopicFilter::matches({filter_text:?}, {topic_text:?})"
        );
        assert_eq!(
            reference_matches(filter_text, topic_text),
            expected,
            "reference_matches({filter_text:?}, {topic_text:?})"
        );
        let mut table = RouteTable::new();
        assert!(table.insert(&holder, &sub(filter_text)));
        let want: Vec<NodeId> = if expected {
            vec![holder.clone()]
        } else {
            vec![]
        };
        assert_eq!(
            matched(&mut table, topic_text),
            want,
            "RouteTable: filter {filter_text:?}, topic {topic_text:?}"
        );
    }
}

#[test]
fn routing_golden_table_all_filters_in_one_table() {
    // Every filter in one table, each held by its own node, so that filters
    // sharing trie nodes cannot hide each other's matches.
    let mut table = RouteTable::new();
    let filters: BTreeSet<&str> = MATCHING.iter().map(|row| row.0).collect();
    let holders: BTreeMap<&str, NodeId> = filters
        .iter()
        .enumerate()
        .map(|(i, &f)| (f, node(&format!("n{i}"))))
        .collect();
    for (&filter, holder) in &holders {
        table.insert(holder, &sub(filter));
    }
    let topics: BTreeSet<&str> = MATCHING.iter().map(|row| row.1).collect();
    for topic_text in topics {
        let mut want: Vec<NodeId> = holders
            .iter()
            .filter(|(filter, _)| reference_matches(filter, topic_text))
            .map(|(_, holder)| holder.clone())
            .collect();
        want.sort();
        assert_eq!(
            matched(&mut table, topic_text),
            want,
            "topic {topic_text:?}"
        );
    }
}

#[test]
fn routing_refuses_invalid_filters() {
    let long = "a".repeat(MAX_TOPIC_LEN + 1);
    let cases: &[ErrorCase] = &[
        ("", |e| {
            matches!(
                e,
                TopicError::Empty {
                    kind: TopicKind::Filter
                }
            )
        }),
        ("a+", |e| matches!(e, TopicError::MisplacedPlus { .. })),
        ("+a", |e| matches!(e, TopicError::MisplacedPlus { .. })),
        ("a/b+/c", |e| matches!(e, TopicError::MisplacedPlus { .. })),
        ("++", |e| matches!(e, TopicError::MisplacedPlus { .. })),
        ("a#", |e| matches!(e, TopicError::MisplacedHash { .. })),
        ("#/a", |e| matches!(e, TopicError::MisplacedHash { .. })),
        ("a/#/b", |e| matches!(e, TopicError::MisplacedHash { .. })),
        ("##", |e| matches!(e, TopicError::MisplacedHash { .. })),
        ("a/#/", |e| matches!(e, TopicError::MisplacedHash { .. })),
        ("a\0b", |e| matches!(e, TopicError::Nul { .. })),
        ("$share/g/a", |e| {
            matches!(e, TopicError::ReservedSharePrefix { .. })
        }),
        (
            &long,
            |e| matches!(e, TopicError::TooLong { len, .. } if *len == MAX_TOPIC_LEN + 1),
        ),
    ];
    for (input, is_expected) in cases {
        let error = TopicFilter::new(input).unwrap_err();
        assert!(is_expected(&error), "{input:?} gave {error:?}");
    }
    assert!(TopicFilter::new(&"a".repeat(MAX_TOPIC_LEN)).is_ok());
    for valid in [
        "a", "/", "//", "+", "#", "+/+", "a/+/#", "$SYS/#", "$share", "a b/ü",
    ] {
        assert!(TopicFilter::new(valid).is_ok(), "{valid:?}");
    }
}

#[test]
fn routing_refuses_invalid_topic_names() {
    let long = "a".repeat(MAX_TOPIC_LEN + 1);
    let cases: &[ErrorCase] = &[
        ("", |e| {
            matches!(
                e,
                TopicError::Empty {
                    kind: TopicKind::Name
                }
            )
        }),
        ("a/+", |e| {
            matches!(e, TopicError::WildcardInName { wildcard: '+', .. })
        }),
        ("a/#", |e| {
            matches!(e, TopicError::WildcardInName { wildcard: '#', .. })
        }),
        ("a#b", |e| matches!(e, TopicError::WildcardInName { .. })),
        ("a\0", |e| {
            matches!(
                e,
                TopicError::Nul {
                    kind: TopicKind::Name,
                    ..
                }
            )
        }),
        (&long, |e| matches!(e, TopicError::TooLong { .. })),
    ];
    for (input, is_expected) in cases {
        let error = TopicName::new(input).unwrap_err();
        assert!(is_expected(&error), "{input:?} gave {error:?}");
    }
    for valid in ["a", "/", "//", "$SYS/x", "a//b", "$share/g/x"] {
        assert!(TopicName::new(valid).is_ok(), "{valid:?}");
    }
}

#[test]
fn routing_parses_shared_subscriptions() {
    let shared = sub("$share/g/a/+/#");
    assert_eq!(shared.share_group(), Some("g"));
    assert_eq!(shared.filter().as_str(), "a/+/#");
    assert_eq!(sub("$share/g//").filter().as_str(), "/");
    assert_eq!(
        sub("a/b"),
        Subscription::Plain(TopicFilter::new("a/b").unwrap())
    );
    assert_eq!(sub("$share").share_group(), None);

    let cases: &[ErrorCase] = &[
        ("", |e| {
            matches!(
                e,
                TopicError::Empty {
                    kind: TopicKind::Subscription
                }
            )
        }),
        ("$share/", |e| {
            matches!(e, TopicError::EmptyShareGroup { .. })
        }),
        ("$share//a", |e| {
            matches!(e, TopicError::EmptyShareGroup { .. })
        }),
        ("$share/g", |e| {
            matches!(e, TopicError::MissingSharedFilter { .. })
        }),
        ("$share/g/", |e| {
            matches!(e, TopicError::MissingSharedFilter { .. })
        }),
        ("$share/g+/a", |e| {
            matches!(e, TopicError::InvalidShareGroup { .. })
        }),
        ("$share/#/a", |e| {
            matches!(e, TopicError::InvalidShareGroup { .. })
        }),
        ("$share/g/a+", |e| {
            matches!(e, TopicError::MisplacedPlus { .. })
        }),
        ("$share/g/#/a", |e| {
            matches!(e, TopicError::MisplacedHash { .. })
        }),
        ("$share/g/$share/h/a", |e| {
            matches!(e, TopicError::ReservedSharePrefix { .. })
        }),
        ("$share/g/a\0", |e| matches!(e, TopicError::Nul { .. })),
    ];
    for (input, is_expected) in cases {
        let error = Subscription::parse(input).unwrap_err();
        assert!(is_expected(&error), "{input:?} gave {error:?}");
    }
}

#[test]
fn routing_errors_name_the_problem_and_the_input() {
    let message = TopicFilter::new("sensors/te#mp").unwrap_err().to_string();
    assert!(message.contains("sensors/te#mp"), "{message}");
    assert!(message.contains("'#'"), "{message}");
    let message = TopicName::new("a/+").unwrap_err().to_string();
    assert!(
        message.contains("\"a/+\"") && message.contains("wildcard"),
        "{message}"
    );
    let huge = "x".repeat(MAX_TOPIC_LEN + 10);
    let message = TopicName::new(&huge).unwrap_err().to_string();
    assert!(
        message.len() < 400,
        "long inputs are cut: {} bytes",
        message.len()
    );
}

#[test]
fn routing_serialises_as_strings_and_validates_on_the_way_in() {
    let shared = sub("$share/g/a/#");
    assert_eq!(serde_json::to_string(&shared).unwrap(), r#""$share/g/a/#""#);
    let back: Subscription = serde_json::from_str(r#""$share/g/a/#""#).unwrap();
    assert_eq!(back, shared);
    let plain: Subscription = serde_json::from_str(r#""a/+""#).unwrap();
    assert_eq!(plain, sub("a/+"));
    assert!(serde_json::from_str::<Subscription>(r#""a/#/b""#).is_err());
    assert!(serde_json::from_str::<TopicName>(r#""a/+""#).is_err());
    assert!(serde_json::from_str::<TopicFilter>(r#""a+""#).is_err());
    let name: TopicName = serde_json::from_str(r#""a/b""#).unwrap();
    assert_eq!(serde_json::to_string(&name).unwrap(), r#""a/b""#);
}

// ---------------------------------------------------------------- route table behaviour

#[test]
fn routing_insert_and_remove_report_changes() {
    let (a, b) = (node("a"), node("b"));
    let mut table = RouteTable::new();
    assert!(table.insert(&a, &sub("x/+")));
    assert!(!table.insert(&a, &sub("x/+")));
    assert!(table.insert(&b, &sub("x/+")));
    assert!(table.insert(&a, &sub("$share/g/x/+")));
    assert!(!table.insert(&a, &sub("$share/g/x/+")));
    assert!(table.insert(&a, &sub("$share/h/x/+")));
    assert_eq!((table.len(), table.node_count()), (4, 2));
    assert!(table.contains(&a, &sub("$share/h/x/+")));
    assert!(!table.contains(&b, &sub("$share/h/x/+")));
    assert_eq!(
        table.routes_of(&a),
        vec![sub("x/+"), sub("$share/g/x/+"), sub("$share/h/x/+")]
    );
    assert!(!table.remove(&b, &sub("x/#")));
    assert!(!table.remove(&b, &sub("$share/g/x/+")));
    assert!(!table.remove(&node("nobody"), &sub("x/+")));
    assert!(table.remove(&b, &sub("x/+")));
    assert!(!table.remove(&b, &sub("x/+")));
    assert_eq!((table.len(), table.node_count()), (3, 1));
    assert_eq!(table.nodes(), vec![a.clone()]);
    assert_eq!(table.remove_node(&a), 3);
    assert_eq!(table.remove_node(&a), 0);
    assert!(table.is_empty());
}

#[test]
fn routing_removal_frees_everything() {
    let empty = RouteTable::new().footprint();
    let mut table = RouteTable::new();
    for i in 0..300 {
        let holder = node(&format!("n{}", i % 7));
        table.insert(&holder, &sub(&format!("site/{i}/dev/{}/temp", i % 13)));
        table.insert(&holder, &sub(&format!("$share/g{}/site/+/dev/{i}", i % 3)));
        table.insert(&holder, &sub(&format!("site/{i}/#")));
    }
    for i in 0..7 {
        table.remove_node(&node(&format!("n{i}")));
    }
    assert!(table.is_empty());
    assert_eq!(table.footprint(), empty);
}

#[test]
fn routing_plain_holder_chosen_for_a_share_appears_once() {
    let a = node("a");
    let mut table = RouteTable::new();
    table.insert(&a, &sub("t/#"));
    table.insert(&a, &sub("$share/g/t/+"));
    table.insert(&a, &sub("$share/h/t/x"));
    assert_eq!(matched(&mut table, "t/x"), vec![a]);
}

#[test]
fn routing_shared_turns_follow_node_id_order_and_survive_joins() {
    let (a, b, c) = (node("a"), node("b"), node("c"));
    let mut table = RouteTable::new();
    let shared = sub("$share/g/t");
    table.insert(&c, &shared);
    table.insert(&a, &shared);
    assert_eq!(matched(&mut table, "t"), vec![a.clone()]);
    // b joins between a (just served) and c: the round reaches b first.
    table.insert(&b, &shared);
    assert_eq!(matched(&mut table, "t"), vec![b.clone()]);
    assert_eq!(matched(&mut table, "t"), vec![c.clone()]);
    assert_eq!(matched(&mut table, "t"), vec![a.clone()]);
    // b, whose turn is next, leaves: the turn goes on to c.
    table.remove(&b, &shared);
    assert_eq!(matched(&mut table, "t"), vec![c.clone()]);
    assert_eq!(matched(&mut table, "t"), vec![a]);
    assert_eq!(table.shared_members(), vec![vec![node("a"), c]]);
}

#[test]
fn routing_warm_lookups_reuse_their_buffers() {
    let mut table = RouteTable::new();
    for i in 0..50 {
        let holder = node(&format!("n{i}"));
        table.insert(&holder, &sub(&format!("site/{i}/+/temp")));
        table.insert(&holder, &sub("site/#"));
        table.insert(&holder, &sub(&format!("$share/g/site/{}/#", i % 5)));
    }
    let topics: Vec<TopicName> = (0..60)
        .map(|i| topic(&format!("site/{i}/dev/temp")))
        .collect();
    let mut out = Vec::new();
    for t in &topics {
        table.matches(t, &mut out);
    }
    let (warm, out_capacity) = (table.scratch_capacities(), out.capacity());
    for t in &topics {
        table.matches(t, &mut out);
    }
    assert_eq!(table.scratch_capacities(), warm);
    assert_eq!(out.capacity(), out_capacity);
}

#[test]
fn routing_deep_topics_do_not_overflow_the_stack() {
    let mut table = RouteTable::new();
    let deep_filter = "+/".repeat(30_000) + "#";
    assert!(table.insert(&node("a"), &sub(&deep_filter)));
    let deep_topic = "/".repeat(60_000);
    assert_eq!(matched(&mut table, &deep_topic), vec![node("a")]);
    assert_eq!(table.remove_node(&node("a")), 1);
    assert_eq!(table.footprint(), RouteTable::new().footprint());
}

#[test]
fn routing_survives_compaction_of_a_mostly_emptied_trie() {
    let (a, b) = (node("a"), node("b"));
    let mut table = RouteTable::new();
    for i in 0..6000 {
        table.insert(&a, &sub(&format!("x/{i}/y")));
        table.insert(&b, &sub(&format!("$share/g/x/{i}/+")));
    }
    for i in 0..6000 {
        if i % 10 != 0 {
            table.remove(&a, &sub(&format!("x/{i}/y")));
            table.remove(&b, &sub(&format!("$share/g/x/{i}/+")));
        }
    }
    let mut fresh = RouteTable::new();
    for i in (0..6000).step_by(10) {
        fresh.insert(&a, &sub(&format!("x/{i}/y")));
        fresh.insert(&b, &sub(&format!("$share/g/x/{i}/+")));
    }
    assert_eq!(table.footprint(), fresh.footprint());
    // Compaction ran: of the ~18 000 slots the removals emptied, fewer than
    // the compaction threshold remain.
    assert!(table.trie_slots() < table.footprint().trie_nodes + 4096);
    assert_eq!(table.routes_of(&a), fresh.routes_of(&a));
    assert_eq!(table.routes_of(&b), fresh.routes_of(&b));
    assert_eq!(matched(&mut table, "x/10/y"), vec![a.clone(), b.clone()]);
    assert_eq!(matched(&mut table, "x/11/y"), vec![]);
}

// ---------------------------------------------------------------- properties

const FILTER_LEVELS: &[&str] = &["a", "b", "", "$x", "+"];
const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$x"];

fn arb_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(FILTER_LEVELS), 0..4),
        prop::sample::select(&["a", "b", "", "$x", "+", "#"][..]),
    )
        .prop_map(|(mut levels, last)| {
            levels.push(last);
            levels.join("/")
        })
        .prop_filter("MQTT filters are not empty", |f| !f.is_empty())
}

fn arb_topic() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("MQTT topics are not empty", |t| !t.is_empty())
}

fn arb_node() -> impl Strategy<Value = NodeId> {
    (0..6u8).prop_map(|i| node(&format!("n{i}")))
}

fn arb_subscription() -> impl Strategy<Value = Subscription> {
    (
        prop::option::of(prop::sample::select(&["g", "h"][..])),
        arb_filter(),
    )
        .prop_map(|(group, filter)| match group {
            None => sub(&filter),
            Some(group) => sub(&format!("$share/{group}/{filter}")),
        })
}

/// What the table should hold, as plain sets.
type Model = BTreeMap<NodeId, BTreeSet<Subscription>>;

/// Checks `out` against the model: every holder of a matching plain filter,
/// one holder of each matching (group, filter), nobody else.
fn check_routing(model: &Model, topic_text: &str, out: &[NodeId]) -> Result<(), TestCaseError> {
    let mut plain = BTreeSet::new();
    let mut groups: BTreeMap<(String, String), BTreeSet<NodeId>> = BTreeMap::new();
    for (holder, subs) in model {
        for s in subs {
            if !reference_matches(s.filter().as_str(), topic_text) {
                continue;
            }
            match s.share_group() {
                None => {
                    plain.insert(holder.clone());
                }
                Some(group) => {
                    groups
                        .entry((group.to_owned(), s.filter().to_string()))
                        .or_default()
                        .insert(holder.clone());
                }
            }
        }
    }
    let out_set: BTreeSet<NodeId> = out.iter().cloned().collect();
    prop_assert_eq!(out_set.len(), out.len(), "duplicates in {:?}", out);
    prop_assert!(out.windows(2).all(|w| w[0] < w[1]), "unsorted {:?}", out);
    prop_assert!(
        plain.is_subset(&out_set),
        "plain {:?} not in {:?}",
        plain,
        out
    );
    for (pair, holders) in &groups {
        prop_assert!(
            holders.intersection(&out_set).next().is_some(),
            "no holder of {:?} in {:?}",
            pair,
            out
        );
    }
    let explained = |n: &NodeId| plain.contains(n) || groups.values().any(|h| h.contains(n));
    prop_assert!(out.iter().all(explained), "unexplained nodes in {:?}", out);
    Ok(())
}

proptest! {
    #[test]
    fn matching_filters_explain_exactly_what_matches_picks_next(
        routes in prop::collection::vec((arb_node(), arb_subscription()), 0..40),
        topics in prop::collection::vec(arb_topic(), 1..20),
    ) {
        let mut table = RouteTable::new();
        let mut model = Model::new();
        for (holder, subscription) in &routes {
            table.insert(holder, subscription);
            model.entry(holder.clone()).or_default().insert(subscription.clone());
        }
        let mut out = Vec::new();
        for topic_text in &topics {
            let name = topic(topic_text);
            let explained = table.matching_filters(&name);
            // The filters are the model's matching ones, each with its holders.
            let mut want: BTreeMap<Subscription, Vec<NodeId>> = BTreeMap::new();
            for (holder, subs) in &model {
                for s in subs.iter().filter(|s| reference_matches(s.filter().as_str(), topic_text)) {
                    want.entry(s.clone()).or_default().push(holder.clone());
                }
            }
            let got: BTreeMap<Subscription, Vec<NodeId>> = explained
                .iter()
                .map(|m| (m.subscription.clone(), m.holders.clone()))
                .collect();
            prop_assert_eq!(got, want);
            // Asking twice changes nothing; the next lookup sends to every
            // plain holder and to each group's named pick.
            prop_assert_eq!(&table.matching_filters(&name), &explained);
            let mut predicted: BTreeSet<NodeId> = BTreeSet::new();
            for m in &explained {
                match (&m.next, m.subscription.share_group()) {
                    (None, None) => predicted.extend(m.holders.iter().cloned()),
                    (Some(next), Some(_)) => {
                        prop_assert!(m.holders.contains(next));
                        predicted.insert(next.clone());
                    }
                    (next, group) => prop_assert!(false, "next {:?} for group {:?}", next, group),
                }
            }
            table.matches(&name, &mut out);
            prop_assert_eq!(out.iter().cloned().collect::<BTreeSet<_>>(), predicted);
        }
    }

    #[test]
    fn routing_plain_matches_agree_with_reference(
        routes in prop::collection::vec((arb_node(), arb_filter()), 0..40),
        topics in prop::collection::vec(arb_topic(), 1..20),
    ) {
        let mut table = RouteTable::new();
        for (holder, filter) in &routes {
            table.insert(holder, &sub(filter));
        }
        let mut out = Vec::new();
        for topic_text in &topics {
            table.matches(&topic(topic_text), &mut out);
            let want: BTreeSet<NodeId> = routes
                .iter()
                .filter(|(_, filter)| reference_matches(filter, topic_text))
                .map(|(holder, _)| holder.clone())
                .collect();
            prop_assert_eq!(&out, &want.into_iter().collect::<Vec<_>>(), "topic {:?}", topic_text);
        }
    }

    #[test]
    fn routing_wide_levels_match_like_reference(
        routes in prop::collection::vec(
            (arb_node(), prop::collection::vec(0..40u8, 1..4), any::<bool>()), 1..200),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
        topics in prop::collection::vec(prop::collection::vec(0..40u8, 1..4), 1..30),
    ) {
        // Forty level names (with `+` and `#` among them) make nodes wide
        // enough to use the hashed child map, and removals shrink it again.
        let level = |n: u8| match n {
            0 => "+".to_string(),
            n => format!("l{n}"),
        };
        let mut table = RouteTable::new();
        let mut held: Vec<(NodeId, String)> = Vec::new();
        for (holder, levels, ends_with_hash) in &routes {
            let mut filter: Vec<String> = levels.iter().map(|&n| level(n)).collect();
            if *ends_with_hash {
                filter.push("#".into());
            }
            let filter = filter.join("/");
            table.insert(holder, &sub(&filter));
            held.push((holder.clone(), filter));
        }
        for index in &removed {
            if held.is_empty() {
                break;
            }
            let (holder, filter) = held.swap_remove(index.index(held.len()));
            table.remove(&holder, &sub(&filter));
            // The same route may have been drawn twice.
            held.retain(|(h, f)| !(h == &holder && f == &filter));
        }
        let mut out = Vec::new();
        for levels in &topics {
            let topic_text = levels.iter().map(|&n| format!("l{n}")).collect::<Vec<_>>().join("/");
            table.matches(&topic(&topic_text), &mut out);
            let want: BTreeSet<NodeId> = held
                .iter()
                .filter(|(_, filter)| reference_matches(filter, &topic_text))
                .map(|(holder, _)| holder.clone())
                .collect();
            prop_assert_eq!(&out, &want.into_iter().collect::<Vec<_>>(), "topic {:?}", topic_text);
        }
    }

    #[test]
    fn routing_each_matching_group_yields_exactly_one_holder(
        pairs in prop::collection::vec(
            (prop::sample::select(&["g", "h"][..]), arb_filter()), 1..5),
        membership in prop::collection::vec(0..5usize, 1..12),
        topics in prop::collection::vec(arb_topic(), 1..20),
    ) {
        // Each node holds exactly one (group, filter), so the holders of
        // different pairs are disjoint and the output splits cleanly.
        let mut table = RouteTable::new();
        let mut holders_of: BTreeMap<usize, BTreeSet<NodeId>> = BTreeMap::new();
        for (i, &choice) in membership.iter().enumerate() {
            let pair = choice % pairs.len();
            let (group, filter) = &pairs[pair];
            let holder = node(&format!("n{i}"));
            table.insert(&holder, &sub(&format!("$share/{group}/{filter}")));
            holders_of.entry(pair).or_default().insert(holder);
        }
        let mut out = Vec::new();
        for topic_text in &topics {
            table.matches(&topic(topic_text), &mut out);
            let mut expected_len = 0;
            let mut seen_pairs = BTreeSet::new();
            for &pair in holders_of.keys() {
                let (group, filter) = &pairs[pair];
                // The same (group, filter) drawn twice is one group.
                if !seen_pairs.insert((group, filter)) {
                    continue;
                }
                let all_holders: BTreeSet<&NodeId> = holders_of
                    .iter()
                    .filter(|(&p, _)| pairs[p] == pairs[pair])
                    .flat_map(|(_, h)| h)
                    .collect();
                let chosen = out.iter().filter(|n| all_holders.contains(n)).count();
                let wanted = usize::from(reference_matches(filter, topic_text));
                prop_assert_eq!(chosen, wanted, "pair {:?} on {:?}: {:?}", pairs[pair], topic_text, out);
                expected_len += wanted;
            }
            prop_assert_eq!(out.len(), expected_len, "extra nodes in {:?}", out);
        }
    }

    #[test]
    fn routing_shared_groups_share_fairly(
        holders in 1..8usize,
        rounds in 1..20usize,
        noise in prop::collection::vec(arb_topic(), 0..10),
    ) {
        let mut table = RouteTable::new();
        for i in 0..holders {
            table.insert(&node(&format!("n{i}")), &sub("$share/g/jobs/+"));
            table.insert(&node(&format!("n{i}")), &sub("$share/h/jobs/#"));
        }
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for publish in 0..rounds * holders {
            // Topics the groups do not match must not move their turns.
            if let Some(other) = noise.get(publish % (noise.len() + 1)) {
                table.matches(&topic(other), &mut out);
            }
            table.matches(&topic("jobs/1"), &mut out);
            // Both groups match, with the same turn order: one node each time.
            prop_assert_eq!(out.len(), 1);
            *counts.entry(out[0].clone()).or_default() += 1;
        }
        prop_assert_eq!(counts.len(), holders);
        for (holder, &count) in &counts {
            prop_assert!(count.abs_diff(rounds) <= 1, "{:?} got {} of {}", holder, count, rounds * holders);
        }
    }

    #[test]
    fn routing_after_any_updates_equals_a_table_built_from_scratch(
        ops in prop::collection::vec(
            prop_oneof![
                4 => (arb_node(), arb_subscription()).prop_map(|(n, s)| (0u8, n, Some(s))),
                3 => (arb_node(), arb_subscription()).prop_map(|(n, s)| (1u8, n, Some(s))),
                1 => arb_node().prop_map(|n| (2u8, n, None)),
            ],
            0..60),
        topics in prop::collection::vec(arb_topic(), 1..10),
    ) {
        let mut table = RouteTable::new();
        let mut model = Model::new();
        // Removals only hit what was inserted often enough to matter.
        let mut inserted: Vec<(NodeId, Subscription)> = Vec::new();
        for (i, (kind, holder, s)) in ops.into_iter().enumerate() {
            match (kind, s) {
                (0, Some(s)) => {
                    let new = model.entry(holder.clone()).or_default().insert(s.clone());
                    prop_assert_eq!(table.insert(&holder, &s), new);
                    inserted.push((holder, s));
                }
                (1, Some(s)) => {
                    let (holder, s) = match inserted.get(i % (inserted.len() + 1)) {
                        Some(earlier) => earlier.clone(),
                        None => (holder, s),
                    };
                    let held = model.get_mut(&holder).is_some_and(|subs| subs.remove(&s));
                    model.retain(|_, subs| !subs.is_empty());
                    prop_assert_eq!(table.remove(&holder, &s), held);
                }
                _ => {
                    let count = model.remove(&holder).map_or(0, |subs| subs.len());
                    prop_assert_eq!(table.remove_node(&holder), count);
                }
            }
        }
        let mut fresh = RouteTable::new();
        for (holder, subs) in &model {
            for s in subs {
                fresh.insert(holder, s);
            }
        }
        prop_assert_eq!(table.len(), fresh.len());
        prop_assert_eq!(table.node_count(), model.len());
        prop_assert_eq!(table.nodes(), fresh.nodes());
        prop_assert_eq!(table.footprint(), fresh.footprint());
        for (holder, subs) in &model {
            prop_assert_eq!(table.routes_of(holder), subs.iter().cloned().collect::<Vec<_>>());
        }
        let mut out = Vec::new();
        for topic_text in &topics {
            table.matches(&topic(topic_text), &mut out);
            check_routing(&model, topic_text, &out)?;
        }
    }
}

#[test]
fn routing_reference_matcher_agrees_with_topic_filter_matches() {
    // The two single-filter matchers back each other up on every small case.
    let filters: Vec<String> = ["a", "+", "#", "", "$x"]
        .iter()
        .flat_map(|x| {
            ["a", "+", "#", "", "$x"]
                .iter()
                .map(move |y| format!("{x}/{y}"))
        })
        .chain(["a", "+", "#", "$x"].iter().map(|s| s.to_string()))
        .filter(|f| TopicFilter::new(f).is_ok())
        .collect();
    let topics = ["a", "a/a", "/", "a/", "/a", "$x", "$x/a", "a/$x", "a/a/a"];
    for filter in &filters {
        for topic_text in topics {
            assert_eq!(
                TopicFilter::new(filter)
                    .unwrap()
                    .matches(&topic(topic_text)),
                reference_matches(filter, topic_text),
                "{filter:?} vs {topic_text:?}"
            );
        }
    }
}

/// One step of a table's life: members come, change and go as a cluster's
/// do, interleaved with lookups.
#[derive(Clone, Debug)]
enum TableStep {
    Insert(NodeId, Subscription),
    Remove(NodeId, Subscription),
    RemoveNode(NodeId),
    Lookup(String),
}

fn arb_table_step() -> impl Strategy<Value = TableStep> {
    prop_oneof![
        4 => (arb_node(), arb_subscription()).prop_map(|(n, s)| TableStep::Insert(n, s)),
        2 => (arb_node(), arb_subscription()).prop_map(|(n, s)| TableStep::Remove(n, s)),
        1 => arb_node().prop_map(TableStep::RemoveNode),
        3 => arb_topic().prop_map(TableStep::Lookup),
    ]
}

proptest! {
    #[test]
    fn members_that_leave_and_return_are_routed_like_the_model(
        steps in prop::collection::vec(arb_table_step(), 1..120),
    ) {
        let mut table = RouteTable::new();
        let mut model = Model::new();
        let mut out = Vec::new();
        for step in steps {
            match step {
                TableStep::Insert(n, s) => {
                    let added = model.entry(n.clone()).or_default().insert(s.clone());
                    prop_assert_eq!(table.insert(&n, &s), added);
                }
                TableStep::Remove(n, s) => {
                    let held = model.get_mut(&n).is_some_and(|subs| subs.remove(&s));
                    model.retain(|_, subs| !subs.is_empty());
                    prop_assert_eq!(table.remove(&n, &s), held);
                }
                TableStep::RemoveNode(n) => {
                    let held = model.remove(&n).map_or(0, |subs| subs.len());
                    prop_assert_eq!(table.remove_node(&n), held);
                }
                TableStep::Lookup(t) => {
                    table.matches(&topic(&t), &mut out);
                    check_routing(&model, &t, &out)?;
                }
            }
            prop_assert_eq!(table.nodes(), model.keys().cloned().collect::<Vec<_>>());
            for (n, subs) in &model {
                prop_assert_eq!(table.routes_of(n), subs.iter().cloned().collect::<Vec<_>>());
            }
        }
    }
}
