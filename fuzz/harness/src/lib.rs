//! Bodies of the mqtt-cluster fuzz targets.
//!
//! Each module is one target with a `run(data: &[u8])` entry point: the
//! cargo-fuzz binaries in `fuzz/fuzz_targets/` call it with libFuzzer's
//! input, and `tests/tests/fuzz_corpus.rs` calls it with every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, so a crash once
//! found is replayed by a plain `cargo test` on stable.
//!
//! A target panics when it finds a broken guarantee; everything else an
//! input does is fine. Inputs are decoded with [`arbitrary`], mixing raw
//! bytes with structured requests (valid signatures, JSON of the right
//! shape with arbitrary values) so that the fuzzer gets past
//! authentication and decoding. Everything is deterministic: time and
//! randomness come from the input only.
//!
//! - [`register`]: `POST /register` bodies and headers into a core.
//! - [`forward`]: `POST /forward` batches into a core, and bytes into a
//!   registered worker's push stream.
//! - [`stream`]: the SSE decoder, split anywhere, against the whole input.
//! - [`request`]: any method, path, headers and body into a core and a
//!   worker; a refused request must leave `status()` unchanged.
//! - [`config`]: plugin.yaml text into the loader, and back.
//! - [`cluster_ops`]: operation sequences on a simulated cluster, with the
//!   simulator's invariant checks.
//! - [`confirm`]: end-to-end confirmations of any shape into a publishing
//!   worker's stream and a core's `POST /confirm`; each publish settles
//!   once, naming its destinations.
//! - [`retained`]: `POST /retained` bodies into a core (also replayed) and
//!   `retained` frames into a worker's stream, between retained publishes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cluster_ops;
pub mod config;
pub mod confirm;
pub mod fixture;
pub mod forward;
pub mod register;
pub mod request;
pub mod retained;
pub mod shapes;
pub mod stream;

/// Names of every target, as in `fuzz/Cargo.toml` and the corpus folders.
pub const TARGETS: [&str; 8] = [
    "register",
    "forward",
    "stream",
    "request",
    "config",
    "cluster_ops",
    "retained",
    "confirm",
];

/// Runs the target called `name` on `data`; `false` if there is no such
/// target.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "register" => register::run(data),
        "forward" => forward::run(data),
        "stream" => stream::run(data),
        "request" => request::run(data),
        "config" => config::run(data),
        "cluster_ops" => cluster_ops::run(data),
        "confirm" => confirm::run(data),
        "retained" => retained::run(data),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_on_small_inputs() {
        let inputs: [&[u8]; 4] = [
            b"",
            b"\0",
            &[0xff; 64],
            &[0x01, 0x02, 0x03, 0x04, 0x05, 0x06],
        ];
        for target in TARGETS {
            for input in inputs {
                assert!(run_target(target, input));
            }
        }
    }
}
