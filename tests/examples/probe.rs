//! Debug probe.
use std::time::Duration;
use mqtt_cluster_core::sim::{NetworkModel, Simulation};
use mqtt_cluster_tests::scenario::*;
fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut sim = Simulation::new(seed, NetworkModel::lossy(0.05, 0.05)).record_transcript();
    let mut choose = Chooser::new(seed);
    let r = (|| {
        let layout = build(&mut sim, 2, 4, "");
        sim.run_for(Duration::from_secs(2))?;
        subscribe_some(&mut sim, &mut choose, &layout.all(), 8)?;
        sim.run_for(Duration::from_secs(2))?;
        schedule_traffic(&mut sim, &mut choose, &layout.all(), 40, Duration::from_secs(3));
        sim.run_for(Duration::from_secs(3))?;
        sim.set_network(NetworkModel::reliable());
        settle_and_check(&mut sim).map(|_| ())
    })();
    println!("{r:?}");
    for l in sim.transcript().unwrap().iter().filter(|l| !l.contains("timer") && !l.contains("heartbeat")) { println!("{l}"); }
}
