//! Push/pop throughput of `BoundedQueue` under both policies, full and
//! half full, with a bare `VecDeque` doing the same work as the baseline.
//!
//! Run: `cargo bench -p mqtt-cluster-core --bench queue -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use mqtt_cluster_core::queue::{BoundedQueue, QueuePolicy};

/// The queue's bound in these benches.
const CAPACITY: usize = 1024;
/// Operations per measured batch.
const OPS: u64 = 4096;

/// A message-sized item: a queue of forwarded messages holds handles of
/// about this size, not whole payloads.
type Item = [u64; 4];

fn item(i: u64) -> Item {
    [i, i ^ 1, i ^ 2, i ^ 3]
}

fn filled(policy: QueuePolicy, count: usize) -> BoundedQueue<Item> {
    let mut queue = BoundedQueue::new(CAPACITY, policy);
    for i in 0..count as u64 {
        let _ = queue.push(item(i));
    }
    queue
}

fn filled_deque(count: usize) -> VecDeque<Item> {
    let mut deque = VecDeque::new();
    for i in 0..count as u64 {
        deque.push_back(item(i));
    }
    deque
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_1024");
    group.throughput(Throughput::Elements(OPS));

    for policy in [QueuePolicy::DiscardNewest, QueuePolicy::DiscardOldest] {
        // Full: every push overflows, so every op is a drop by the policy.
        group.bench_function(format!("bounded/{policy:?}/push_when_full"), |b| {
            b.iter_batched_ref(
                || filled(policy, CAPACITY),
                |queue| {
                    for i in 0..OPS {
                        let _ = black_box(queue.push(item(i)));
                    }
                },
                BatchSize::SmallInput,
            )
        });
        // Half full: a push and a pop per step, the queue's steady state
        // when the consumer keeps up. Two ops per step.
        group.bench_function(format!("bounded/{policy:?}/push_pop_half_full"), |b| {
            b.iter_batched_ref(
                || filled(policy, CAPACITY / 2),
                |queue| {
                    for i in 0..OPS / 2 {
                        let _ = black_box(queue.push(item(i)));
                        black_box(queue.pop());
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }

    // Baselines: the same work on a bare VecDeque, with the bound and the
    // eviction written inline.
    group.bench_function("vecdeque_baseline/evict_oldest_when_full", |b| {
        b.iter_batched_ref(
            || filled_deque(CAPACITY),
            |deque| {
                for i in 0..OPS {
                    black_box(deque.pop_front());
                    deque.push_back(item(i));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("vecdeque_baseline/push_pop_half_full", |b| {
        b.iter_batched_ref(
            || filled_deque(CAPACITY / 2),
            |deque| {
                for i in 0..OPS / 2 {
                    deque.push_back(item(i));
                    black_box(deque.pop_front());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Runs the benches with criterion's command-line options. Written out
/// because the functions `criterion_group!`/`criterion_main!` generate carry
/// no docs, which the workspace lints require.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    queue(&mut criterion);
    criterion.final_summary();
}
