//! Subscribe storms: a broker that restores 100 000 persistent sessions at
//! start must not flood the other cores with one `/sync` per filter, nor
//! make them ask for snapshot after snapshot when requests overtake each
//! other, and every core must end with the same routes.
//!
//! The network here holds every request a round sends until the next round
//! and then delivers them all in a shuffled order, so requests pile up
//! exactly as far as the nodes let them, and overtake each other.

use std::collections::BTreeMap;
use std::time::Duration;

use mqtt_cluster_core::wire::messages::{RouteChange, SyncRequest};
use mqtt_cluster_core::{Config, Instant, Node, NodeId, Now, Transmit, TransportError, WallTime};
use mqtt_cluster_tests::pump::PumpedCluster;
use mqtt_cluster_tests::runtimes::{eventually, Four, Mix, Runtime};

const SECRET: &str = "correct-horse-battery-staple";
const CORES: usize = 4;
const EPOCH_WALL_MS: u64 = 1_700_000_000_000;

/// Subscriptions restored at start, all cores together; a smaller number
/// can be given to compare with code that needs too long for the full one.
fn storm_size() -> usize {
    std::env::var("MQTT_CLUSTER_STORM_SUBSCRIPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn core_config(name: &str) -> Config {
    let clusters: String = (1..=CORES)
        .map(|i| format!("- http://c{i}:8884\n"))
        .collect();
    Config::from_yaml_str(&format!(
        "core: true\nport: 8884\nclusters:\n{clusters}nodeName: {name}\nsecret: {SECRET}\n"
    ))
    .unwrap()
}

/// What the held network saw.
#[derive(Debug, Default)]
struct Tally {
    /// `/sync` requests delivered.
    syncs: usize,
    /// Route snapshots those carried.
    snapshots: usize,
    /// Most `/sync` requests in flight at once from one core to another.
    max_syncs_in_flight: usize,
}

/// Cores whose requests are held for a round, then delivered shuffled.
struct HeldNetwork {
    now: Instant,
    nodes: BTreeMap<NodeId, Node>,
    in_flight: Vec<(NodeId, Transmit)>,
    rng: u64,
    tally: Tally,
}

impl HeldNetwork {
    fn new(seed: u64) -> Self {
        let mut net = HeldNetwork {
            now: Instant::ZERO,
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            rng: seed | 1,
            tally: Tally::default(),
        };
        for i in 1..=CORES {
            let name = format!("c{i}");
            let node = Node::new(core_config(&name), net.now(), i as u64).unwrap();
            net.nodes.insert(id(&name), node);
        }
        net
    }

    fn now(&self) -> Now {
        Now::new(
            self.now,
            WallTime::from_unix_millis(EPOCH_WALL_MS + self.now.as_millis()),
        )
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: the order depends on the seed alone.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Takes every request the nodes want to send into the network.
    fn collect(&mut self) {
        for (name, node) in &mut self.nodes {
            while node.poll_event().is_some() {}
            while let Some(t) = node.poll_transmit() {
                self.in_flight.push((name.clone(), t));
            }
        }
        let mut per_link: BTreeMap<(&NodeId, &str), usize> = BTreeMap::new();
        for (from, t) in &self.in_flight {
            if t.request.uri().path() == "/sync" {
                *per_link.entry((from, t.to.as_str())).or_default() += 1;
            }
        }
        let most = per_link.values().copied().max().unwrap_or(0);
        self.tally.max_syncs_in_flight = self.tally.max_syncs_in_flight.max(most);
    }

    /// Delivers everything in flight, shuffled; what the answers make the
    /// nodes send waits for the next round.
    fn round(&mut self) {
        self.collect();
        let mut batch = std::mem::take(&mut self.in_flight);
        for i in (1..batch.len()).rev() {
            let j = (self.next_random() % (i as u64 + 1)) as usize;
            batch.swap(i, j);
        }
        let now = self.now();
        for (from, transmit) in batch {
            let target = transmit
                .to
                .trim_start_matches("http://")
                .split(':')
                .next()
                .map(id);
            if transmit.request.uri().path() == "/sync" {
                self.tally.syncs += 1;
                let body: SyncRequest = serde_json::from_slice(transmit.request.body()).unwrap();
                self.tally.snapshots += body
                    .routes
                    .iter()
                    .filter(|u| matches!(u.change, RouteChange::Snapshot { .. }))
                    .count();
            }
            let result = match target.and_then(|t| self.nodes.get_mut(&t)) {
                Some(peer) => Ok(peer.handle_request(now, transmit.request)),
                None => Err(TransportError::Connect("no such host".into())),
            };
            if let Some(node) = self.nodes.get_mut(&from) {
                node.handle_response(now, transmit.id, result);
            }
        }
        self.collect();
    }

    /// Moves the clock on by `by`, firing timers, one round per step.
    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let now = self.now();
        for node in self.nodes.values_mut() {
            if node.poll_timeout().is_some_and(|t| t <= now.instant) {
                node.handle_timeout(now);
            }
        }
        self.round();
    }

    fn run_for(&mut self, total: Duration, step: Duration) {
        let mut passed = Duration::ZERO;
        while passed < total {
            self.advance(step);
            passed += step;
        }
    }
}

#[test]
fn a_hundred_thousand_subscriptions_at_start_keep_syncs_bounded_and_converge() {
    let total = storm_size();
    let mut net = HeldNetwork::new(7);
    net.run_for(Duration::from_secs(3), Duration::from_millis(100));
    for node in net.nodes.values() {
        let cores = node.status().members.len();
        assert_eq!(cores, CORES, "{} sees {cores} members", node.id());
    }
    let before = std::mem::take(&mut net.tally);
    assert!(before.syncs > 0);

    // Every core restores its share of the sessions, one subscribe call per
    // filter, a hundred calls between two network rounds of 20 ms.
    let per_core = total / CORES;
    let names: Vec<NodeId> = net.nodes.keys().cloned().collect();
    let mut done = 0;
    while done < per_core {
        let chunk = 100.min(per_core - done);
        let now = net.now();
        for name in &names {
            let node = net.nodes.get_mut(name).unwrap();
            for i in done..done + chunk {
                let filter = format!("sessions/{name}/{i}/#");
                assert!(node.subscribe(now, &filter).unwrap());
            }
        }
        done += chunk;
        net.advance(Duration::from_millis(20));
    }
    net.run_for(Duration::from_secs(5), Duration::from_millis(20));

    let tally = &net.tally;
    eprintln!("{per_core} subscriptions per core on {CORES} cores: {tally:?}");
    let digests: Vec<String> = net
        .nodes
        .values()
        .map(|n| n.status().routes_digest)
        .collect();
    for node in net.nodes.values() {
        assert_eq!(node.routes().len(), per_core * CORES, "{}", node.id());
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "routes diverge: {digests:?}"
    );
    assert!(
        tally.max_syncs_in_flight <= 1,
        "{} syncs in flight from one core to another",
        tally.max_syncs_in_flight
    );
    assert_eq!(tally.snapshots, 0, "route snapshots sent in the storm");
    // A few requests per heartbeat and per peer, not one per filter.
    let links = CORES * (CORES - 1);
    assert!(
        tally.syncs <= links * 600,
        "{} syncs for {total} subscriptions",
        tally.syncs
    );
}

#[test]
fn subscribe_many_on_a_worker_reaches_every_core_in_a_few_requests() {
    let worker = |name: &str, home: &str| {
        Config::from_yaml_str(&format!(
            "clusters:\n- http://{home}:8884\nnodeName: {name}\nsecret: {SECRET}\n"
        ))
        .unwrap()
    };
    let core = |name: &str| {
        Config::from_yaml_str(&format!(
            "core: true\nport: 8884\nclusters:\n- http://c1:8884\n- http://c2:8884\n\
             nodeName: {name}\nsecret: {SECRET}\n"
        ))
        .unwrap()
    };
    let mut cluster = PumpedCluster::new();
    cluster.add(core("c1"), 1);
    cluster.add(core("c2"), 2);
    cluster.add(worker("w1", "c1"), 3);
    cluster.add(worker("w2", "c2"), 4);
    cluster.run_for(Duration::from_secs(3));
    cluster.log.clear();

    let total = storm_size();
    let filters: Vec<String> = (0..total).map(|i| format!("devices/{i}/cmd")).collect();
    for chunk in filters.chunks(10_000) {
        let now = cluster.now();
        let refs = chunk.iter().map(String::as_str);
        let first = cluster
            .node_mut(&id("w1"))
            .subscribe_many(now, refs)
            .unwrap();
        assert_eq!(first, chunk.len());
        cluster.pump();
    }
    cluster.run_for(Duration::from_secs(2));
    for node in ["c1", "c2", "w1", "w2"] {
        assert_eq!(cluster.node(&id(node)).routes().len(), total, "{node}");
    }
    let count = |path: &str| cluster.log.iter().filter(|(_, _, p, _)| p == path).count();
    let syncs = count("/sync");
    eprintln!(
        "{total} filters: {} /routes, {syncs} /sync",
        count("/routes")
    );
    assert!(count("/routes") <= total / 10_000 + 4);
    assert!(syncs <= total / 4096 + 10, "{syncs} syncs");

    // One bad filter refuses the whole call and changes nothing.
    let now = cluster.now();
    let w1 = cluster.node_mut(&id("w1"));
    assert!(w1.subscribe_many(now, ["fine/#", "bad/#/x"]).is_err());
    assert!(w1
        .unsubscribe_many(now, ["devices/0/cmd", "bad/#/x"])
        .is_err());
    assert_eq!(w1.routes().len(), total);

    let now = cluster.now();
    let refs = filters.iter().map(String::as_str);
    let last = cluster
        .node_mut(&id("w1"))
        .unsubscribe_many(now, refs)
        .unwrap();
    assert_eq!(last, total);
    cluster.pump();
    cluster.run_for(Duration::from_secs(2));
    for node in ["c1", "c2", "w1", "w2"] {
        assert_eq!(cluster.node(&id(node)).routes().len(), 0, "{node}");
    }
}

/// Both handles take many filters in one call, over real HTTP, on every
/// mix of runtimes; a bad filter refuses the whole call.
#[test]
fn both_handles_subscribe_and_unsubscribe_many() {
    let mixes = [
        (Runtime::Tokio, Runtime::Tokio),
        (Runtime::Blocking, Runtime::Blocking),
        (Runtime::Tokio, Runtime::Blocking),
        (Runtime::Blocking, Runtime::Tokio),
    ];
    for (cores, workers) in mixes {
        let four = Four::start(Mix { cores, workers });
        let filters: Vec<String> = (0..20_000).map(|i| format!("devices/{i}/cmd")).collect();
        assert_eq!(four.w1.subscribe_many(filters.clone()), Ok(20_000));
        assert_eq!(four.core2.subscribe_many(vec!["ops/#".into()]), Ok(1));
        eventually("every node holds the routes", || {
            four.all()
                .iter()
                .all(|n| n.status().is_some_and(|s| s.routes == 20_001))
        });
        let bad = vec!["fine/#".to_owned(), "bad/#/x".to_owned()];
        assert!(four.w1.subscribe_many(bad.clone()).is_err());
        assert!(four.w1.unsubscribe_many(bad).is_err());
        assert_eq!(four.w1.status().unwrap().local_subscriptions, 20_000);
        assert_eq!(four.w1.unsubscribe_many(filters), Ok(20_000));
        eventually("every node dropped the routes", || {
            four.all()
                .iter()
                .all(|n| n.status().is_some_and(|s| s.routes == 1))
        });
        for node in four.all() {
            node.shutdown();
        }
    }
}
