//! `mqtt-cluster-chaos`: three core brokers and three worker brokers, each
//! in its own network namespace, QoS 1 publishers and subscribers on every
//! one of them, and faults drawn from a seed; then what every subscriber
//! received of what was confirmed. Run as root:
//!
//! ```text
//! mqtt-cluster-chaos run --seed 7 --duration 2m --faults partition,kill,pause
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use mqtt_cluster_rmqtt_broker::chaos::checker::{self, FaultRecord};
use mqtt_cluster_rmqtt_broker::chaos::clients::{self, Published, Received};
use mqtt_cluster_rmqtt_broker::chaos::faults::{plan, Fault, FaultKind};
use mqtt_cluster_rmqtt_broker::chaos::health::{self, unix_ms};
use mqtt_cluster_rmqtt_broker::chaos::netns::{self, Network};
use mqtt_cluster_rmqtt_broker::chaos::process::BrokerProcess;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mcchaos";
const SUBNET: u8 = 214;
const SECRET: &str = "chaos-suite-cluster-secret";
const CORES: [&str; 3] = ["core1", "core2", "core3"];
const WORKERS: [&str; 3] = ["worker1", "worker2", "worker3"];
const TIMINGS: &str =
    "heartbeatInterval: 200ms\nsuspectTimeout: 1s\ndeadTimeout: 3s\nrequestTimeout: 1s\n";

/// Real brokers on a faulty network.
#[derive(Debug, Parser)]
#[command(name = "mqtt-cluster-chaos", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Builds the network, starts the brokers and the clients, injects the
    /// planned faults, and reports what arrived. Needs root and `ip`.
    Run {
        #[command(flatten)]
        schedule: Schedule,
        /// Messages per second per publisher.
        #[arg(long, default_value_t = 20)]
        rate: u64,
        /// Fail (exit 2) instead of skipping when namespaces are not
        /// available.
        #[arg(long)]
        require: bool,
        /// The broker binary (default: `mqtt-cluster-broker` beside this one).
        #[arg(long)]
        broker: Option<PathBuf>,
    },
    /// Prints the faults a seed plans, without running anything.
    Plan {
        #[command(flatten)]
        schedule: Schedule,
    },
    /// Removes what an interrupted run left behind: its namespaces, and what
    /// still runs in them.
    Cleanup,
    /// Runs the clients (inside the clients' namespace; `run` starts it).
    #[command(hide = true)]
    Clients {
        #[arg(long, value_delimiter = ',')]
        brokers: Vec<String>,
        #[arg(long)]
        rate: u64,
        #[arg(long, value_parser = duration)]
        duration: Duration,
    },
}

/// Which faults, when: what `run` and `plan` share.
#[derive(Debug, Args)]
struct Schedule {
    /// The seed the faults are drawn from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the clients publish, e.g. 2m.
    #[arg(long, default_value = "2m", value_parser = duration)]
    duration: Duration,
    /// Fault kinds (partition, kill, pause, delay, loss, duplicate,
    /// reorder; the last four need netem).
    #[arg(long, value_delimiter = ',', default_value = "partition,kill,pause")]
    faults: Vec<FaultKind>,
}

fn duration(text: &str) -> Result<Duration, String> {
    mqtt_cluster_core::config::parse_duration(text).map_err(|e| e.to_string())
}

/// What the clients saw: per broker, in the order of `--brokers`, its
/// publisher's log (publisher `i` publishes on broker `i`) and its
/// subscriber's.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    published: Vec<Published>,
    received: Vec<Received>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqtt-cluster-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        Command::Plan {
            schedule:
                Schedule {
                    seed,
                    duration,
                    faults,
                },
        } => {
            let hosts: Vec<String> = CORES
                .iter()
                .chain(&WORKERS)
                .map(|s| (*s).to_owned())
                .collect();
            for scheduled in plan(seed, &hosts, &faults, duration) {
                println!(
                    "[{:7.1}s] {} for {:.1} s",
                    scheduled.at.as_secs_f64(),
                    scheduled.fault,
                    scheduled.lasts.as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup => netns::remove_leftovers(PREFIX)
            .map(|_| ExitCode::SUCCESS)
            .map_err(|e| e.to_string()),
        Command::Clients {
            brokers,
            rate,
            duration,
        } => runtime.block_on(run_clients(brokers, rate, duration)),
        Command::Run {
            schedule:
                Schedule {
                    seed,
                    duration,
                    faults,
                },
            rate,
            require,
            broker,
        } => runtime.block_on(async {
            tokio::select! {
                outcome = run(seed, duration, faults, rate, require, broker) => outcome,
                signal = interrupted() => {
                    // The run's brokers and network were dropped with it,
                    // and whatever still ran in its namespaces killed.
                    eprintln!("interrupted ({signal}): brokers and clients stopped, namespaces removed");
                    Ok(ExitCode::from(130))
                }
            }
        }),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mqtt-cluster-chaos: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_clients(
    brokers: Vec<String>,
    rate: u64,
    duration: Duration,
) -> Result<ExitCode, String> {
    let stop_subscribers = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    let mut ready = Vec::new();
    for (i, broker) in brokers.iter().enumerate() {
        let flag = Arc::new(AtomicBool::new(false));
        ready.push(flag.clone());
        subscribers.push(tokio::spawn(clients::subscribe(
            i as u64,
            broker.clone(),
            stop_subscribers.clone(),
            flag,
        )));
    }
    let started = Instant::now();
    while !ready.iter().all(|r| r.load(Ordering::Relaxed)) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the subscribers did not all subscribe within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Subscriptions spread to every broker.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("publishing");
    let stop_publishers = Arc::new(AtomicBool::new(false));
    let drain = Duration::from_secs(20);
    let publishers: Vec<_> = brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            tokio::spawn(clients::publish(
                i as u64,
                b.clone(),
                rate,
                stop_publishers.clone(),
                drain,
            ))
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop_publishers.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for task in publishers {
        seen.published.push(task.await.map_err(|e| e.to_string())?);
    }
    // The last copies on their way.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_subscribers.store(true, Ordering::Relaxed);
    for task in subscribers {
        seen.received.push(task.await.map_err(|e| e.to_string())?);
    }
    println!(
        "{}",
        serde_json::to_string(&seen).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

async fn run(
    seed: u64,
    duration: Duration,
    kinds: Vec<FaultKind>,
    rate: u64,
    require: bool,
    broker: Option<PathBuf>,
) -> Result<ExitCode, String> {
    if let Some(why) = netns::unavailable() {
        println!("chaos run skipped: network namespaces are not available here ({why})");
        return Ok(if require {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        });
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let broker = broker.unwrap_or_else(|| me.with_file_name("mqtt-cluster-broker"));
    let hosts: Vec<&str> = CORES
        .iter()
        .chain(&WORKERS)
        .copied()
        .chain(["clients"])
        .collect();
    let mut network = Network::create(PREFIX, SUBNET, &hosts).map_err(|e| e.to_string())?;
    let mut kinds = kinds;
    if let Some(why) = netns::netem_unavailable(&network) {
        let skipped: Vec<String> = kinds
            .iter()
            .filter(|k| k.needs_netem())
            .map(|k| k.to_string())
            .collect();
        if !skipped.is_empty() {
            println!("without netem ({why}): {} skipped", skipped.join(", "));
        }
        kinds.retain(|k| !k.needs_netem());
    }
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let address = |h: &str| {
        network
            .host(h)
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    };
    let core_urls: Vec<String> = CORES
        .iter()
        .map(|c| format!("http://{}:8884", address(c)))
        .collect();
    let mut brokers = Vec::new();
    for (i, name) in CORES.iter().chain(&WORKERS).enumerate() {
        let core = CORES.contains(name);
        let mut urls = core_urls.clone();
        let n = urls.len();
        urls.rotate_left(i % n);
        let list: String = urls.iter().map(|u| format!("- {u}\n")).collect();
        let head = if core {
            format!("core: true\nhost: {}\nport: 8884\n", address(name))
        } else {
            "core: false\n".to_owned()
        };
        let yaml = format!("{head}nodeName: {name}\nsecret: {SECRET}\nclusters:\n{list}{TIMINGS}");
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).map_err(|e| e.to_string())?;
        let status = health::status_path(&dir, name).display().to_string();
        let mut process = BrokerProcess::new(&network, name, &broker, &path)
            .with_args(["--status-file".to_owned(), status]);
        process.start(&network).map_err(|e| e.to_string())?;
        brokers.push(process);
    }
    let broker_hosts: Vec<String> = CORES
        .iter()
        .chain(&WORKERS)
        .map(|s| (*s).to_owned())
        .collect();
    let endpoints: Vec<String> = broker_hosts
        .iter()
        .map(|h| format!("{}:1883", address(h)))
        .collect();
    let planned = plan(seed, &broker_hosts, &kinds, duration);
    println!(
        "seed {seed}: {} faults over {:?} ({})",
        planned.len(),
        duration,
        kinds
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut clients = network
        .command("clients", &me.display().to_string())
        .map_err(|e| e.to_string())?;
    clients
        .args([
            "clients",
            "--brokers",
            &endpoints.join(","),
            "--rate",
            &rate.to_string(),
        ])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = clients.spawn().map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout from the clients")?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    match lines.recv().await.as_deref() {
        Some("publishing") => {}
        other => return Err(format!("the clients did not start: {other:?}")),
    }
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(health::watch(
        dir.clone(),
        broker_hosts.clone(),
        stop_watching.clone(),
    ));
    let start = Instant::now();
    let run_started_unix_ms = unix_ms();
    let mut records = Vec::new();
    for scheduled in &planned {
        tokio::time::sleep_until((start + scheduled.at).into()).await;
        let started_unix_ms = unix_ms();
        scheduled
            .fault
            .apply(&mut network, &mut brokers)
            .map_err(|e| e.to_string())?;
        log(start, "start", &scheduled.fault);
        tokio::time::sleep_until((start + scheduled.at + scheduled.lasts).into()).await;
        let ended_unix_ms = unix_ms();
        scheduled
            .fault
            .undo(&mut network, &mut brokers)
            .map_err(|e| e.to_string())?;
        log(start, "end", &scheduled.fault);
        records.push(FaultRecord {
            fault: scheduled.fault.clone(),
            started_unix_ms,
            ended_unix_ms,
            recovered_unix_ms: None,
            resubscribed_unix_ms: None,
        });
    }
    let report = lines
        .recv()
        .await
        .ok_or("the clients ended without a report")?;
    let _ = child.wait();
    let seen: Seen = serde_json::from_str(&report).map_err(|e| format!("clients' report: {e}"))?;

    // The end state: every node converged on the same view, or why not.
    let settled = Instant::now();
    let (end_states, end_problem) = loop {
        let now = unix_ms();
        let states = health::read_all(&dir, &broker_hosts);
        let problem = health::unhealthy(&states, &broker_hosts, now);
        if problem.is_none() || settled.elapsed() > Duration::from_secs(30) {
            break (states, problem);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop_watching.store(true, Ordering::Relaxed);
    let timeline = watcher.await.map_err(|e| e.to_string())?;
    for record in &mut records {
        record.recovered_unix_ms = timeline.healthy_from(record.ended_unix_ms);
        if let Fault::Kill { host } = &record.fault {
            let subscriber = broker_hosts
                .iter()
                .position(|h| h == host)
                .and_then(|i| seen.received.get(i));
            let again = subscriber.and_then(|r| {
                r.subscribed_unix_ms
                    .iter()
                    .find(|&&at| at >= record.ended_unix_ms)
                    .copied()
            });
            record.resubscribed_unix_ms =
                again.and_then(|at| timeline.healthy_with_subscription(at));
        }
    }
    drop(brokers);
    network.destroy().map_err(|e| e.to_string())?;

    let outcome = report_run(
        &seen,
        &broker_hosts,
        &records,
        &end_states,
        &timeline,
        run_started_unix_ms,
    );
    println!();
    match &end_problem {
        None => println!("end state: every node converged, same members and routes"),
        Some(problem) => println!("end state NOT converged after 30 s: {problem}"),
    }
    let unrecovered = records
        .iter()
        .filter(|r| r.recovered_unix_ms.is_none())
        .count();
    let passed = outcome.lost == 0 && end_problem.is_none() && unrecovered == 0;
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let _ = std::fs::write(dir.join("clients.json"), &report);
        println!(
            "configurations, last status files and the clients' report kept in {}",
            dir.display()
        );
    }
    println!("confirmed QoS 1 messages lost: {}", outcome.lost);
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Waits for Ctrl-C (`SIGINT`), `SIGTERM` (a CI job cancelled, `timeout`)
/// or `SIGHUP` (the terminal closed); names the one that came.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hangup.recv() => "SIGHUP",
    }
}

/// The run's totals that decide its exit code.
struct Outcome {
    lost: u64,
}

fn report_run(
    seen: &Seen,
    hosts: &[String],
    records: &[FaultRecord],
    end_states: &[health::NodeState],
    timeline: &health::Timeline,
    run_started_unix_ms: u64,
) -> Outcome {
    println!();
    println!("faults and recovery (healthy: every node converged, all six alive, same digests):");
    for record in records {
        let lasted = record.ended_unix_ms.saturating_sub(record.started_unix_ms);
        match record.recovery_ms() {
            Some(ms) => println!(
                "  {:40} lasted {:5.1} s, recovered {:5.1} s after it ended",
                record.fault.to_string(),
                lasted as f64 / 1000.0,
                ms as f64 / 1000.0
            ),
            None => println!(
                "  {:40} lasted {:5.1} s, NEVER recovered",
                record.fault.to_string(),
                lasted as f64 / 1000.0
            ),
        }
    }
    let published = &seen.published;
    let sent: u64 = published.iter().map(|p| p.sent).sum();
    let confirmed: u64 = published.iter().map(|p| p.confirmed.len() as u64).sum();
    let delivered: u64 = seen
        .received
        .iter()
        .flat_map(|r| r.seen.values())
        .map(|s| s.len() as u64)
        .sum();
    let reconnects: u64 = published.iter().map(|p| p.reconnects).sum();
    println!();
    println!(
        "published {sent}, confirmed (PUBACK) {confirmed}, delivered {delivered} (distinct arrivals over all subscribers), publishers reconnected {reconnects} times"
    );
    for (host, publisher) in hosts.iter().zip(published) {
        report_unacknowledged(host, publisher, run_started_unix_ms);
    }
    let mut outcome = Outcome { lost: 0 };
    let mut excused = (0, 0);
    let mut duplicates = 0;
    let cores: Vec<String> = CORES.map(String::from).to_vec();
    for (host, received) in hosts.iter().zip(&seen.received) {
        let verdict = checker::verdict(published, hosts, &cores, host, received, records);
        outcome.lost += verdict.lost;
        excused.0 += verdict.excused;
        excused.1 += verdict.excused_missing;
        let was_killed = records
            .iter()
            .any(|r| matches!(&r.fault, Fault::Kill { host: h } if h == host));
        duplicates += verdict.duplicates;
        println!(
            "  subscriber on {host:8} expected {:6} lost {:4} excused {:5} (missing {:5}) duplicates {:4} reordered {:4} reconnects {:3}{}",
            verdict.expected,
            verdict.lost,
            verdict.excused,
            verdict.excused_missing,
            verdict.duplicates,
            verdict.reordered,
            received.reconnects,
            if was_killed { "  (its broker was killed)" } else { "" }
        );
        for (publisher, seq, span) in &verdict.lost_first {
            let publisher = hosts.get(*publisher as usize).map_or("?", String::as_str);
            // A worker's traffic crosses its core: say which, for whoever
            // reads why the message went missing.
            let via: Vec<String> = [publisher, host.as_str()]
                .iter()
                .filter_map(|h| {
                    Some(format!(
                        "{h} via {}",
                        timeline.core_of(h, span.out_unix_ms)?
                    ))
                })
                .collect();
            println!(
                "    lost: publisher on {publisher} #{seq}, out at {:.3} s, PUBACK at {:.3} s{}",
                span.out_unix_ms.saturating_sub(run_started_unix_ms) as f64 / 1000.0,
                span.acked_unix_ms.saturating_sub(run_started_unix_ms) as f64 / 1000.0,
                if via.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", via.join(", "))
                },
            );
        }
    }
    println!(
        "excused (in a broker's hands while a fault separated the publisher's broker from the subscriber's, until recovery): {}, of which {} never arrived; duplicates {duplicates}",
        excused.0, excused.1
    );
    println!();
    println!("nodes at the end:");
    let mut not_confirmed = 0;
    for state in end_states {
        not_confirmed += state.not_confirmed;
        println!(
            "  {:8} {:8} converged {:5} alive {} members {} routes {:3} {} PUBACKs confirmed {} not confirmed {}",
            state.host,
            state.phase,
            state.converged,
            state.alive.len(),
            short(&state.members_digest),
            state.routes,
            short(&state.routes_digest),
            state.confirmed,
            state.not_confirmed
        );
    }
    println!(
        "PUBACKs rmqtt sent without the cluster's confirmation (since each broker's last start): {not_confirmed}"
    );
    outcome
}

/// Says which of `publisher`'s messages had no PUBACK when the drain
/// ended. They are owed to nobody (only acknowledged messages are), but a
/// PUBACK that never came is worth a look: where, since when, and which of
/// them the MQTT client itself dropped before any broker had them.
fn report_unacknowledged(host: &str, publisher: &Published, run_started_unix_ms: u64) {
    let left = &publisher.unacknowledged;
    let dropped = &publisher.dropped_by_client;
    let accounted = publisher.confirmed.len() + left.len() + dropped.len();
    let untracked = (publisher.sent as usize).saturating_sub(accounted);
    if left.is_empty() && dropped.is_empty() && untracked == 0 {
        return;
    }
    let at = |ms: u64| ms.saturating_sub(run_started_unix_ms) as f64 / 1000.0;
    let out: Vec<u64> = left.values().flatten().copied().collect();
    let last_sent = match (out.iter().min(), out.iter().max()) {
        (Some(&a), Some(&b)) => format!(", last sent {:.3}–{:.3} s", at(a), at(b)),
        _ => String::new(),
    };
    let numbers = |mut seqs: Vec<u64>| {
        seqs.sort_unstable();
        match (seqs.first(), seqs.last()) {
            (Some(a), Some(b)) => format!(" (#{a}..#{b})"),
            _ => String::new(),
        }
    };
    println!(
        "  publisher on {host:8} no PUBACK for {}{}{last_sent}; dropped by the MQTT client before sending {}{}{}",
        left.len(),
        numbers(left.keys().copied().collect()),
        dropped.len(),
        numbers(dropped.clone()),
        if untracked > 0 {
            format!("; {untracked} the runner lost track of")
        } else {
            String::new()
        }
    );
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn log(start: Instant, what: &str, fault: &Fault) {
    println!("[{:7.1}s] {what:5} {fault}", start.elapsed().as_secs_f64());
}
