//! `mqtt-cluster-bench`: MQTT load from publisher connections on some
//! brokers to subscriber connections on others, and what arrived: received
//! throughput, latency p50/p99/max, and per message lost, duplicated or out
//! of order. Progress goes to stderr; a table and a JSON line to stdout.
//!
//! ```text
//! mqtt-cluster-bench --publish-on 127.0.0.1:1883 --subscribe-on 127.0.0.1:1884 \
//!     --publishers 4 --subscribers 4 --qos 1 --size 100 --duration 10s
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mqtt_cluster_rmqtt_broker::load::{run, Load};

/// MQTT load between brokers, and what arrived.
#[derive(Debug, Parser)]
#[command(name = "mqtt-cluster-bench", version)]
struct Args {
    /// Brokers publishers connect to (host:port, comma-separated), in turn.
    #[arg(long, value_delimiter = ',', required = true)]
    publish_on: Vec<String>,
    /// Brokers subscribers connect to (host:port, comma-separated), in turn.
    #[arg(long, value_delimiter = ',', required = true)]
    subscribe_on: Vec<String>,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscriber connections; each receives every message.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes (at least 24: publisher, number and send time).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per second over all publishers; 0: as fast as the clients
    /// take them (QoS 1/2: as fast as acknowledged).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to publish, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = seconds)]
    duration: Duration,
    /// How long to wait for the last messages once publishing stopped.
    #[arg(long, default_value = "3s", value_parser = seconds)]
    drain: Duration,
    /// How long to wait after subscribing before publishing, for the
    /// subscriptions to reach the other brokers.
    #[arg(long, default_value = "1s", value_parser = seconds)]
    settle: Duration,
    /// Topic prefix: publishers publish on PREFIX/N, subscribers take PREFIX/#.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Unacknowledged QoS 1/2 messages each publisher keeps in flight.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
}

fn seconds(text: &str) -> Result<Duration, String> {
    mqtt_cluster_core::config::parse_duration(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let load = Load {
        publish_on: args.publish_on,
        subscribe_on: args.subscribe_on,
        publishers: args.publishers,
        subscribers: args.subscribers,
        qos: args.qos,
        size: args.size,
        rate: args.rate,
        duration: args.duration,
        drain: args.drain,
        settle: args.settle,
        topic: args.topic,
        inflight: args.inflight,
    };
    let report = match run(&load, |progress| eprintln!("{progress}")).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("mqtt-cluster-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sent            {} ({:.0}/s)",
        report.sent, report.sent_per_s
    );
    println!(
        "received        {} of {} ({:.0}/s)",
        report.received, report.expected, report.received_per_s
    );
    println!("lost            {}", report.lost);
    println!("duplicated      {}", report.duplicated);
    println!("out of order    {}", report.out_of_order);
    println!(
        "latency         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.latency.p50_us as f64 / 1000.0,
        report.latency.p99_us as f64 / 1000.0,
        report.latency.max_us as f64 / 1000.0
    );
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("mqtt-cluster-bench: {error}"),
    }
    ExitCode::SUCCESS
}
