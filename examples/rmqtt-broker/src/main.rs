//! `mqtt-cluster-broker`: an rmqtt broker with an mqtt-cluster node inside.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mqtt_cluster_rmqtt_broker::settings::{cluster_config, MAX_INFLIGHT, MAX_MQUEUE_LEN};
use mqtt_cluster_rmqtt_broker::{demo, Broker, Settings};
use mqtt_cluster_tokio::Options;

/// An MQTT broker (rmqtt) in an mqtt-cluster: clients on any broker reach
/// subscribers on every other.
///
/// Logs go to stderr; set their level with MQTT_CLUSTER_LOG (for example
/// `MQTT_CLUSTER_LOG=debug`). Ctrl-C leaves the cluster and closes the
/// clients.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The node's plugin.yaml (core or worker, secret, clusters, queues).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where MQTT clients connect.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:1883")]
    mqtt: SocketAddr,
    /// Refuse client publishes on topics matching FILTER (repeatable); a
    /// refused publish reaches nobody.
    #[arg(long, value_name = "FILTER")]
    deny_publish: Vec<String>,
    /// Messages waiting per MQTT session before rmqtt drops.
    #[arg(long, value_name = "N", default_value_t = MAX_MQUEUE_LEN)]
    max_mqueue_len: usize,
    /// Unacknowledged QoS 1/2 messages per MQTT session.
    #[arg(long, value_name = "N", default_value_t = MAX_INFLIGHT)]
    max_inflight: u16,
    /// Answer a client's QoS 1 PUBACK (QoS 2 PUBREC) only once every broker
    /// with a matching subscriber took the message; the client's in-flight
    /// window then slows it to what the cluster confirms.
    #[arg(long)]
    puback_after_confirm: bool,
    /// rmqtt alone: its own router, shared subscriptions and retained
    /// store, the node idle beside it (a single-broker reference for
    /// benchmarks; such a broker shares nothing with a cluster).
    #[arg(long)]
    standalone: bool,
    /// Threads running the broker (default: one per CPU). Brokers sharing
    /// a host, as in the side-by-side benchmark, do better with one each
    /// than with every broker spreading over every CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Write the node's status and the broker's counters as JSON to FILE
    /// every quarter second (replaced whole each time), for tools that
    /// watch brokers from outside their network.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a core broker and a worker broker on loopback and print their
    /// MQTT ports; runs until Ctrl-C.
    Demo {
        /// MQTT address of the core broker.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
        core_mqtt: SocketAddr,
        /// MQTT address of the worker broker.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1884")]
        worker_mqtt: SocketAddr,
        /// Both brokers answer PUBACK only after the cluster's confirmation.
        #[arg(long)]
        puback_after_confirm: bool,
    },
}

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQTT_CLUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let result = match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => Err(anyhow::anyhow!("cannot start the runtime: {error}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Demo {
        core_mqtt,
        worker_mqtt,
        puback_after_confirm,
    }) = cli.command
    {
        let (core, worker) = demo::start(core_mqtt, worker_mqtt, puback_after_confirm).await?;
        if puback_after_confirm {
            println!("PUBACK after the cluster's confirmation: on");
        }
        let (c, w) = (core.mqtt_addr(), worker.mqtt_addr());
        println!("core-broker   MQTT {c}");
        println!("worker-broker MQTT {w}");
        println!("Try, in two other terminals:");
        println!(
            "  mosquitto_sub -h {} -p {} -t 'demo/#' -q 1 -v",
            w.ip(),
            w.port()
        );
        println!(
            "  mosquitto_pub -h {} -p {} -t demo/hello -q 1 -m 'hello across the cluster'",
            c.ip(),
            c.port()
        );
        println!("Ctrl-C stops both.");
        tokio::signal::ctrl_c().await?;
        worker.shutdown().await;
        core.shutdown().await;
        return Ok(());
    }
    let Some(path) = cli.config else {
        anyhow::bail!("--config plugin.yaml is required (or run `demo`); see --help");
    };
    let yaml = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let cluster = cluster_config(&yaml).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut settings = Settings::new(cluster, cli.mqtt);
    settings.deny_publish = cli.deny_publish;
    settings.max_mqueue_len = cli.max_mqueue_len;
    settings.max_inflight = cli.max_inflight;
    settings.puback_after_confirm = cli.puback_after_confirm;
    settings.standalone = cli.standalone;
    settings.status_file = cli.status_file;
    let broker = Broker::start(settings, Options::new()).await?;
    println!("MQTT {}", broker.mqtt_addr());
    let refused = tokio::select! {
        signal = tokio::signal::ctrl_c() => {
            signal?;
            None
        }
        reason = broker.refused() => Some(reason),
    };
    broker.shutdown().await;
    match refused {
        Some(reason) => anyhow::bail!("{reason}"),
        None => Ok(()),
    }
}
