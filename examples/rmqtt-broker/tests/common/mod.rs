//! Brokers on loopback and MQTT 5 clients for the end-to-end tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use mqtt_cluster_rmqtt_broker::settings::cluster_config;
use mqtt_cluster_rmqtt_broker::{Broker, Settings};
use mqtt_cluster_tokio::Options;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, LastWill, Packet, Publish, PublishProperties};
pub use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The secret of every test cluster.
pub const SECRET: &str = "test-secret-long-enough-for-a-cluster";
/// How long a test waits for something that must happen.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Timings short enough for tests, in the ratios of the defaults.
pub const TIMINGS: &str = "heartbeatInterval: 200ms\nsuspectTimeout: 1s\ndeadTimeout: 2s\n";

/// A core broker on ephemeral ports; returns it and its cluster API port.
pub async fn core(name: &str, deny_publish: &[&str]) -> (Broker, u16) {
    core_with(name, deny_publish, "").await
}

/// A core broker with more plugin.yaml lines.
pub async fn core_with(name: &str, deny_publish: &[&str], extra: &str) -> (Broker, u16) {
    core_tuned(name, extra, |settings| {
        settings.deny_publish = deny_publish.iter().map(|s| s.to_string()).collect();
    })
    .await
}

/// A core broker with more plugin.yaml lines and its settings changed by
/// `tune`.
pub async fn core_tuned(
    name: &str,
    extra: &str,
    tune: impl FnOnce(&mut Settings),
) -> (Broker, u16) {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = api.local_addr().unwrap().port();
    let config = cluster_config(&format!(
        "core: true\nhost: 127.0.0.1\nport: {port}\nnodeName: {name}\n\
         clusters: [http://127.0.0.1:{port}]\nsecret: {SECRET}\n{TIMINGS}{extra}"
    ))
    .unwrap();
    let mut settings = Settings::new(config, "127.0.0.1:0".parse().unwrap());
    tune(&mut settings);
    let broker = Broker::start(settings, Options::new().listener(api))
        .await
        .unwrap();
    (broker, port)
}

/// A worker broker registered with the core at `core_port`, once joined.
pub async fn worker(name: &str, core_port: u16) -> Broker {
    worker_with(name, core_port, "").await
}

/// A worker broker with more plugin.yaml lines.
pub async fn worker_with(name: &str, core_port: u16, extra: &str) -> Broker {
    let config = cluster_config(&format!(
        "core: false\nnodeName: {name}\nclusters: [http://127.0.0.1:{core_port}]\nsecret: {SECRET}\n{TIMINGS}{extra}"
    ))
    .unwrap();
    let broker = Broker::start(
        Settings::new(config, "127.0.0.1:0".parse().unwrap()),
        Options::new(),
    )
    .await
    .unwrap();
    tokio::time::timeout(TIMEOUT, broker.joined())
        .await
        .expect("worker joins")
        .unwrap();
    broker
}

/// A core and `workers` workers named `a`, `b`, `c`...
pub async fn cluster(workers: usize) -> Vec<Broker> {
    let (a, port) = core("a", &[]).await;
    let mut brokers = vec![a];
    for i in 0..workers {
        let name = ((b'b' + i as u8) as char).to_string();
        brokers.push(worker(&name, port).await);
    }
    settle(&brokers.iter().collect::<Vec<_>>()).await;
    brokers
}

/// Waits until every broker's node holds the same routes and knows every
/// other broker: what one subscribed to, all route to.
pub async fn settle(brokers: &[&Broker]) {
    let wait = async {
        loop {
            let mut digests = Vec::new();
            let mut alive = Vec::new();
            for b in brokers {
                let status = b.cluster().status().await.unwrap();
                alive.push(
                    status
                        .members
                        .iter()
                        .filter(|m| {
                            m.state == mqtt_cluster_core::wire::messages::MemberState::Alive
                        })
                        .count(),
                );
                digests.push((status.routes, status.routes_digest));
            }
            if digests.windows(2).all(|w| w[0] == w[1]) && alive.iter().all(|&n| n >= brokers.len())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .expect("the brokers' routes converge");
}

/// Waits until every broker's node holds `routes` routes, the same ones.
pub async fn wait_routes(brokers: &[&Broker], routes: usize) {
    let wait = async {
        loop {
            let mut seen = Vec::new();
            for b in brokers {
                let status = b.cluster().status().await.unwrap();
                seen.push((status.routes, status.routes_digest));
            }
            if seen.iter().all(|(n, _)| *n == routes) && seen.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("the brokers converge on {routes} routes"));
}

/// Waits until `count()` reaches `want`.
pub async fn wait_count(what: &str, want: u64, count: impl Fn() -> u64) {
    let wait = async {
        while count() < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} reaches {want}, is {}", count()));
}

/// Counts of the acknowledgements a client received.
#[derive(Clone, Copy, Debug, Default)]
pub struct Acks {
    pub connack: u64,
    pub suback: u64,
    pub unsuback: u64,
    pub puback: u64,
    pub pubcomp: u64,
    /// The DISCONNECT went out.
    pub disconnect_sent: u64,
    /// PUBACKs saying "not authorized".
    pub refused_pubacks: u64,
}

/// An MQTT 5 client on its own event loop task.
pub struct Client {
    pub client: AsyncClient,
    pub received: mpsc::UnboundedReceiver<Publish>,
    acks: watch::Receiver<Acks>,
    task: JoinHandle<()>,
}

/// Options for a client `id` of `broker`.
pub fn options(broker: &Broker, id: &str) -> MqttOptions {
    let addr = broker.mqtt_addr();
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options
}

/// Connects a clean-start client `id` to `broker`.
pub async fn connect(broker: &Broker, id: &str) -> Client {
    Client::connect(options(broker, id)).await
}

/// Connects a client whose session outlives its connection by five minutes.
pub async fn connect_persistent(broker: &Broker, id: &str, clean_start: bool) -> Client {
    let mut options = options(broker, id);
    options.set_clean_start(clean_start);
    let mut props = ConnectProperties::new();
    props.session_expiry_interval = Some(300);
    options.set_connect_properties(props);
    Client::connect(options).await
}

/// Connects a client with a will.
pub async fn connect_with_will(broker: &Broker, id: &str, will: LastWill) -> Client {
    let mut options = options(broker, id);
    options.set_last_will(will);
    Client::connect(options).await
}

impl Client {
    /// Connects and waits for the CONNACK.
    pub async fn connect(options: MqttOptions) -> Client {
        let (client, mut events) = AsyncClient::new(options, 100_000);
        let (tx, received) = mpsc::unbounded_channel();
        let (acks_tx, acks) = watch::channel(Acks::default());
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(packet)) => match packet {
                        Packet::Publish(p) => {
                            let _ = tx.send(p);
                        }
                        Packet::ConnAck(_) => acks_tx.send_modify(|a| a.connack += 1),
                        Packet::SubAck(_) => acks_tx.send_modify(|a| a.suback += 1),
                        Packet::UnsubAck(_) => acks_tx.send_modify(|a| a.unsuback += 1),
                        Packet::PubAck(ack) => acks_tx.send_modify(|a| {
                            a.puback += 1;
                            if ack.reason == rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
                            {
                                a.refused_pubacks += 1;
                            }
                        }),
                        Packet::PubComp(_) => acks_tx.send_modify(|a| a.pubcomp += 1),
                        _ => {}
                    },
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        acks_tx.send_modify(|a| a.disconnect_sent += 1)
                    }
                    Ok(Event::Outgoing(_)) => {}
                    // The client library ends the connection on a refused
                    // PUBACK; count it as an answer.
                    Err(rumqttc::v5::ConnectionError::MqttState(
                        rumqttc::v5::StateError::PubAckFail {
                            reason: rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized,
                        },
                    )) => {
                        acks_tx.send_modify(|a| {
                            a.puback += 1;
                            a.refused_pubacks += 1;
                        });
                        return;
                    }
                    Err(_) => return,
                }
            }
        });
        let client = Client {
            client,
            received,
            acks,
            task,
        };
        client.wait_acks(|a| a.connack >= 1).await;
        client
    }

    async fn wait_acks(&self, done: impl Fn(&Acks) -> bool) {
        let mut acks = self.acks.clone();
        tokio::time::timeout(TIMEOUT, acks.wait_for(|a| done(a)))
            .await
            .expect("acknowledged in time")
            .expect("client running");
    }

    /// The acknowledgements so far.
    pub fn acks(&self) -> Acks {
        *self.acks.borrow()
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&self, filter: &str, qos: QoS) {
        let before = self.acks().suback;
        self.client.subscribe(filter, qos).await.unwrap();
        self.wait_acks(|a| a.suback > before).await;
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&self, filter: &str) {
        let before = self.acks().unsuback;
        self.client.unsubscribe(filter).await.unwrap();
        self.wait_acks(|a| a.unsuback > before).await;
    }

    /// Publishes and, for QoS 1 and 2, waits until the broker took it.
    pub async fn publish(&self, topic: &str, qos: QoS, payload: &str) {
        self.publish_with(topic, qos, payload, None).await;
    }

    /// Publishes with properties; waits like [`Client::publish`].
    pub async fn publish_with(
        &self,
        topic: &str,
        qos: QoS,
        payload: &str,
        props: Option<PublishProperties>,
    ) {
        let before = self.acks();
        let payload = Bytes::copy_from_slice(payload.as_bytes());
        match props {
            Some(props) => self
                .client
                .publish_with_properties(topic, qos, false, payload, props)
                .await
                .unwrap(),
            None => self
                .client
                .publish(topic, qos, false, payload)
                .await
                .unwrap(),
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.wait_acks(|a| a.puback > before.puback).await,
            QoS::ExactlyOnce => self.wait_acks(|a| a.pubcomp > before.pubcomp).await,
        }
    }

    /// Publishes a retained message; waits like [`Client::publish`].
    pub async fn publish_retained(&self, topic: &str, qos: QoS, payload: &str) {
        let before = self.acks();
        self.client
            .publish(topic, qos, true, Bytes::copy_from_slice(payload.as_bytes()))
            .await
            .unwrap();
        if qos == QoS::AtLeastOnce {
            self.wait_acks(|a| a.puback > before.puback).await;
        }
    }

    /// The next message, within [`TIMEOUT`].
    pub async fn recv(&mut self) -> Publish {
        tokio::time::timeout(TIMEOUT, self.received.recv())
            .await
            .expect("a message arrives in time")
            .expect("client running")
    }

    /// Messages up to and including the first on `marker` (a topic), as
    /// (topic, payload, qos).
    pub async fn until(&mut self, marker: &str) -> Vec<(String, String, QoS)> {
        let mut got = Vec::new();
        loop {
            let p = self.recv().await;
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let done = topic == marker;
            got.push((
                topic,
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.qos,
            ));
            if done {
                return got;
            }
        }
    }

    /// Whatever arrives within `wait` (for checks that nothing more came).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Publish> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.received.recv()).await {
            got.push(p);
        }
        got
    }

    /// Sends DISCONNECT and closes the connection (the client library
    /// would keep it open; MQTT leaves closing to the client).
    pub async fn disconnect(self) {
        self.client.disconnect().await.unwrap();
        self.wait_acks(|a| a.disconnect_sent >= 1).await;
        // Let the packet leave the socket before closing it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
        let _ = self.task.await;
    }

    /// Drops the connection without DISCONNECT, as a crashed client does.
    pub fn drop_connection(self) {
        self.task.abort();
    }
}

/// Payloads by topic, for comparing what arrived.
pub fn by_topic(got: &[(String, String, QoS)]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (topic, payload, _) in got {
        map.entry(topic.clone()).or_default().push(payload.clone());
    }
    map
}
