//! `mqtt-cluster top URL`: a core's view of the cluster, redrawn every
//! second: members with roles and states, per-link messages per second out
//! and in, queues, in flight, retries and drops by reason, confirmations and
//! requests. Plain ANSI text, so it works over SSH; `q` quits; `--once`
//! prints one frame for scripts.
//!
//! Rates come from two samples of the core's `/metrics` counters, so the
//! first frame (and `--once`) waits one interval for its second sample.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mqtt_cluster_tokio::Operator;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::{text, CoreArgs};
use crate::table::Table;
use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    core: CoreArgs,
    /// Print one frame and exit (for scripts; needs no terminal).
    #[arg(long)]
    once: bool,
    /// Time between frames, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = interval)]
    interval: Duration,
}

fn interval(text: &str) -> Result<Duration, String> {
    let d = mqtt_cluster_core::config::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("the interval is at least 100ms".into());
    }
    Ok(d)
}

/// `/metrics` samples by family and label text, e.g.
/// `("mqtt_cluster_dropped_total", "peer=\"w1\",reason=\"expired\"")`.
type Samples = BTreeMap<(String, String), f64>;

/// One look at the core.
struct Sample {
    at: Instant,
    status: Value,
    metrics: Samples,
}

async fn sample(operator: &Operator, core: &CoreArgs) -> Result<Sample, Failure> {
    let status = operator.status(&core.url).await?;
    let metrics = operator.metrics(&core.url).await?;
    let status: Value = serde_json::from_slice(&status)
        .map_err(|e| format!("{} answered something that is not a status: {e}", core.url))?;
    Ok(Sample {
        at: Instant::now(),
        status,
        metrics: parse_metrics(&String::from_utf8_lossy(&metrics)),
    })
}

/// Reads Prometheus text: each sample line `name{labels} value`.
fn parse_metrics(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        samples.insert((name.to_owned(), labels.to_owned()), value);
    }
    samples
}

/// The value of `label` in a label text.
fn label<'a>(labels: &'a str, label: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == label).then(|| value.trim().trim_matches('"'))
    })
}

/// Per second between two samples of one series; `None` without an
/// earlier sample.
fn rate(now: &Sample, before: Option<&Sample>, name: &str, labels: &str) -> Option<f64> {
    let key = (name.to_owned(), labels.to_owned());
    let value = |s: &Sample| s.metrics.get(&key).copied().unwrap_or(0.0);
    per_second_between(now, before?, value)
}

/// Per second between two samples of every series of `name` together.
fn total_rate(now: &Sample, before: Option<&Sample>, name: &str) -> Option<f64> {
    per_second_between(now, before?, |s| total(&s.metrics, name, None))
}

fn per_second_between(
    now: &Sample,
    before: &Sample,
    value: impl Fn(&Sample) -> f64,
) -> Option<f64> {
    let seconds = now.at.duration_since(before.at).as_secs_f64();
    (seconds > 0.0).then(|| (value(now) - value(before)).max(0.0) / seconds)
}

/// The sum over every series of `name` whose `label` is `value`, or of all
/// of them with `value` `None`.
fn total(samples: &Samples, name: &str, label_value: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name && label_value.is_none_or(|(key, want)| label(labels, key) == Some(want))
        })
        .map(|(_, v)| v)
        .sum()
}

/// A counter or gauge as a whole number (`+ 0.0` turns the empty sum's
/// `-0` into `0`).
fn whole(value: f64) -> String {
    format!("{:.0}", value + 0.0)
}

fn per_second(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// One frame of the view, as plain lines.
fn frame(url: &str, now: &Sample, before: Option<&Sample>) -> String {
    let status = &now.status;
    let mut out = format!(
        "mqtt-cluster top: {} ({}, {}) at {url}\n",
        text(&status["node"]),
        text(&status["role"]),
        text(&status["phase"]),
    );
    let members = status["members"].as_array().cloned().unwrap_or_default();
    let count = |state: &str| {
        members
            .iter()
            .filter(|m| m["state"].as_str() == Some(state))
            .count()
    };
    out.push_str(&format!(
        "members {}: alive {}, suspect {}, dead {}, left {}   routes {}   streams {}   retained {}\n",
        members.len(),
        count("alive"),
        count("suspect"),
        count("dead"),
        count("left"),
        text(&status["routes"]),
        text(&status["streams"]),
        text(&status["retained"]),
    ));
    out.push_str(&crate::status::convergence_line(status));
    out.push_str(&format!(
        "views: members digest {}, routes digest {}\n\n",
        text(&status["membersDigest"]),
        text(&status["routesDigest"]),
    ));

    out.push_str(&crate::status::members_table(status));
    out.push('\n');

    // Every peer this core has a link to or heard messages from.
    let queues = status["queues"].as_object().cloned().unwrap_or_default();
    let mut peers: BTreeSet<String> = queues.keys().cloned().collect();
    for (name, labels) in now.metrics.keys() {
        if matches!(
            name.as_str(),
            "mqtt_cluster_link_sent_total" | "mqtt_cluster_received_total"
        ) {
            if let Some(peer) = label(labels, "peer") {
                peers.insert(peer.to_owned());
            }
        }
    }
    let mut links = Table::new(&[
        "link",
        "out/s",
        "in/s",
        "queued",
        "in flight",
        "oldest",
        "retries/s",
        "dropped",
    ]);
    for peer in &peers {
        let peer_label = format!("peer=\"{peer}\"");
        let queue = &queues.get(peer).cloned().unwrap_or(Value::Null);
        let dropped: Vec<String> = now
            .metrics
            .iter()
            .filter(|((name, labels), v)| {
                name == "mqtt_cluster_dropped_total"
                    && label(labels, "peer") == Some(peer.as_str())
                    && **v > 0.0
            })
            .map(|((_, labels), v)| {
                format!("{} {}", label(labels, "reason").unwrap_or("?"), whole(*v))
            })
            .collect();
        links.row(vec![
            peer.clone(),
            per_second(rate(
                now,
                before,
                "mqtt_cluster_link_sent_total",
                &peer_label,
            )),
            per_second(rate(
                now,
                before,
                "mqtt_cluster_received_total",
                &peer_label,
            )),
            text(&queue["queued"]),
            text(&queue["inFlight"]),
            queue["oldestAgeMs"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
            per_second(rate(now, before, "mqtt_cluster_retries_total", &peer_label)),
            if dropped.is_empty() {
                "0".to_owned()
            } else {
                dropped.join(", ")
            },
        ]);
    }
    if peers.is_empty() {
        out.push_str("no links yet\n");
    } else {
        out.push_str(&links.render());
    }

    let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
    for ((name, labels), v) in &now.metrics {
        if name == "mqtt_cluster_dropped_total" || name == "mqtt_cluster_dropped_on_arrival_total" {
            *reasons
                .entry(label(labels, "reason").unwrap_or("?").to_owned())
                .or_default() += v;
        }
    }
    let drops: Vec<String> = reasons
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(reason, v)| format!("{reason} {}", whole(*v)))
        .collect();
    out.push_str(&format!(
        "\ndrops since start: {}\n",
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join(", ")
        }
    ));
    let all = |name: &str| total(&now.metrics, name, None);
    let all_rate = |name: &str| total_rate(now, before, name);
    out.push_str(&format!(
        "published/s {}   delivered/s {}   confirmed/s {}   not confirmed {}   unconfirmed {}   held {}\n",
        per_second(all_rate("mqtt_cluster_published_total")),
        per_second(all_rate("mqtt_cluster_delivered_total")),
        per_second(all_rate("mqtt_cluster_confirmed_total")),
        whole(all("mqtt_cluster_not_confirmed_total")),
        whole(all("mqtt_cluster_unconfirmed")),
        text(&status["held"]),
    ));
    out.push_str(&format!(
        "requests: sent/s {}   accepted/s {}   refused {}   transport errors {}   retries/s {}\n",
        per_second(all_rate("mqtt_cluster_requests_sent_total")),
        per_second(all_rate("mqtt_cluster_requests_accepted_total")),
        whole(all("mqtt_cluster_requests_refused_total")),
        whole(all("mqtt_cluster_transport_errors_total")),
        per_second(all_rate("mqtt_cluster_retries_total")),
    ));
    out
}

/// Restores the terminal however `run` ends.
struct RawMode;

impl RawMode {
    fn enter() -> Result<RawMode, Failure> {
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| format!("top needs a terminal ({e}); use --once in scripts"))?;
        // The alternate screen keeps the shell's scrollback as it was.
        print!("\x1b[?1049h\x1b[?25l");
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Reads keys on a thread of its own (reading blocks) and says when `q`,
/// Esc or Ctrl-C was pressed.
fn watch_keys() -> mpsc::Receiver<()> {
    let (quit, pressed) = mpsc::channel(1);
    std::thread::spawn(move || {
        use crossterm::event::{self, Event, KeyCode, KeyModifiers};
        loop {
            match event::read() {
                Ok(Event::Key(key)) => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        let _ = quit.blocking_send(());
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = quit.blocking_send(());
                    return;
                }
            }
        }
    });
    pressed
}

/// Cuts each line to the terminal's width, so that nothing wraps.
fn fit(frame: &str, width: usize) -> String {
    frame
        .lines()
        .map(|line| line.chars().take(width).collect::<String>())
        .collect::<Vec<_>>()
        .join("\r\n")
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let operator = args.core.operator()?;
    let url = args.core.url.to_string();
    if args.once {
        let first = sample(&operator, &args.core).await?;
        tokio::time::sleep(args.interval).await;
        let second = sample(&operator, &args.core).await?;
        print!("{}", frame(&url, &second, Some(&first)));
        return Ok(ExitCode::SUCCESS);
    }
    if !std::io::stdout().is_terminal() {
        return Err("top draws on a terminal; use --once in scripts".into());
    }
    let _raw = RawMode::enter()?;
    let mut quit = watch_keys();
    let mut before: Option<Sample> = None;
    loop {
        let shown = match sample(&operator, &args.core).await {
            Ok(now) => {
                let shown = frame(&url, &now, before.as_ref());
                before = Some(now);
                shown
            }
            // A core that stops answering is what an operator wants to see.
            Err(error) => format!("mqtt-cluster top: {url}\nno answer: {error}\n"),
        };
        let width = crossterm::terminal::size().map_or(200, |(w, _)| usize::from(w).max(20));
        print!("\x1b[H\x1b[2J{}\r\n\r\nq quits\r\n", fit(&shown, width));
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = quit.recv() => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_read_by_series() {
        let samples = parse_metrics(
            "# HELP x y\n# TYPE mqtt_cluster_held gauge\nmqtt_cluster_held 3\n\
             mqtt_cluster_dropped_total{peer=\"w1\",reason=\"expired\"} 2\n",
        );
        assert_eq!(
            samples.get(&("mqtt_cluster_held".into(), String::new())),
            Some(&3.0)
        );
        let key = (
            "mqtt_cluster_dropped_total".to_owned(),
            "peer=\"w1\",reason=\"expired\"".to_owned(),
        );
        assert_eq!(samples.get(&key), Some(&2.0));
        assert_eq!(label(&key.1, "reason"), Some("expired"));
        assert_eq!(
            total(&samples, "mqtt_cluster_dropped_total", Some(("peer", "w1"))),
            2.0
        );
    }

    #[test]
    fn rates_are_per_second_between_samples() {
        let at = Instant::now();
        let sample = |at: Instant, n: f64| Sample {
            at,
            status: Value::Null,
            metrics: [(
                (
                    "mqtt_cluster_link_sent_total".to_owned(),
                    "peer=\"w1\"".to_owned(),
                ),
                n,
            )]
            .into(),
        };
        let before = sample(at, 100.0);
        let now = sample(at + Duration::from_secs(2), 300.0);
        let r = rate(
            &now,
            Some(&before),
            "mqtt_cluster_link_sent_total",
            "peer=\"w1\"",
        );
        assert_eq!(r, Some(100.0));
        assert_eq!(
            rate(&now, None, "mqtt_cluster_link_sent_total", "peer=\"w1\""),
            None
        );
    }
}
