#![allow(missing_docs)] // criterion_group! and criterion_main! generate undocumented items

//! End to end in memory: worker -> core -> worker through the real HTTP
//! mapping, signatures, JSON codec and SSE framing, 100-byte payloads.
//!
//! `cargo bench -p mqtt-cluster-core --bench forwarding`
//!
//! The baselines in the same run are the JSON codec alone: encoding and
//! decoding the same batches without the cluster around them, once with
//! plain `serde_json` and once with the node's own batch codec.

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqtt_cluster_core::node::Message;
use mqtt_cluster_core::wire::batch_json;
use mqtt_cluster_core::wire::messages::{ForwardRequest, ForwardedMessage, Qos, Target};
use mqtt_cluster_core::{
    Config, Event, Instant, Node, NodeId, Now, RequestId, StreamId, StreamOutput, WallTime,
};

const BURST: usize = 10_000;

struct Trio {
    now: Now,
    core: Node,
    publisher: Node,
    subscriber: Node,
    /// The core's stream to each worker: (stream, the worker's request).
    streams: [Option<(StreamId, RequestId)>; 2],
    delivered: usize,
    /// Inputs handed to the three nodes so far: timeouts, requests,
    /// responses and stream chunks, each counted once.
    inputs: u64,
}

fn config(yaml: &str) -> Config {
    let common =
        "secret: bench-secret-bench\nqueueLength: 100000\nbatchSize: 256\nmaxInFlight: 4096\n";
    Config::from_yaml_str(&format!("{yaml}{common}")).expect("bench config")
}

impl Trio {
    fn new() -> Trio {
        let now = Now::new(Instant::ZERO, WallTime::from_unix_millis(1_700_000_000_000));
        let core =
            Node::new(config("core: true\nnodeName: core1\nport: 8884\n"), now, 1).expect("core");
        let worker = |name: &str, seed| {
            Node::new(
                config(&format!(
                    "clusters: [http://core1:8884]\nnodeName: {name}\n"
                )),
                now,
                seed,
            )
            .expect("worker")
        };
        let mut trio = Trio {
            now,
            core,
            publisher: worker("w1", 2),
            subscriber: worker("w2", 3),
            streams: [None, None],
            delivered: 0,
            inputs: 0,
        };
        trio.subscriber.subscribe(now, "bench/#").expect("filter");
        for _ in 0..10 {
            trio.tick(Duration::from_millis(500));
        }
        trio
    }

    fn tick(&mut self, by: Duration) {
        self.now = self.now.after(by);
        self.core.handle_timeout(self.now);
        self.publisher.handle_timeout(self.now);
        self.subscriber.handle_timeout(self.now);
        self.inputs += 3;
        self.pump();
    }

    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for (index, worker) in [&mut self.publisher, &mut self.subscriber]
                .into_iter()
                .enumerate()
            {
                while let Some(t) = worker.poll_transmit() {
                    moved = true;
                    let response = self.core.handle_request(now, t.request);
                    if let Some(id) = response.extensions().get::<StreamId>() {
                        self.streams[index] = Some((*id, t.id));
                    }
                    worker.handle_response(now, t.id, Ok(response));
                    self.inputs += 2;
                }
            }
            while let Some(t) = self.core.poll_transmit() {
                moved = true;
                self.inputs += 1;
                self.core.handle_response(
                    now,
                    t.id,
                    Err(mqtt_cluster_core::TransportError::Timeout),
                );
            }
            while let Some(out) = self.core.poll_stream() {
                moved = true;
                let StreamOutput::Data { stream, bytes } = out else {
                    continue;
                };
                let workers = [&mut self.publisher, &mut self.subscriber];
                for (worker, open) in workers.into_iter().zip(self.streams) {
                    if let Some((_, request)) = open.filter(|(id, _)| *id == stream) {
                        worker.handle_stream_data(now, request, &bytes);
                        self.inputs += 1;
                    }
                }
            }
            while let Some(event) = self.subscriber.poll_event() {
                if matches!(event, Event::Deliver(_)) {
                    self.delivered += 1;
                }
            }
            while self.core.poll_event().is_some() {}
            while self.publisher.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    fn burst(&mut self, qos: Qos, payload: &Bytes) {
        let target = self.delivered + BURST;
        for _ in 0..BURST {
            let message = Message {
                topic: mqtt_cluster_core::routing::TopicName::new("bench/data").expect("topic"),
                payload: payload.clone(),
                qos,
                retain: false,
                properties: None,
            };
            self.publisher.publish(self.now, message).expect("running");
        }
        while self.delivered < target {
            self.pump();
            self.tick(Duration::from_millis(1));
        }
    }
}

fn end_to_end(c: &mut Criterion) {
    let payload = Bytes::from(vec![b'x'; 100]);
    let mut group = c.benchmark_group("worker_core_worker");
    group.throughput(Throughput::Elements(BURST as u64));
    group.sample_size(10);
    for qos in [Qos::AtMostOnce, Qos::AtLeastOnce] {
        let mut trio = Trio::new();
        group.bench_with_input(BenchmarkId::new("qos", qos.as_u8()), &qos, |b, qos| {
            b.iter(|| trio.burst(*qos, &payload))
        });
    }
    // Baseline: only the JSON of the same messages, encoded and decoded twice
    // (the worker's batch, then the core's stream frame).
    let batch = ForwardRequest {
        messages: (0..256)
            .map(|i| ForwardedMessage {
                origin: NodeId::new("w1").expect("id"),
                incarnation: mqtt_cluster_core::Incarnation(1),
                topic: mqtt_cluster_core::routing::TopicName::new("bench/data").expect("topic"),
                payload: payload.clone(),
                qos: Qos::AtLeastOnce,
                retain: false,
                properties: None,
                targets: vec![Target {
                    node: NodeId::new("w2").expect("id"),
                    seq: i,
                }],
            })
            .collect(),
    };
    group.throughput(Throughput::Elements(256));
    group.bench_function("json_codec_only", |b| {
        b.iter(|| {
            for _ in 0..2 {
                let bytes = serde_json::to_vec(&batch).expect("encode");
                let back: ForwardRequest = serde_json::from_slice(&bytes).expect("decode");
                assert_eq!(back.messages.len(), 256);
            }
        })
    });
    // The same, through the codec the node itself uses for batches: the
    // direct writer of `wire::batch_json` and the shared-name decoder.
    group.bench_function("node_codec_only", |b| {
        b.iter(|| {
            for _ in 0..2 {
                let bytes = batch_json::forward_request(batch.messages.iter());
                let back: ForwardRequest = serde_json::from_slice(&bytes).expect("decode");
                assert_eq!(back.messages.len(), 256);
            }
        })
    });
    group.finish();
}

/// The inputs of a quiet cluster, without a simulator around them: every
/// heartbeat interval each node's timer fires and each worker's heartbeat
/// goes to the core and its answer comes back. Most events of a simulation
/// are these, so for this cluster this is the most inputs a second any
/// driver of these nodes can reach on this machine; the quiet cases of the
/// simulation bench compare with it.
fn node_inputs(c: &mut Criterion) {
    let mut trio = Trio::new();
    let interval = Config::default().heartbeat_interval;
    let rounds = 1_000;
    let run = |trio: &mut Trio| {
        let before = trio.inputs;
        for _ in 0..rounds {
            trio.tick(interval);
        }
        trio.inputs - before
    };
    let per_run = run(&mut trio);
    // The throughput below assumes every run hands the nodes as many inputs.
    assert_eq!(run(&mut trio), per_run, "a quiet cluster's rounds differ");
    let mut group = c.benchmark_group("node_inputs");
    group.throughput(Throughput::Elements(per_run));
    group.sample_size(20);
    group.bench_function("heartbeat_rounds", |b| b.iter(|| run(&mut trio)));
    group.finish();
}

criterion_group!(benches, end_to_end, node_inputs);
criterion_main!(benches);
