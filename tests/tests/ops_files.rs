//! `ops/prometheus-alerts.yml` and `ops/grafana-dashboard.json` use only
//! metrics a core exports, each as what it is: `rate` and `increase` only
//! over counters, and only label names the metric carries. A renamed metric
//! breaks this test, not an operator's alerting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mqtt_cluster_core::{Config, Instant, Node, Now, WallTime};
use serde_json::Value;

fn ops(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a core's `/metrics` declares: each family's type, and the label
/// names its samples carry (for the families that have samples on a fresh
/// core).
fn exported() -> (BTreeMap<String, String>, BTreeMap<String, BTreeSet<String>>) {
    let config = Config::from_yaml_str(
        "core: true\nhost: 127.0.0.1\nport: 18000\nnodeName: core1\n\
         clusters: [http://127.0.0.1:18000]\nsecret: ops-files-secret\n",
    )
    .unwrap();
    let now = Now::new(
        Instant::from_millis(0),
        WallTime::from_unix_millis(1_700_000_000_000),
    );
    let node = Node::new(config, now, 1).unwrap();
    let text = node.metrics();
    let mut kinds = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            kinds.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') {
            if let Some((name, rest)) = line.split_once('{') {
                let keys = rest
                    .split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim().to_owned()));
                labels.entry(name.to_owned()).or_default().extend(keys);
            }
        }
    }
    (kinds, labels)
}

/// Every use of an `mqtt_cluster_` metric in a PromQL expression: its name,
/// the label names of its selector, and whether `rate(` or `increase(`
/// takes it.
fn uses(expr: &str) -> Vec<(String, Vec<String>, bool)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("mqtt_cluster_") {
        let before = &rest[..at];
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut keys = Vec::new();
        if tail[end..].starts_with('{') {
            let close = tail[end..].find('}').expect("a closed selector");
            keys = tail[end + 1..end + close]
                .split(',')
                .filter_map(|m| m.split(['=', '!', '~']).next().map(|k| k.trim().to_owned()))
                .filter(|k| !k.is_empty())
                .collect();
        }
        let over_time =
            before.trim_end().ends_with("rate(") || before.trim_end().ends_with("increase(");
        found.push((name, keys, over_time));
        rest = &tail[end..];
    }
    found
}

fn check(source: &str, exprs: &[String]) -> usize {
    let (kinds, labels) = exported();
    let mut checked = 0;
    for expr in exprs {
        for (name, keys, over_time) in uses(expr) {
            let kind = kinds
                .get(&name)
                .unwrap_or_else(|| panic!("{source}: {name} is not exported (in `{expr}`)"));
            if over_time {
                assert_eq!(
                    kind, "counter",
                    "{source}: rate/increase over {kind} {name}"
                );
            }
            if let Some(known) = labels.get(&name) {
                for key in &keys {
                    assert!(
                        known.contains(key),
                        "{source}: {name} has no label {key} (it has {known:?})"
                    );
                }
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn the_alerting_rules_use_only_exported_metrics() {
    let rules: serde_yaml::Value = serde_yaml::from_str(&ops("prometheus-alerts.yml")).unwrap();
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name} has a summary"
            );
            exprs.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() >= 10, "the rules file holds its alerts");
    let checked = check("prometheus-alerts.yml", &exprs);
    assert!(
        checked >= exprs.len() - 1,
        "all but `up` use the cluster's metrics"
    );
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    let dashboard: Value = serde_json::from_str(&ops("grafana-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() >= 12, "the dashboard has its panels");
    let checked = check("grafana-dashboard.json", &exprs);
    assert_eq!(
        checked,
        exprs.len(),
        "every target uses one of the cluster's metrics at least"
    );
}

#[test]
fn the_checker_catches_what_it_is_for() {
    let (kinds, _) = exported();
    assert!(
        kinds.len() > 20,
        "a core exports its families even before any sample"
    );
    assert_eq!(
        uses("sum by (x) (rate(mqtt_cluster_dropped_total{peer=\"a\",reason!=\"b\"}[5m]))"),
        [(
            "mqtt_cluster_dropped_total".to_owned(),
            vec!["peer".to_owned(), "reason".to_owned()],
            true
        )]
    );
    let unknown = std::panic::catch_unwind(|| check("x", &["mqtt_cluster_nothing_total".into()]));
    assert!(unknown.is_err(), "an unknown metric fails");
    let gauge = std::panic::catch_unwind(|| check("x", &["rate(mqtt_cluster_held[1m])".into()]));
    assert!(gauge.is_err(), "rate over a gauge fails");
    let label =
        std::panic::catch_unwind(|| check("x", &["mqtt_cluster_members{status=\"dead\"}".into()]));
    assert!(label.is_err(), "a label the metric does not carry fails");
}
