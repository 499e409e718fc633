#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mqtt_cluster_fuzz_harness::confirm::run(data));
