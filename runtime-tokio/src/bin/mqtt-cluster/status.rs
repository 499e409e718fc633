//! `mqtt-cluster status URL`: a core's view of the cluster, as a table.

use std::path::PathBuf;
use std::process::ExitCode;

use mqtt_cluster_core::auth::Secret;
use mqtt_cluster_core::config::ClusterUrl;
use mqtt_cluster_core::{Config, NodeId};
use mqtt_cluster_tokio::Operator;
use serde_json::Value;

use crate::table::Table;
use crate::Failure;

/// Which core to ask, and how to sign.
#[derive(Debug, clap::Args)]
pub(crate) struct CoreArgs {
    /// The core to ask, e.g. http://core1:8884.
    pub(crate) url: ClusterUrl,
    /// The cluster secret to sign the request with.
    #[arg(long, conflicts_with = "config")]
    secret: Option<String>,
    /// A plugin.yaml to take the cluster secret from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The name to sign as; the core records it like a member's.
    #[arg(long, default_value = "operator")]
    name: NodeId,
    /// CA certificates (PEM) to check an https:// core against.
    #[cfg(feature = "tls")]
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl CoreArgs {
    /// An operator that signs as these arguments say.
    pub(crate) fn operator(&self) -> Result<Operator, Failure> {
        let secret = match (&self.secret, &self.config) {
            (Some(secret), _) => Some(Secret::new(secret.clone())),
            (None, Some(path)) => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let config = Config::from_yaml_slice(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if config.secret.is_none() && !config.open_cluster {
                    return Err(format!("{} has no secret", path.display()).into());
                }
                config.secret
            }
            (None, None) => return Err("give the cluster secret with --secret or --config".into()),
        };
        let operator = Operator::new(self.name.clone(), secret);
        #[cfg(feature = "tls")]
        let operator = match &self.ca {
            Some(ca) => operator.with_tls(&mqtt_cluster_tokio::TlsOptions {
                ca: Some(ca.clone()),
                ..Default::default()
            })?,
            None => operator,
        };
        Ok(operator)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    core: CoreArgs,
    /// Print the core's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let operator = args.core.operator()?;
    let body = operator.status(&args.core.url).await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(ExitCode::SUCCESS);
    }
    let status: Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{} answered something that is not a status: {e}",
            args.core.url
        )
    })?;
    print!("{}", render(&status));
    Ok(ExitCode::SUCCESS)
}

/// A status (the JSON of `GET /status`) as a summary line and a table of
/// members.
pub(crate) fn render(status: &Value) -> String {
    let mut out = format!(
        "{} ({}, {}, incarnation {}){}: {} routes, {} push streams\n",
        text(&status["node"]),
        text(&status["role"]),
        text(&status["phase"]),
        text(&status["incarnation"]),
        match &status["core"] {
            Value::String(core) => format!(", registered with {core}"),
            _ => String::new(),
        },
        text(&status["routes"]),
        text(&status["streams"]),
    );
    out.push_str(&convergence_line(status));
    out.push_str(&members_table(status));
    out
}

/// A JSON value as a table cell: strings bare, `null` as `-`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The members of a status, one row each.
pub(crate) fn members_table(status: &Value) -> String {
    let mut table = Table::new(&[
        "id",
        "role",
        "state",
        "incarnation",
        "home",
        "address",
        "last heard at (node clock)",
    ]);
    for member in status["members"].as_array().into_iter().flatten() {
        let heard = member["lastHeard"].as_u64().map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.3}s", ms as f64 / 1000.0),
        );
        table.row(vec![
            text(&member["id"]),
            text(&member["role"]),
            text(&member["state"]),
            text(&member["incarnation"]),
            text(&member["home"]),
            text(&member["address"]),
            heard,
        ]);
    }
    table.render()
}

/// `converged: yes since 12.3s` or `converged: no since 4.0s, differs from core2`,
/// from a status's `convergence` (times on the node's clock).
pub(crate) fn convergence_line(status: &Value) -> String {
    let c = &status["convergence"];
    // The node's wall clock at the turn, shown as how long ago by this
    // machine's clock; the node's own clock when an older node omits it.
    let since = match c["sinceUnixMs"].as_u64() {
        Some(at) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            format!("{:.1}s ago", now.saturating_sub(at) as f64 / 1000.0)
        }
        None => c["sinceMs"].as_u64().map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.1}s (node clock)", ms as f64 / 1000.0),
        ),
    };
    let differing: Vec<&str> = c["differing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match c["converged"].as_bool() {
        Some(true) => format!("converged: yes, since {since}\n"),
        Some(false) if differing.is_empty() => {
            format!("converged: no, since {since}\n")
        }
        Some(false) => format!(
            "converged: no, since {since}, differs from {}\n",
            differing.join(", ")
        ),
        None => "converged: unknown (an older node)\n".to_owned(),
    }
}
