//! `mqtt-cluster simulate`: a whole cluster on the deterministic simulator,
//! with faults, every step checked against the cluster's guarantees.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mqtt_cluster_core::config::parse_duration;
use mqtt_cluster_core::sim::{Action, NetworkModel, Simulation, TrafficCount, Violation};
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, NodeId};
use std::collections::BTreeMap;

use crate::Failure;

/// A fault the run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Fault {
    /// Requests are lost (2%) and duplicated (2%) throughout the faulty part.
    Loss,
    /// A fifth of the workers is cut off from the cores for a while.
    Partition,
    /// One core crashes, then restarts empty.
    Crash,
    /// One node's links go down and up repeatedly.
    Flap,
    /// None of the above: a quiet cluster (what keeping it together costs).
    None,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in all; one in ten (at least one) is a core unless `--cores`
    /// says otherwise.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// How many of the nodes are cores (at least one, and one worker
    /// stays); the crash fault takes the first one down.
    #[arg(long)]
    cores: Option<usize>,
    /// The seed: the same seed gives the same run, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults to inject (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Fault::Loss, Fault::Partition, Fault::Crash])]
    faults: Vec<Fault>,
    /// Simulated time, e.g. 60s or 10m.
    #[arg(long, default_value = "60s", value_parser = duration)]
    duration: Duration,
    /// Messages published per simulated second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Write every event of the run, one per line, to this file.
    #[arg(long)]
    transcript: Option<std::path::PathBuf>,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn config(name: &str, core: bool, cores: usize, rotate: usize) -> Result<Config, Failure> {
    let mut urls: Vec<String> = (1..=cores)
        .map(|i| format!("http://core{i}:8884"))
        .collect();
    urls.rotate_left(rotate % cores);
    let yaml = format!(
        "core: {core}\nnodeName: {name}\nsecret: simulated-cluster-secret\nclusters: [{}]\n\
         heartbeatInterval: 200ms\nsuspectTimeout: 1s\ndeadTimeout: 3s\nrequestTimeout: 1s\n",
        urls.join(", ")
    );
    Ok(Config::from_yaml_str(&yaml)?)
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Failure> {
    let nodes = args.nodes.max(2);
    let cores = args.cores.unwrap_or(nodes / 10).clamp(1, nodes - 1);
    let workers = nodes - cores;
    let mut sim = Simulation::new(args.seed, NetworkModel::reliable());
    if args.transcript.is_some() {
        sim = sim.record_transcript();
    }
    let mut sim = sim.with_replay_hint(format!(
        "mqtt-cluster simulate --nodes {} --cores {cores} --seed {} --faults {} --duration {}s \
         --rate {}",
        args.nodes,
        args.seed,
        args.faults
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(","),
        args.duration.as_secs(),
        args.rate
    ));
    let core_ids: Vec<NodeId> = (1..=cores)
        .map(|i| config(&format!("core{i}"), true, cores, i - 1).map(|c| sim.add_node(c)))
        .collect::<Result<_, _>>()?;
    let worker_ids: Vec<NodeId> = (1..=workers)
        .map(|i| config(&format!("w{i}"), false, cores, i).map(|c| sim.add_node(c)))
        .collect::<Result<_, _>>()?;
    let all: Vec<NodeId> = core_ids.iter().chain(&worker_ids).cloned().collect();

    let seconds = args.duration.as_secs().max(10);
    let bar = ProgressBar::new(seconds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} simulated s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut formed = None;
    let outcome = drive(
        &mut sim,
        &args,
        (&core_ids, &worker_ids, &all),
        seconds,
        &bar,
        &mut formed,
    );
    bar.finish_and_clear();

    if let (Some(path), Some(lines)) = (&args.transcript, sim.transcript()) {
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let report = sim.report();
    println!("seed              {}", report.seed);
    println!("nodes             {cores} cores, {workers} workers");
    println!(
        "simulated         {} ms in {} events",
        report.simulated_ms, report.steps
    );
    println!("published         {}", report.published);
    println!("delivered         {}", report.delivered);
    println!("dropped           {}", report.dropped);
    for (reason, count) in &report.dropped_by_reason {
        println!("  {reason:<16}{count}");
    }
    println!(
        "confirmed         {} (QoS 1/2 publishes every destination took)",
        report.confirmed
    );
    println!(
        "not confirmed     {} (reported to the origin: destination gone, expired)",
        report.not_confirmed
    );
    if report.delivered_again_after_restart > 0 {
        println!(
            "  again after restart {} (copies in flight to a crashed destination's old process)",
            report.delivered_again_after_restart
        );
    }
    println!("routing checks    {}", report.routing_checks);
    let p = report.route_propagation;
    println!(
        "route propagation {} subscriptions reached every core: p50 {} ms, p99 {} ms, max {} ms",
        p.count, p.p50_ms, p.p99_ms, p.max_ms
    );
    println!("traffic per node per simulated second (requests sent, body bytes both ways; core /stream: chunks and bytes pushed)");
    println!("  the whole run:");
    print_traffic(
        &report.traffic,
        report.simulated_ms,
        &BTreeMap::new(),
        0,
        cores,
        workers,
    );
    if let Some((at_ms, traffic)) = &formed {
        // The cluster formed (every node joined, every join announced to
        // every node) in the first quarter: what follows is the cost of
        // keeping it together, which is what a cluster pays for ever.
        println!("  after the first quarter ({} s on):", at_ms / 1000);
        print_traffic(
            &report.traffic,
            report.simulated_ms,
            traffic,
            *at_ms,
            cores,
            workers,
        );
    }
    let (members, routes) = all
        .iter()
        .filter_map(|id| sim.node(id).map(|n| n.stats()))
        .fold((0, 0), |(m, r), s| {
            (m + s.member_resyncs, r + s.route_resyncs)
        });
    println!(
        "resyncs           {members} whole member lists, {routes} whole route sets \
         (to nodes with no usable log position)"
    );
    println!(
        "reordered         {} (after path changes)",
        report.reordered
    );
    println!("transcript hash   {}", report.transcript_hash);
    match outcome {
        Ok(()) => {
            println!("violations        0");
            Ok(ExitCode::SUCCESS)
        }
        Err(violation) => {
            println!("violations        1\n{violation}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Requests and bytes per node per simulated second between `since_ms`
/// (with the counts then, `before`) and the end, by endpoint and the
/// sender's role: what keeping the cluster together costs (`/forward`,
/// `/ack`, `/confirm` and the stream's message frames carry the traffic).
fn print_traffic(
    traffic: &BTreeMap<String, TrafficCount>,
    simulated_ms: u64,
    before: &BTreeMap<String, TrafficCount>,
    since_ms: u64,
    cores: usize,
    workers: usize,
) {
    let seconds = (simulated_ms.saturating_sub(since_ms) as f64 / 1000.0).max(1.0);
    let mut paths: Vec<&str> = traffic
        .keys()
        .filter_map(|k| k.split_once(' ').map(|(_, path)| path))
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let per = |role: &str, path: &str, nodes: usize| {
        let key = format!("{role} {path}");
        let count = traffic.get(&key).copied().unwrap_or_default();
        let earlier = before.get(&key).copied().unwrap_or_default();
        let n = nodes.max(1) as f64 * seconds;
        (
            count.requests.saturating_sub(earlier.requests) as f64 / n,
            count.bytes.saturating_sub(earlier.bytes) as f64 / n,
        )
    };
    let mut table = crate::table::Table::new(&[
        "endpoint",
        "per core: req/s",
        "bytes/s",
        "per worker: req/s",
        "bytes/s",
    ]);
    let mut total = (0.0, 0.0);
    for path in paths {
        let (cr, cb) = per("core", path, cores);
        let (wr, wb) = per("worker", path, workers);
        total = (total.0 + cb, total.1 + wb);
        table.row(vec![
            path.to_owned(),
            format!("{cr:.2}"),
            format!("{cb:.0}"),
            format!("{wr:.2}"),
            format!("{wb:.0}"),
        ]);
    }
    table.row(vec![
        "all".to_owned(),
        String::new(),
        format!("{:.0}", total.0),
        String::new(),
        format!("{:.0}", total.1),
    ]);
    print!("{}", table.render());
}

/// Nodes by role: cores, workers, all.
type Layout<'a> = (&'a [NodeId], &'a [NodeId], &'a [NodeId]);

fn drive(
    sim: &mut Simulation,
    args: &Args,
    (cores, workers, all): Layout<'_>,
    seconds: u64,
    bar: &ProgressBar,
    formed: &mut Option<(u64, BTreeMap<String, TrafficCount>)>,
) -> Result<(), Violation> {
    let second = Duration::from_secs(1);
    sim.run_for(second * 3)?;
    for (i, node) in all.iter().enumerate().take(8) {
        sim.act(Action::Subscribe {
            node: node.clone(),
            filter: format!("room/{}/#", i % 4),
        })?;
    }
    // Faults during the middle half; the last quarter is quiet, so that
    // convergence and no loss can be checked at the end.
    let faulty = seconds / 4..seconds * 3 / 4;
    let mut flapping = false;
    for s in 0..seconds {
        if s == faulty.start {
            let report = sim.report();
            *formed = Some((report.simulated_ms, report.traffic));
            if args.faults.contains(&Fault::Loss) {
                sim.set_network(NetworkModel::lossy(0.02, 0.02));
            }
            if args.faults.contains(&Fault::Partition) {
                let cut: Vec<NodeId> = workers.iter().step_by(5).cloned().collect();
                sim.act(Action::Partition {
                    side_a: cut,
                    side_b: cores.to_vec(),
                })?;
            }
            if args.faults.contains(&Fault::Crash) {
                sim.act(Action::Crash {
                    node: cores[0].clone(),
                })?;
            }
        }
        if faulty.contains(&s) && args.faults.contains(&Fault::Flap) {
            if flapping {
                sim.act(Action::Heal)?;
            } else if let Some(node) = all.get((s as usize * 7) % all.len()) {
                sim.act(Action::Partition {
                    side_a: vec![node.clone()],
                    side_b: all.to_vec(),
                })?;
            }
            flapping = !flapping;
        }
        if s == faulty.end {
            sim.set_network(NetworkModel::reliable());
            sim.act(Action::Heal)?;
            if args.faults.contains(&Fault::Crash) {
                sim.act(Action::Restart {
                    node: cores[0].clone(),
                })?;
            }
        }
        for k in 0..args.rate {
            let Some(node) = all.get(((s * args.rate + k) as usize * 13) % all.len()) else {
                continue;
            };
            sim.schedule(
                Duration::from_millis(k * 1000 / args.rate.max(1)),
                Action::Publish {
                    node: node.clone(),
                    topic: format!("room/{}/t", (s + k) % 6),
                    payload: format!("{s}.{k}"),
                    qos: if k % 2 == 0 {
                        Qos::AtMostOnce
                    } else {
                        Qos::AtLeastOnce
                    },
                },
            );
        }
        sim.run_for(second)?;
        bar.inc(1);
        bar.set_message(format!("{} delivered", sim.report().delivered));
    }
    sim.run_for(second * 10)?;
    sim.check_converged()?;
    sim.check_no_loss()
}
