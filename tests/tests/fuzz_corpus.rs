//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`) and of
//! the crashes kept as regressions (`fuzz/regressions/<target>/`) through
//! the same harness functions the cargo-fuzz targets call, on stable, as
//! part of a plain `cargo test`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mqtt_cluster_fuzz_harness::{run_target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Replays every input of `target`; returns how many ran.
fn replay(target: &str) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for file in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = catch_unwind(AssertUnwindSafe(|| run_target(target, &data)));
            match outcome {
                Ok(known) => assert!(known, "no fuzz target called {target}"),
                Err(panic) => {
                    eprintln!("fuzz target {target} failed on {}", file.display());
                    resume_unwind(panic);
                }
            }
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_corpus_folder() {
    for target in TARGETS {
        assert!(
            fuzz_dir().join("corpus").join(target).is_dir(),
            "fuzz/corpus/{target} is missing"
        );
    }
}

#[test]
fn register_corpus_replays() {
    assert!(replay("register") > 0);
}

#[test]
fn forward_corpus_replays() {
    assert!(replay("forward") > 0);
}

#[test]
fn stream_corpus_replays() {
    assert!(replay("stream") > 0);
}

#[test]
fn request_corpus_replays() {
    assert!(replay("request") > 0);
}

#[test]
fn config_corpus_replays() {
    assert!(replay("config") > 0);
}

#[test]
fn retained_corpus_replays() {
    assert!(replay("retained") > 0);
}

#[test]
fn confirm_corpus_replays() {
    assert!(replay("confirm") > 0);
}

#[test]
fn cluster_ops_corpus_replays() {
    assert!(replay("cluster_ops") > 0);
}
