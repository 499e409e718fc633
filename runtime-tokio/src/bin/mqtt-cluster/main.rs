//! `mqtt-cluster`: run one cluster node from a plugin.yaml, watch a whole
//! cluster work in one process, or ask a core for its view of the cluster.

mod demo;
mod explain;
mod node;
mod simulate;
mod status;
mod table;
mod top;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// An MQTT cluster node and its tools.
#[derive(Debug, Parser)]
#[command(name = "mqtt-cluster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one node from a plugin.yaml until Ctrl-C, then leaves the cluster.
    Node(node::Args),
    /// Starts two cores and two workers on loopback and sends messages across.
    Demo(demo::Args),
    /// Prints a core's view of the cluster.
    Status(status::Args),
    /// Explains, for every member, whether a message on a topic reaches it
    /// and why.
    Explain(explain::Args),
    /// A core's view of the cluster, redrawn every second; `q` quits.
    Top(top::Args),
    /// Runs a whole cluster with faults on the deterministic simulator.
    Simulate(simulate::Args),
}

/// Logs go to stderr; `MQTT_CLUSTER_LOG` (or `RUST_LOG`) picks levels per
/// target, e.g. `info,mqtt_cluster_tokio::traffic=debug`.
fn init_logging(default: LevelFilter) {
    let spec = std::env::var("MQTT_CLUSTER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = spec
        .parse::<Targets>()
        .ok()
        .filter(|_| !spec.trim().is_empty())
        .unwrap_or_else(|| Targets::new().with_default(default));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own report; only problems are logged there.
    let default = match cli.command {
        Command::Demo(_) => LevelFilter::WARN,
        _ => LevelFilter::INFO,
    };
    init_logging(default);
    if let Command::Simulate(args) = cli.command {
        // Pure computation on one thread: no async runtime needed.
        return match simulate::run(args) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => node::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Explain(args) => explain::run(args).await,
            Command::Top(args) => top::run(args).await,
            // Handled above, without an async runtime.
            Command::Simulate(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a subcommand fails with: anything printable.
type Failure = Box<dyn std::error::Error + Send + Sync>;
