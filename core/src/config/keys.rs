//! The plugin.yaml keys, their spellings, and the nearest-key suggestion.

/// One setting of [`super::Config`], whatever spelling named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Core,
    Host,
    Port,
    QueueLength,
    QueuePolicy,
    Clusters,
    NodeName,
    Advertise,
    Secret,
    OpenCluster,
    HeartbeatInterval,
    SuspectTimeout,
    DeadTimeout,
    RequestTimeout,
    RetryBackoff,
    RetryBackoffMax,
    MessageExpiry,
    FreshnessWindow,
    BatchSize,
    MaxInFlight,
    MaxBodySize,
    RetainedLimit,
}

impl Field {
    pub(super) const ALL: [Field; 22] = [
        Field::Core,
        Field::Host,
        Field::Port,
        Field::QueueLength,
        Field::QueuePolicy,
        Field::Clusters,
        Field::NodeName,
        Field::Advertise,
        Field::Secret,
        Field::OpenCluster,
        Field::HeartbeatInterval,
        Field::SuspectTimeout,
        Field::DeadTimeout,
        Field::RequestTimeout,
        Field::RetryBackoff,
        Field::RetryBackoffMax,
        Field::MessageExpiry,
        Field::FreshnessWindow,
        Field::BatchSize,
        Field::MaxInFlight,
        Field::MaxBodySize,
        Field::RetainedLimit,
    ];

    /// The canonical spelling: camelCase, like the seed's keys.
    pub(super) fn camel(self) -> &'static str {
        match self {
            Field::Core => "core",
            Field::Host => "host",
            Field::Port => "port",
            Field::QueueLength => "queueLength",
            Field::QueuePolicy => "queuePolicy",
            Field::Clusters => "clusters",
            Field::NodeName => "nodeName",
            Field::Advertise => "advertise",
            Field::Secret => "secret",
            Field::OpenCluster => "openCluster",
            Field::HeartbeatInterval => "heartbeatInterval",
            Field::SuspectTimeout => "suspectTimeout",
            Field::DeadTimeout => "deadTimeout",
            Field::RequestTimeout => "requestTimeout",
            Field::RetryBackoff => "retryBackoff",
            Field::RetryBackoffMax => "retryBackoffMax",
            Field::MessageExpiry => "messageExpiry",
            Field::FreshnessWindow => "freshnessWindow",
            Field::BatchSize => "batchSize",
            Field::MaxInFlight => "maxInFlight",
            Field::MaxBodySize => "maxBodySize",
            Field::RetainedLimit => "retainedLimit",
        }
    }

    /// The snake_case spelling the original plugin's loader also takes.
    pub(super) fn snake(self) -> &'static str {
        match self {
            Field::Core => "core",
            Field::Host => "host",
            Field::Port => "port",
            Field::QueueLength => "queue_length",
            Field::QueuePolicy => "queue_policy",
            Field::Clusters => "clusters",
            Field::NodeName => "node_name",
            Field::Advertise => "advertise",
            Field::Secret => "secret",
            Field::OpenCluster => "open_cluster",
            Field::HeartbeatInterval => "heartbeat_interval",
            Field::SuspectTimeout => "suspect_timeout",
            Field::DeadTimeout => "dead_timeout",
            Field::RequestTimeout => "request_timeout",
            Field::RetryBackoff => "retry_backoff",
            Field::RetryBackoffMax => "retry_backoff_max",
            Field::MessageExpiry => "message_expiry",
            Field::FreshnessWindow => "freshness_window",
            Field::BatchSize => "batch_size",
            Field::MaxInFlight => "max_in_flight",
            Field::MaxBodySize => "max_body_size",
            Field::RetainedLimit => "retained_limit",
        }
    }
}

/// The original plugin's own name for the policy, so its files load unchanged.
const ALIASES: [(&str, Field); 2] = [
    ("queueDiscardPolicy", Field::QueuePolicy),
    ("queue_discard_policy", Field::QueuePolicy),
];

/// Every accepted spelling, camelCase before snake_case so that ties in
/// [`suggest`] favour the canonical one.
fn spellings() -> impl Iterator<Item = (&'static str, Field)> {
    Field::ALL
        .into_iter()
        .map(|f| (f.camel(), f))
        .chain(Field::ALL.into_iter().map(|f| (f.snake(), f)))
        .chain(ALIASES)
}

/// The setting `key` names, and the static spelling it matched.
pub(super) fn lookup(key: &str) -> Option<(Field, &'static str)> {
    spellings()
        .find(|(name, _)| *name == key)
        .map(|(name, field)| (field, name))
}

/// Beyond this, a key is not a typo of ours and a suggestion would only confuse.
const LONGEST_KEY_TO_SUGGEST_FOR: usize = 64;

/// The known key nearest to `key`, in the spelling style `key` uses, if one is
/// near enough to be a plausible typo.
pub(super) fn suggest(key: &str) -> Option<&'static str> {
    let len = key.chars().count();
    if len == 0 || len > LONGEST_KEY_TO_SUGGEST_FOR {
        return None;
    }
    let user_snake = key.contains('_');
    let user_camel = !user_snake && key.chars().any(|c| c.is_ascii_uppercase());
    let wanted = key.to_ascii_lowercase();
    let max_distance = match len {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &'static str)> = None;
    for (name, _) in spellings() {
        let multiword_snake = name.contains('_');
        let multiword_camel = name.chars().any(|c| c.is_ascii_uppercase());
        let style_fits = (!user_snake || !multiword_camel) && (!user_camel || !multiword_snake);
        if !style_fits {
            continue;
        }
        let d = levenshtein(&wanted, &name.to_ascii_lowercase());
        let better = match best {
            Some((best_distance, _)) => d < best_distance,
            None => true,
        };
        if d <= max_distance && better {
            best = Some((d, name));
        }
    }
    best.map(|(_, name)| name)
}

/// Edit distance (insertions, deletions, substitutions) between two strings.
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let delete = prev
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insert = cur.last().copied().unwrap_or(usize::MAX).saturating_add(1);
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Which spelling named each setting in one file, so that later messages use
/// the user's words and a second spelling of the same setting is caught.
#[derive(Debug, Default)]
pub(super) struct KeyNames(Vec<(Field, &'static str)>);

impl KeyNames {
    /// Notes that `spelling` set `field`; refuses a second spelling of it.
    pub(super) fn record(
        &mut self,
        field: Field,
        spelling: &'static str,
    ) -> Result<(), super::ConfigError> {
        if let Some((_, first)) = self.0.iter().find(|(f, _)| *f == field) {
            return Err(super::ConfigError::DuplicateKey {
                first: (*first).to_string(),
                second: spelling.to_string(),
            });
        }
        self.0.push((field, spelling));
        Ok(())
    }

    /// The spelling the file used for `field`, or the canonical one.
    pub(super) fn name(&self, field: Field) -> &'static str {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| field.camel(), |(_, name)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("port", "prot"), 2);
        assert_eq!(levenshtein("héllo", "hello"), 1);
    }

    #[test]
    fn every_spelling_maps_back_to_its_field() {
        for f in Field::ALL {
            assert_eq!(lookup(f.camel()), Some((f, f.camel())));
            assert_eq!(lookup(f.snake()), Some((f, f.snake())));
        }
        assert_eq!(
            lookup("queueDiscardPolicy").map(|x| x.0),
            Some(Field::QueuePolicy)
        );
        assert_eq!(
            lookup("queue_discard_policy").map(|x| x.0),
            Some(Field::QueuePolicy)
        );
        assert_eq!(lookup("QueueLength"), None);
    }

    #[test]
    fn suggestions_follow_the_users_spelling_style() {
        assert_eq!(suggest("queuePolicyy"), Some("queuePolicy"));
        assert_eq!(suggest("queue_lenght"), Some("queue_length"));
        assert_eq!(suggest("queueLenght"), Some("queueLength"));
        assert_eq!(suggest("queue_discard_polcy"), Some("queue_discard_policy"));
        assert_eq!(suggest("QUEUE_LENGTH"), Some("queue_length"));
        assert_eq!(suggest("prot"), Some("port"));
        assert_eq!(suggest("cluster"), Some("clusters"));
        assert_eq!(suggest("heartbeat"), None);
        assert_eq!(suggest("somethingElseEntirely"), None);
        assert_eq!(suggest(""), None);
    }
}
