//! Threads on demand: each job gets a thread that is idle now, or a new one.
//!
//! Requests to peers and requests served may each block for up to
//! `requestTimeout` (or, for a push stream, for as long as it lasts), so a
//! fixed pool would let a few slow peers hold up everyone else. The node
//! already bounds how many requests it has in flight, and the server how
//! many connections it serves, which bounds the threads; idle ones linger a
//! while to be reused, then exit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long a thread waits for another job before it exits.
const LINGER: Duration = Duration::from_secs(10);

/// Hands jobs to idle threads, starting a thread when none is idle.
#[derive(Clone, Debug)]
pub(crate) struct Threads {
    name: &'static str,
    // A rendezvous channel: a send succeeds only if a thread is waiting in
    // `recv` right now, which is exactly "an idle thread exists".
    jobs: Sender<Job>,
    idle: Receiver<Job>,
}

impl Threads {
    pub(crate) fn new(name: &'static str) -> Self {
        let (jobs, idle) = crossbeam_channel::bounded(0);
        Threads { name, jobs, idle }
    }

    /// Runs `job` on another thread. Should the OS refuse a new thread, the
    /// job runs on the calling one instead: slower, but nothing is lost.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = match self.jobs.try_send(Box::new(job)) {
            Ok(()) => return,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
        };
        let slot = Arc::new(Mutex::new(Some(job)));
        let first = slot.clone();
        let idle = self.idle.clone();
        let spawned = std::thread::Builder::new()
            .name(self.name.to_owned())
            .spawn(move || {
                let job = first.lock().ok().and_then(|mut slot| slot.take());
                if let Some(job) = job {
                    job();
                }
                while let Ok(job) = idle.recv_timeout(LINGER) {
                    job();
                }
            });
        if spawned.is_err() {
            log::warn!(
                "{}: no thread could be started; running the job inline",
                self.name
            );
            let job = slot.lock().ok().and_then(|mut slot| slot.take());
            if let Some(job) = job {
                job();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_and_idle_threads_are_reused() {
        let threads = Threads::new("test");
        let (done, finished) = crossbeam_channel::unbounded();
        for i in 0..50 {
            let done = done.clone();
            threads.run(move || {
                done.send((i, std::thread::current().id())).unwrap();
            });
            // Give the thread time to go idle, so the next job reuses it.
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut seen: Vec<_> = (0..50).map(|_| finished.recv().unwrap()).collect();
        seen.sort_by_key(|(i, _)| *i);
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        let mut ids: Vec<_> = seen.iter().map(|(_, id)| format!("{id:?}")).collect();
        ids.sort();
        ids.dedup();
        assert!(
            ids.len() < 50,
            "idle threads take later jobs ({} threads)",
            ids.len()
        );
    }

    #[test]
    fn blocked_jobs_do_not_hold_up_others() {
        let threads = Threads::new("test");
        let (release, gate) = crossbeam_channel::bounded::<()>(0);
        for _ in 0..4 {
            let gate = gate.clone();
            threads.run(move || {
                let _ = gate.recv();
            });
        }
        let (done, finished) = crossbeam_channel::bounded(1);
        threads.run(move || done.send(()).unwrap());
        assert!(finished.recv_timeout(Duration::from_secs(5)).is_ok());
        drop(release);
    }
}
