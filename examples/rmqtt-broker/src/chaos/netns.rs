//! A private network of Linux network namespaces: one per host, joined by
//! a bridge that lives in a namespace of its own, so that nothing is added
//! to the machine's own network (no interface, no address, no route).
//!
//! Every namespace is named `{prefix}-{host}` (the bridge `{prefix}-bridge`);
//! [`Network::create`] first removes whatever a run with the same prefix
//! left behind, and dropping the [`Network`] removes it all again (a
//! namespace takes its interfaces and routes with it). Needs root and
//! `ip` (iproute2).
//!
//! Partitions are blackhole routes inside the hosts' namespaces: a packet
//! to a cut-off host is discarded by the sender's kernel, so connections
//! hang and time out as over a broken link.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

/// Something the network could not do.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `ip` could not be run at all.
    #[error("cannot run `ip`: {0}")]
    Spawn(#[from] std::io::Error),
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Command {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// A host name the network does not have.
    #[error("no host {0} in this network")]
    UnknownHost(String),
    /// More hosts than the /24 holds, or a name too long for an interface.
    #[error("{0}")]
    Layout(String),
}

/// Why namespaces cannot be used here, if they cannot: not root, no `ip`,
/// or a kernel or container that refuses to create one.
pub fn unavailable() -> Option<String> {
    let probe = "mqttcluster-probe";
    let _ = ip(&["netns", "del", probe]);
    match ip(&["netns", "add", probe]) {
        Ok(_) => {
            let _ = ip(&["netns", "del", probe]);
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

/// Whether the kernel has netem (`tc qdisc ... netem`): delay, loss,
/// duplication and reordering need it.
pub fn netem_unavailable(network: &Network) -> Option<String> {
    let host = network.hosts.first()?;
    let tc = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &host.netns, "tc", "qdisc"])
            .args(args)
            .output()
    };
    match tc(&["add", "dev", "lo", "root", "netem", "delay", "1ms"]) {
        Ok(out) if out.status.success() => {
            let _ = tc(&["del", "dev", "lo", "root"]);
            None
        }
        Ok(out) => Some(format!(
            "tc netem: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `tc`: {e}")),
    }
}

/// One host: a namespace with one interface on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// Its interface.
    pub interface: String,
}

/// The namespaces, the bridge and the cuts between hosts.
#[derive(Debug)]
pub struct Network {
    prefix: String,
    hosts: Vec<Host>,
    /// (from host, to host) pairs cut by a blackhole route.
    cuts: BTreeSet<(usize, usize)>,
    destroyed: bool,
}

impl Network {
    /// Builds the network: `{prefix}-bridge` and one namespace per host,
    /// `10.{subnet}.0.{i+1}/24` for the i-th host. Leftovers of a run with
    /// the same prefix go first.
    pub fn create(prefix: &str, subnet: u8, names: &[&str]) -> Result<Network, NetError> {
        if names.len() > 250 {
            return Err(NetError::Layout(format!(
                "{} hosts do not fit a /24",
                names.len()
            )));
        }
        // Interface names are at most 15 bytes: `{prefix}{i}h` and `{prefix}{i}b`.
        if prefix.len() + 5 > 15 {
            return Err(NetError::Layout(format!("prefix {prefix:?} is too long")));
        }
        remove_leftovers(prefix)?;
        let bridge = format!("{prefix}-bridge");
        let mut network = Network {
            prefix: prefix.to_owned(),
            hosts: Vec::new(),
            cuts: BTreeSet::new(),
            destroyed: false,
        };
        ip(&["netns", "add", &bridge])?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for (i, name) in names.iter().enumerate() {
            let netns = format!("{prefix}-{name}");
            let interface = format!("{prefix}{i}h");
            let port = format!("{prefix}{i}b");
            let address = Ipv4Addr::new(10, subnet, 0, u8::try_from(i + 1).unwrap_or(u8::MAX));
            ip(&["netns", "add", &netns])?;
            // Made inside the namespaces: the machine's own never holds them.
            ip(&[
                "-n", &netns, "link", "add", &interface, "type", "veth", "peer", "name", &port,
                "netns", &bridge,
            ])?;
            ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                &interface,
            ])?;
            ip(&["-n", &netns, "link", "set", &interface, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            network.hosts.push(Host {
                name: (*name).to_owned(),
                netns,
                address,
                interface,
            });
        }
        Ok(network)
    }

    /// The hosts, in the order given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host, NetError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| NetError::UnknownHost(name.to_owned()))
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: &str, program: &str) -> Result<Command, NetError> {
        let host = self.host(host)?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &host.netns, program]);
        Ok(command)
    }

    fn index(&self, name: &str) -> Result<usize, NetError> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| NetError::UnknownHost(name.to_owned()))
    }

    /// Cuts every host of `a` off from every host of `b`, both ways.
    pub fn partition(&mut self, a: &[&str], b: &[&str]) -> Result<(), NetError> {
        for x in a {
            for y in b {
                let (i, j) = (self.index(x)?, self.index(y)?);
                for (from, to) in [(i, j), (j, i)] {
                    if from != to && self.cuts.insert((from, to)) {
                        let route = format!("{}/32", self.hosts[to].address);
                        ip(&[
                            "-n",
                            &self.hosts[from].netns,
                            "route",
                            "add",
                            "blackhole",
                            &route,
                        ])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> Result<(), NetError> {
        for (from, to) in std::mem::take(&mut self.cuts) {
            let route = format!("{}/32", self.hosts[to].address);
            ip(&[
                "-n",
                &self.hosts[from].netns,
                "route",
                "del",
                "blackhole",
                &route,
            ])?;
        }
        Ok(())
    }

    /// Puts a netem rule (`delay 50ms 10ms`, `loss 5%`, …) on `host`'s
    /// link, replacing any other; needs netem ([`netem_unavailable`]).
    pub fn netem(&self, host: &str, rule: &str) -> Result<(), NetError> {
        let host = self.host(host)?;
        let mut args = vec![
            "qdisc",
            "replace",
            "dev",
            host.interface.as_str(),
            "root",
            "netem",
        ];
        args.extend(rule.split_whitespace());
        tc(&host.netns, &args)
    }

    /// Removes `host`'s netem rule, if it has one.
    pub fn clear_netem(&self, host: &str) -> Result<(), NetError> {
        let host = self.host(host)?;
        let args = ["qdisc", "del", "dev", host.interface.as_str(), "root"];
        match tc(&host.netns, &args) {
            // No rule there: nothing to remove.
            Err(NetError::Command { stderr, .. }) if stderr.contains("No such file") => Ok(()),
            other => other,
        }
    }

    /// Removes every namespace of the network (with their interfaces and
    /// routes).
    pub fn destroy(mut self) -> Result<(), NetError> {
        self.destroyed = true;
        remove_leftovers(&self.prefix)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !self.destroyed {
            let _ = remove_leftovers(&self.prefix);
        }
    }
}

/// Deletes every namespace named `{prefix}-…`, after killing what still
/// runs in it: deleting a namespace only unnames it, and its processes
/// (brokers, clients of a run interrupted or killed with `SIGKILL`) would
/// run on unseen.
pub fn remove_leftovers(prefix: &str) -> Result<(), NetError> {
    let listed = ip(&["netns", "list"])?;
    let start = format!("{prefix}-");
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(&start) {
            kill_processes_in(name)?;
            ip(&["netns", "del", name])?;
        }
    }
    Ok(())
}

/// `kill -9` of every process in `netns`.
fn kill_processes_in(netns: &str) -> Result<(), NetError> {
    let listed = ip(&["netns", "pids", netns])?;
    let pids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .filter(|pid| pid.parse::<u32>().is_ok())
        .map(str::to_owned)
        .collect();
    if pids.is_empty() {
        return Ok(());
    }
    // A process that exited meanwhile makes `kill` fail for it alone, which
    // is what was wanted: its status is not an error.
    Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(())
}

/// Runs `tc args…` inside `netns`.
fn tc(netns: &str, args: &[&str]) -> Result<(), NetError> {
    let mut all = vec!["netns", "exec", netns, "tc"];
    all.extend_from_slice(args);
    ip(&all).map(|_| ())
}

/// Runs `ip args…`; an error carries what it said.
fn ip(args: &[&str]) -> Result<Output, NetError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(NetError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
