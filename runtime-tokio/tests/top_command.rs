//! `mqtt-cluster top` as an operator sees it: against a running core and
//! worker with traffic between them, `--once` prints the members and the
//! link's rates, and the live view, run in a real terminal (tmux), shows
//! the same and quits on `q`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use mqtt_cluster_core::node::Message;
use mqtt_cluster_tokio::Options;

/// A core and a worker, the worker subscribed to what the core keeps
/// publishing (about 200 messages a second) until the returned task is
/// dropped.
async fn busy_cluster() -> (Running, Running, String, tokio::task::JoinHandle<()>) {
    let bound = bind().await;
    let url = bound.url.clone();
    let core = start(
        core_config("core1", bound.port, &[&url], ""),
        Options::new().listener(bound.listener),
    )
    .await;
    let worker = start(worker_config("w1", &[&url], ""), Options::new()).await;
    worker.handle.subscribe("load/#").await.unwrap();
    let publisher = core.handle.clone();
    eventually("the worker's route reaches the core", || {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(Message::new("load/probe", "x").unwrap())
                .await
                .is_ok_and(|r| !r.remote.is_empty())
        }
    })
    .await;
    let traffic = tokio::spawn(async move {
        loop {
            let _ = publisher
                .publish(Message::new("load/a", "payload").unwrap())
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (core, worker, url, traffic)
}

/// The out/s of `peer`'s row in the links table of a frame.
fn out_per_s(frame: &str, peer: &str) -> Option<f64> {
    frame
        .lines()
        .skip_while(|l| !l.starts_with("link "))
        .find(|l| l.split_whitespace().next() == Some(peer))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn top_command(url: &str) -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_mqtt-cluster").to_owned(),
        "top".into(),
        url.into(),
        "--secret".into(),
        SECRET.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_prints_members_and_the_links_rates() {
    let (_core, _worker, url, traffic) = busy_cluster().await;
    let mut argv = top_command(&url);
    argv.extend(["--once".into(), "--interval".into(), "500ms".into()]);
    let output =
        tokio::task::spawn_blocking(move || Command::new(&argv[0]).args(&argv[1..]).output())
            .await
            .unwrap()
            .unwrap();
    traffic.abort();
    let frame = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{frame}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(frame.contains("core1 (core, running)"), "{frame}");
    assert!(frame.contains("members 2: alive 2"), "{frame}");
    assert!(frame.contains("drops since start: none"), "{frame}");
    assert!(frame.contains("converged: yes"), "{frame}");
    assert!(!frame.contains("-0"), "no negative zeros:\n{frame}");
    // The core sends the worker about 200 messages a second.
    let rate = out_per_s(&frame, "w1");
    assert!(rate.is_some_and(|r| r > 20.0), "out/s towards w1:\n{frame}");
}

/// tmux, or `None` when it is missing outside CI (CI installs it).
fn tmux() -> Option<&'static str> {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have tmux to test `mqtt-cluster top` in a terminal"
        );
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return None;
    }
    Some("tmux")
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

fn screen(session: &str) -> String {
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .expect("tmux capture-pane");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(session: &str) -> bool {
    Command::new("tmux")
        .args(["has-session", "-t", session])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_runs_in_a_terminal_and_quits_on_q() {
    let Some(tmux) = tmux() else { return };
    let (_core, _worker, url, traffic) = busy_cluster().await;
    let session = Session(format!("mqtt-cluster-top-{}", std::process::id()));
    let command = top_command(&url).join(" ");
    let started = Command::new(tmux)
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "160",
            "-y",
            "50",
            &command,
        ])
        .status()
        .expect("tmux new-session");
    assert!(started.success());

    // Two frames at least: the second has rates.
    let mut shown = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shown = screen(&session.0);
        if out_per_s(&shown, "w1").is_some_and(|v| v > 0.0) {
            break;
        }
    }
    assert!(
        shown.contains("mqtt-cluster top: core1 (core, running)"),
        "{shown}"
    );
    assert!(shown.contains("members 2: alive 2"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("w1 ") && l.contains("worker")),
        "{shown}"
    );
    assert!(shown.contains("q quits"), "{shown}");
    assert!(
        out_per_s(&shown, "w1").is_some_and(|v| v > 20.0),
        "a rate towards w1:\n{shown}"
    );

    Command::new(tmux)
        .args(["send-keys", "-t", &session.0, "q"])
        .status()
        .expect("tmux send-keys");
    for _ in 0..50 {
        if !alive(&session.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traffic.abort();
    assert!(
        !alive(&session.0),
        "top quits on q:\n{}",
        screen(&session.0)
    );
}
