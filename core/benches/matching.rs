//! How fast `RouteTable::matches` finds the receivers of a publish among
//! 100 000 filters held by 100 nodes, and how much memory the table takes
//! per filter; a linear scan over the same filters is the baseline.
//!
//! Run: `cargo bench -p mqtt-cluster-core --bench matching -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use mqtt_cluster_core::routing::{RouteTable, Subscription, TopicFilter, TopicName};
use mqtt_cluster_core::NodeId;

/// The process's resident memory in bytes, from `/proc/self/status`.
///
/// A counting `#[global_allocator]` would be more precise, but it needs
/// `unsafe impl GlobalAlloc`, and the workspace lints forbid unsafe code in
/// every target. Resident memory includes the allocator's own overhead per
/// block, so it is the figure that matters on a real machine.
fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

const NODES: usize = 100;
const SITES: usize = 1000;
/// Devices per site with an exact `temp` filter: 1000 * 70 = 70% of 100k.
const EXACT_DEVICES: usize = 70;
/// Devices per site with a `#` filter: 1000 * 9 + 1000 site-wide = 10%.
const HASH_DEVICES: usize = 9;
/// Each `+` family is 1000 * 10 = 10%, so 20% in all.
const METRICS: [&str; 10] = [
    "temp", "hum", "co2", "pm25", "lux", "noise", "volt", "amp", "rssi", "batt",
];

/// 100 000 filters: 70% exact, 20% with `+`, 10% with `#`.
fn workload_filters() -> Vec<String> {
    let mut filters = Vec::with_capacity(100_000);
    for site in 0..SITES {
        for device in 0..EXACT_DEVICES {
            filters.push(format!("site/{site}/dev/{device}/temp"));
        }
    }
    for site in 0..SITES {
        for metric in METRICS {
            filters.push(format!("site/{site}/dev/+/{metric}"));
        }
    }
    for device in 0..SITES {
        for metric in METRICS {
            filters.push(format!("site/+/dev/{device}/{metric}"));
        }
    }
    for site in 0..SITES {
        filters.push(format!("site/{site}/#"));
        for device in 0..HASH_DEVICES {
            filters.push(format!("site/{site}/dev/{device}/#"));
        }
    }
    filters
}

/// A fixed pseudo-random sequence, so every run measures the same topics.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound
    }
}

#[derive(Clone, Copy, Debug)]
enum TopicKind {
    /// Matches an exact filter (and `+`/`#` ones on the way).
    Exact,
    /// Matches only `+` filters and the site-wide `#`.
    Plus,
    /// Matches only `#` filters.
    Hash,
    /// Walks deep into the trie and matches nothing.
    DeepMiss,
    /// Fails at the first level.
    ShallowMiss,
}

fn topic_of(kind: TopicKind, rng: &mut Lcg) -> TopicName {
    let site = rng.below(SITES);
    let text = match kind {
        TopicKind::Exact => format!("site/{site}/dev/{}/temp", rng.below(EXACT_DEVICES)),
        TopicKind::Plus => format!(
            "site/{site}/dev/{}/{}",
            EXACT_DEVICES + rng.below(SITES - EXACT_DEVICES),
            METRICS[1 + rng.below(METRICS.len() - 1)]
        ),
        TopicKind::Hash => format!("site/{site}/dev/{}/alarm/1", rng.below(HASH_DEVICES)),
        TopicKind::DeepMiss => format!("site/{}/dev/{}/temp", SITES + site, SITES + site),
        TopicKind::ShallowMiss => format!("plant/{site}/dev/1/temp"),
    };
    TopicName::new(&text).expect("workload topics are valid")
}

/// 40% exact, 25% `+`, 15% `#`, 20% misses (half deep, half shallow).
fn topic_mix(count: usize) -> Vec<TopicName> {
    let mut rng = Lcg(7);
    (0..count)
        .map(|_| {
            let kind = match rng.below(20) {
                0..=7 => TopicKind::Exact,
                8..=12 => TopicKind::Plus,
                13..=15 => TopicKind::Hash,
                16..=17 => TopicKind::DeepMiss,
                _ => TopicKind::ShallowMiss,
            };
            topic_of(kind, &mut rng)
        })
        .collect()
}

fn node_ids() -> Vec<NodeId> {
    (0..NODES)
        .map(|i| NodeId::new(&format!("node-{i:03}")).expect("valid node name"))
        .collect()
}

/// The baseline: every filter checked one by one.
struct LinearScan {
    filters: Vec<(TopicFilter, usize)>,
}

impl LinearScan {
    fn matches(&self, topic: &TopicName, nodes: &[NodeId], out: &mut Vec<NodeId>) {
        out.clear();
        for (filter, holder) in &self.filters {
            if filter.matches(topic) {
                out.push(nodes[*holder].clone());
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

fn build_and_report_memory(subscriptions: &[Subscription], nodes: &[NodeId]) -> RouteTable {
    let before = resident_bytes();
    let mut table = RouteTable::new();
    for (i, sub) in subscriptions.iter().enumerate() {
        table.insert(&nodes[i % NODES], sub);
    }
    let after = resident_bytes();
    let filters = subscriptions.len() as f64;
    let text_bytes: usize = subscriptions
        .iter()
        .map(|s| s.filter().as_str().len())
        .sum();
    let average_text = text_bytes as f64 / filters;
    match (before, after) {
        (Some(before), Some(after)) => {
            let bytes = after.saturating_sub(before) as f64;
            println!(
                "memory: {} filters over {} nodes: resident memory grew by {:.1} MiB = \
                 {:.1} bytes/filter; average filter text {:.1} bytes => \
                 {:.1} bytes/filter beyond the text",
                subscriptions.len(),
                table.node_count(),
                bytes / (1024.0 * 1024.0),
                bytes / filters,
                average_text,
                bytes / filters - average_text,
            );
        }
        _ => println!("memory: /proc/self/status unavailable, not measured"),
    }
    table
}

fn matching(c: &mut Criterion) {
    let nodes = node_ids();
    let filters = workload_filters();
    assert_eq!(filters.len(), 100_000);
    let subscriptions: Vec<Subscription> = filters
        .iter()
        .map(|f| Subscription::parse(f).expect("workload filters are valid"))
        .collect();
    let mut table = build_and_report_memory(&subscriptions, &nodes);
    let mix = topic_mix(1024);

    let mut group = c.benchmark_group("matching_100k_filters");
    let mut out = Vec::new();
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("route_table/mix", |b| {
        b.iter(|| {
            for topic in &mix {
                table.matches(black_box(topic), &mut out);
                black_box(&out);
            }
        })
    });
    for kind in [
        TopicKind::Exact,
        TopicKind::Plus,
        TopicKind::Hash,
        TopicKind::DeepMiss,
        TopicKind::ShallowMiss,
    ] {
        let mut rng = Lcg(11);
        let topics: Vec<TopicName> = (0..256).map(|_| topic_of(kind, &mut rng)).collect();
        group.throughput(Throughput::Elements(topics.len() as u64));
        group.bench_function(format!("route_table/{kind:?}"), |b| {
            b.iter(|| {
                for topic in &topics {
                    table.matches(black_box(topic), &mut out);
                    black_box(&out);
                }
            })
        });
    }

    let scan = LinearScan {
        filters: filters
            .iter()
            .enumerate()
            .map(|(i, f)| (TopicFilter::new(f).expect("valid"), i % NODES))
            .collect(),
    };
    // Spot-check that the two agree before timing the slow one.
    let mut expected = Vec::new();
    for topic in mix.iter().take(64) {
        scan.matches(topic, &nodes, &mut expected);
        table.matches(topic, &mut out);
        assert_eq!(out, expected, "disagreement on {topic}");
    }
    let few = &mix[..16];
    group.sample_size(10);
    group.throughput(Throughput::Elements(few.len() as u64));
    group.bench_function("linear_scan_baseline/mix", |b| {
        b.iter(|| {
            for topic in few {
                scan.matches(black_box(topic), &nodes, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

/// Runs the benches with criterion's command-line options. Written out
/// because the functions `criterion_group!`/`criterion_main!` generate carry
/// no docs, which the workspace lints require.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    matching(&mut criterion);
    criterion.final_summary();
}
