//! `mqtt-cluster-broker demo`: a core broker and a worker broker on
//! loopback, in one process.

use std::net::SocketAddr;

use mqtt_cluster_tokio::Options;

use crate::settings::cluster_config;
use crate::{Broker, Settings};

/// A shared secret for the demo's loopback cluster only.
const DEMO_SECRET: &str = "demo-only-secret-for-a-loopback-cluster";

/// Starts a core broker (MQTT on `core_mqtt`) and a worker broker (MQTT on
/// `worker_mqtt`) registered with it; returns once the worker has joined.
/// With `puback_after_confirm`, both answer a client's PUBACK only once the
/// cluster confirmed its publish.
pub async fn start(
    core_mqtt: SocketAddr,
    worker_mqtt: SocketAddr,
    puback_after_confirm: bool,
) -> anyhow::Result<(Broker, Broker)> {
    // The core's cluster API on an ephemeral loopback port: bind first,
    // then tell the configuration.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = api.local_addr()?.port();
    let core = cluster_config(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core-broker\n\
         clusters: [http://127.0.0.1:{port}]\nsecret: {DEMO_SECRET}\n"
    ))?;
    let worker = cluster_config(&format!(
        "core: false\nnodeName: worker-broker\nclusters: [http://127.0.0.1:{port}]\nsecret: {DEMO_SECRET}\n"
    ))?;
    let mut core = Settings::new(core, core_mqtt);
    core.puback_after_confirm = puback_after_confirm;
    let mut worker = Settings::new(worker, worker_mqtt);
    worker.puback_after_confirm = puback_after_confirm;
    let core = Broker::start(core, Options::new().listener(api)).await?;
    let worker = Broker::start(worker, Options::new()).await?;
    worker.joined().await?;
    Ok((core, worker))
}
