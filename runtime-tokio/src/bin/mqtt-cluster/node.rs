//! `mqtt-cluster node --config plugin.yaml`: one node until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use mqtt_cluster_core::{Config, Event};
use mqtt_cluster_tokio::{Cluster, Options};

use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The node's plugin.yaml.
    #[arg(long, short)]
    config: PathBuf,
    /// The node's seed (default: drawn from the OS).
    #[arg(long)]
    seed: Option<u64>,
    /// The certificate chain (PEM) a core serves HTTPS with.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[cfg(feature = "tls")]
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that https:// peers are checked against.
    #[cfg(feature = "tls")]
    #[arg(long)]
    tls_ca: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let path = args.config.display();
    let text = std::fs::read(&args.config).map_err(|e| format!("{path}: {e}"))?;
    let config = Config::from_yaml_slice(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut options = Options::new();
    if let Some(seed) = args.seed {
        options = options.seed(seed);
    }
    #[cfg(feature = "tls")]
    if args.tls_cert.is_some() || args.tls_ca.is_some() {
        options = options.tls(mqtt_cluster_tokio::TlsOptions {
            cert_chain: args.tls_cert.clone(),
            private_key: args.tls_key.clone(),
            ca: args.tls_ca.clone(),
        });
    }
    let node = Cluster::start_with(config, options).await?;
    match node.local_addr() {
        Some(addr) => {
            tracing::info!(node = %node.node_id(), role = %node.role(), %addr, "running; Ctrl-C leaves the cluster")
        }
        None => {
            tracing::info!(node = %node.node_id(), role = %node.role(), "running; Ctrl-C leaves the cluster")
        }
    }
    let events = node.events();
    let code = loop {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => {
                if let Err(error) = signal {
                    tracing::warn!(%error, "cannot wait for Ctrl-C; leaving now");
                }
                break ExitCode::SUCCESS;
            }
            event = events.next() => match event {
                None => {
                    tracing::error!("the node stopped");
                    break ExitCode::FAILURE;
                }
                Some(Event::RegistrationRejected { core, reason }) => {
                    tracing::error!(%core, %reason, "the cluster refused this node's credentials; stopping");
                    break ExitCode::from(2);
                }
                Some(event @ Event::Deliver(_)) => tracing::debug!("{}", describe(&event)),
                Some(event) => tracing::info!("{}", describe(&event)),
            },
        }
    };
    node.shutdown().await;
    Ok(code)
}

/// An event as one line of JSON, e.g. `{"event":"member_joined","node":"w1",...}`.
fn describe(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| format!("{event:?}"))
}
