//! Broker processes inside a [`Network`]'s namespaces, and what the chaos
//! suite does to them: `kill -9` and a restart, `SIGSTOP` and `SIGCONT`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::netns::{NetError, Network};

/// Something a broker process could not do.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The namespace is not there.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Starting, signalling or reaping the process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not announce its MQTT address.
    #[error("broker on {host} did not start: it said {said:?}")]
    NoStart {
        /// Its host.
        host: String,
        /// Its first line of output.
        said: String,
    },
}

/// One broker: its host, how it is started, and its process while it runs.
#[derive(Debug)]
pub struct BrokerProcess {
    host: String,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl BrokerProcess {
    /// A broker on `host`, started by `program` (the `mqtt-cluster-broker`
    /// binary) with `config`, serving MQTT on the host's address, port
    /// 1883; not running yet.
    pub fn new(network: &Network, host: &str, program: &Path, config: &Path) -> Self {
        let address = network.host(host).map(|h| h.address.to_string());
        BrokerProcess {
            host: host.to_owned(),
            program: program.to_owned(),
            args: vec![
                "--config".into(),
                config.display().to_string(),
                "--mqtt".into(),
                format!("{}:1883", address.unwrap_or_default()),
                "--threads".into(),
                "1".into(),
                "--puback-after-confirm".into(),
            ],
            child: None,
        }
    }

    /// Adds arguments to the broker's command line.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Its host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether it runs (paused or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it and waits until it serves MQTT.
    pub fn start(&mut self, network: &Network) -> Result<(), ProcessError> {
        let program = self.program.display().to_string();
        let mut child = network
            .command(&self.host, &program)?
            .args(&self.args)
            // The brokers' own logs, to stderr, prefixed by nothing: quiet
            // unless asked for (`MQTT_CLUSTER_CHAOS_BROKER_LOG=info`).
            .env(
                "MQTT_CLUSTER_LOG",
                std::env::var("MQTT_CLUSTER_CHAOS_BROKER_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Io {
                what: format!("starting the broker on {}", self.host),
                source,
            })?;
        // Its log lines, named after the host (six brokers share a terminal).
        if let Some(err) = child.stderr.take() {
            let host = self.host.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("{host:8} {line}");
                }
            });
        }
        let mut line = String::new();
        if let Some(out) = child.stdout.as_mut() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if !line.starts_with("MQTT ") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::NoStart {
                host: self.host.clone(),
                said: line.trim().to_owned(),
            });
        }
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`: no goodbye to the cluster or the clients.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            let what = format!("killing the broker on {}", self.host);
            child.kill().map_err(|source| ProcessError::Io {
                what: what.clone(),
                source,
            })?;
            child
                .wait()
                .map_err(|source| ProcessError::Io { what, source })?;
        }
        Ok(())
    }

    /// `SIGSTOP`: the process stays but does nothing, as if dead.
    pub fn pause(&mut self) -> Result<(), ProcessError> {
        self.signal("STOP")
    }

    /// `SIGCONT`: it goes on where it stopped.
    pub fn resume(&mut self) -> Result<(), ProcessError> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> Result<(), ProcessError> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let what = format!("SIG{name} to the broker on {}", self.host);
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .map_err(|source| ProcessError::Io {
                what: what.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(ProcessError::Io {
                what,
                source: std::io::Error::other(format!("kill exited with {status}")),
            })
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // A stopped process takes SIGKILL too; resuming first is not needed.
        let _ = self.kill();
    }
}
