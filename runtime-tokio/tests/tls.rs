//! HTTPS between nodes (feature `tls`): a core serving with a certificate,
//! workers checking it against a CA.
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;

use common::{eventually, start, SECRET, TIMING};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::messages::Qos;
use mqtt_cluster_core::{Config, Event};
use mqtt_cluster_tokio::{Cluster, Options, StartError, TlsOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn client_tls() -> TlsOptions {
    TlsOptions {
        ca: Some(fixture("ca.pem")),
        ..TlsOptions::default()
    }
}

fn worker(name: &str, url: &str) -> Config {
    Config::from_yaml_str(&format!(
        "nodeName: {name}\nsecret: {SECRET}\nclusters: [{url}]\n{TIMING}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_and_forward_over_https() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}");
    let core = Config::from_yaml_str(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core1\nadvertise: {url}\n\
         clusters: [{url}]\nsecret: {SECRET}\n{TIMING}"
    ))
    .unwrap();
    let tls = TlsOptions {
        cert_chain: Some(fixture("core.pem")),
        private_key: Some(fixture("core.key")),
        ca: Some(fixture("ca.pem")),
    };
    let core = start(core, Options::new().listener(listener).tls(tls)).await;
    let w1 = start(worker("w1", &url), Options::new().tls(client_tls())).await;
    let w2 = start(worker("w2", &url), Options::new().tls(client_tls())).await;
    // A worker that does not trust the CA never gets in.
    let stranger = start(worker("stranger", &url), Options::new()).await;

    eventually("both workers register over https", || async {
        core.handle.status().await.unwrap().members.len() == 3
            && w1.handle.status().await.unwrap().core.is_some()
            && w2.handle.status().await.unwrap().core.is_some()
    })
    .await;
    w2.handle.subscribe("secure/#").await.unwrap();
    eventually("w1 learns the route", || async {
        w1.handle.status().await.unwrap().routes == 1
    })
    .await;
    let message = Message::new("secure/1", "sealed")
        .unwrap()
        .with_qos(Qos::AtLeastOnce);
    w1.handle.publish(message).await.unwrap();
    eventually("the message arrives", || async {
        w2.deliveries().len() == 1
    })
    .await;

    assert!(stranger.handle.status().await.unwrap().core.is_none());
    assert!(stranger.handle.stats().await.unwrap().transport_errors > 0);
    assert!(!stranger
        .events()
        .iter()
        .any(|e| matches!(e, Event::Registered { .. })));
}

#[tokio::test]
async fn half_a_certificate_is_refused_at_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let core = Config::from_yaml_str(&format!(
        "core: true\nport: {port}\nnodeName: c\nsecret: {SECRET}\n"
    ))
    .unwrap();
    let tls = TlsOptions {
        cert_chain: Some(fixture("core.pem")),
        ..TlsOptions::default()
    };
    let error = Cluster::start_with(core, Options::new().listener(listener).tls(tls))
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::Tls(_)), "{error}");
}

/// A node with TLS configured sends nothing signed in the clear: a peer at
/// an `http://` address gets no request at all, and every refusal is
/// counted (and reported to the node as a transport error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_tls_sends_nothing_to_a_plain_http_peer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let core = Config::from_yaml_str(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: core1\nadvertise: {url}\n\
         clusters: [{url}]\nsecret: {SECRET}\n{TIMING}"
    ))
    .unwrap();
    let core = start(core, Options::new().listener(listener)).await;
    let worker = start(worker("w1", &url), Options::new().tls(client_tls())).await;
    eventually("the worker refuses to register in the clear", || async {
        let runtime = worker.handle.runtime_stats().await.unwrap();
        let stats = worker.handle.stats().await.unwrap();
        runtime.requests_refused_in_clear >= 3 && stats.transport_errors >= 3
    })
    .await;
    assert_eq!(worker.handle.status().await.unwrap().core, None);
    let served = core.handle.runtime_stats().await.unwrap();
    assert_eq!(served.requests_received, 0, "nothing reached the core");
    assert_eq!(served.connections_accepted, 0);
    assert_eq!(core.handle.status().await.unwrap().members.len(), 1);
}
