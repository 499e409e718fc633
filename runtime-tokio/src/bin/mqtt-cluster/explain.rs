//! `mqtt-cluster explain URL TOPIC`: why a message on TOPIC reaches each
//! member or not, as a core sees it.

use std::process::ExitCode;

use mqtt_cluster_core::node::{Explanation, Hop, HopLink, MemberVerdict, Unreached};
use mqtt_cluster_core::routing::TopicName;
use mqtt_cluster_core::wire::explain::ExplainQuery;
use mqtt_cluster_core::NodeId;

use crate::status::CoreArgs;
use crate::table::Table;
use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    core: CoreArgs,
    /// The topic a message would be published on, e.g. site/1/temp.
    topic: TopicName,
    /// The member publishing it (the core asked, by default).
    #[arg(long)]
    from: Option<NodeId>,
    /// Print the core's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let operator = args.core.operator()?;
    let query = ExplainQuery {
        topic: args.topic,
        from: args.from,
    };
    let body = operator.explain(&args.core.url, &query).await?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(ExitCode::SUCCESS);
    }
    let explained: Explanation = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{} answered something that is not an explanation: {e}",
            args.core.url
        )
    })?;
    print!("{}", render(&explained));
    Ok(ExitCode::SUCCESS)
}

/// An explanation as a heading, the matching filters, one row per member,
/// and the state of the links the asked core holds on the paths.
fn render(explained: &Explanation) -> String {
    let reached = explained.members.iter().filter(|m| m.reached).count();
    let mut out = format!(
        "{} explains a message on {} published by {}: it reaches {} of {} members\n\n",
        explained.node,
        explained.topic,
        explained.from,
        reached,
        explained.members.len()
    );
    if explained.filters.is_empty() {
        out.push_str("no filter in its routing table matches the topic\n\n");
    } else {
        let mut filters = Table::new(&["filter", "holders", "next", "why"]);
        for f in &explained.filters {
            filters.row(vec![
                f.filter.to_string(),
                names(&f.holders),
                f.next.as_ref().map_or("-".to_owned(), |n| n.to_string()),
                f.why.clone().unwrap_or_else(|| "every holder".to_owned()),
            ]);
        }
        out.push_str(&filters.render());
        out.push('\n');
    }
    let mut members = Table::new(&[
        "member", "role", "state", "reached", "filters", "path", "heard", "why",
    ]);
    for m in &explained.members {
        members.row(vec![
            m.id.to_string(),
            format!("{:?}", m.role).to_lowercase(),
            format!("{:?}", m.state).to_lowercase(),
            if m.reached { "yes" } else { "no" }.to_owned(),
            if m.filters.is_empty() {
                "-".to_owned()
            } else {
                m.filters
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if m.reached && m.path.is_empty() {
                "local".to_owned()
            } else {
                path(&m.path)
            },
            m.last_heard_ms
                .map_or("-".to_owned(), |ms| format!("{ms} ms ago")),
            why(m),
        ]);
    }
    out.push_str(&members.render());
    let links: Vec<(&Hop, &HopLink)> = explained
        .members
        .iter()
        .flat_map(|m| &m.path)
        .filter_map(|hop| hop.link.as_ref().map(|link| (hop, link)))
        .fold(Vec::new(), |mut seen, (hop, link)| {
            if !seen.iter().any(|(h, _)| h.to == hop.to) {
                seen.push((hop, link));
            }
            seen
        });
    if !links.is_empty() {
        out.push('\n');
        let mut table = Table::new(&[
            "link",
            "queued",
            "in flight",
            "busy",
            "retrying",
            "oldest",
            "last error",
        ]);
        for (hop, link) in links {
            table.row(vec![
                format!("{} -> {}", hop.from, hop.to),
                link.queued.to_string(),
                link.in_flight.to_string(),
                yes_no(link.busy),
                yes_no(link.retrying),
                link.oldest_age_ms
                    .map_or("-".to_owned(), |ms| format!("{ms} ms")),
                link.last_error.as_ref().map_or("-".to_owned(), |e| {
                    format!("{} ms ago: {}", e.ago_ms, e.error)
                }),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

fn names(ids: &[NodeId]) -> String {
    ids.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `w1 -> core1 -> core2 -> w2`, or `-` when nothing is sent.
fn path(hops: &[Hop]) -> String {
    let Some(first) = hops.first() else {
        return "-".to_owned();
    };
    let mut nodes = vec![first.from.to_string()];
    nodes.extend(hops.iter().map(|h| h.to.to_string()));
    nodes.join(" -> ")
}

/// Why a member is not reached, in words; for one reached, what lags.
fn why(m: &MemberVerdict) -> String {
    let lag = m.routes_lag.map(|lag| {
        let missing = lag.gap.map_or_else(
            || "a newer incarnation".to_owned(),
            |g| format!("{g} missing"),
        );
        format!(
            "routes lag: holds update {} of {}, heard of {} ({missing})",
            lag.held, m.id, lag.heard
        )
    });
    let reason = match &m.reason {
        None => return lag.unwrap_or_else(|| "-".to_owned()),
        Some(Unreached::NoMatchingFilter) => "no matching filter".to_owned(),
        Some(Unreached::NotItsTurn { filter, next }) => {
            format!("not its turn in {filter} (next: {next})")
        }
        Some(Unreached::PublisherPicks { filter, publisher }) => {
            format!("one holder of {filter} gets it, in turns {publisher} keeps")
        }
        Some(Unreached::Dead) => "dead: its routes were dropped".to_owned(),
        Some(Unreached::Left) => "left the cluster".to_owned(),
        Some(Unreached::Suspect { silent_ms }) => match silent_ms {
            Some(ms) => format!("suspect: silent for {ms} ms"),
            None => "suspect".to_owned(),
        },
        Some(Unreached::Partitioned {
            core,
            state,
            silent_ms,
        }) => format!(
            "partitioned: core {core} is {} here, silent for {silent_ms} ms",
            format!("{state:?}").to_lowercase()
        ),
        Some(Unreached::RoutesLag) => lag.clone().unwrap_or_else(|| "routes lag".to_owned()),
        Some(other) => format!("{other:?}"),
    };
    reason
}
