//! Why a plugin.yaml (or a config built in code) was refused.

use super::duration::DurationError;
use super::url::ClusterUrlError;

/// A refused configuration. Every variant names what was wrong and what would
/// be accepted, so the message alone lets an operator fix the file. Keys are
/// named in the spelling the file used (camelCase for configs built in code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The input is not UTF-8.
    #[error("plugin.yaml is not valid UTF-8 (the first bad byte is at offset {valid_up_to})")]
    NotUtf8 {
        /// How many leading bytes were valid.
        valid_up_to: usize,
    },
    /// The input is not well-formed YAML (or holds more than one document,
    /// or repeats a key with exactly the same spelling).
    #[error("plugin.yaml is not valid YAML: {message}")]
    Yaml {
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// 1-based column of the problem, when known.
        column: Option<usize>,
        /// The YAML parser's description, including the position.
        message: String,
    },
    /// The document is a list or a scalar, not `key: value` lines.
    #[error("plugin.yaml must be a mapping of `key: value` lines, found {found}")]
    NotAMapping {
        /// What the document was instead.
        found: String,
    },
    /// A key that is a number, list or mapping instead of a name.
    #[error("keys must be names, found the key {key}")]
    NonStringKey {
        /// The key as written.
        key: String,
    },
    /// A key no setting has.
    #[error("unknown key `{key}`{}", did_you_mean(.suggestion.as_deref()))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The nearest known key, in the same spelling style, if one is close.
        suggestion: Option<String>,
    },
    /// One setting given under two spellings (e.g. `queueLength` and
    /// `queue_length`, or `queuePolicy` and `queueDiscardPolicy`).
    #[error("`{first}` and `{second}` are the same setting; keep only one of them")]
    DuplicateKey {
        /// The spelling that came first.
        first: String,
        /// The spelling that repeated it.
        second: String,
    },
    /// A value of the wrong YAML type, e.g. a string where a number belongs.
    #[error("`{key}` must be {expected}, found {value}")]
    WrongType {
        /// The key as written.
        key: String,
        /// The value as written (`***` for the secret).
        value: String,
        /// What the key takes.
        expected: String,
    },
    /// A value of the right type outside what the setting allows.
    #[error("invalid value {value} for `{key}`: allowed {allowed}")]
    InvalidValue {
        /// The key as written (`clusters[i]` for one entry of the list).
        key: String,
        /// The value as written.
        value: String,
        /// What the key allows.
        allowed: String,
    },
    /// A duration that is neither a whole number of milliseconds nor a number
    /// with a unit.
    #[error(
        "invalid duration {value} for `{key}`: {reason}; write whole milliseconds \
         (500) or a whole number with a unit (\"500ms\", \"2s\", \"1m\", \"1h\")"
    )]
    InvalidDuration {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: DurationError,
    },
    /// A cluster URL that is not `http(s)://host:port`.
    #[error(
        "invalid URL {value} for `{key}`: {reason}; expected http://host:port or https://host:port"
    )]
    InvalidClusterUrl {
        /// The key as written (`clusters[i]` for one entry of the list).
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: ClusterUrlError,
    },
    /// No secret and no explicit opt-in to an unauthenticated cluster.
    #[error(
        "no cluster secret: add `secret: <shared secret>` (the same on every node), \
         or `openCluster: true` to run a cluster without authentication"
    )]
    MissingSecret,
    /// Both a secret and `openCluster: true`: which one was meant is unclear.
    #[error("both `secret` and `openCluster: true` are set; remove one of them")]
    SecretAndOpenCluster,
    /// A worker with nowhere to register.
    #[error(
        "a worker (`core: false`, the default) needs at least one core in `clusters`, \
         e.g. `clusters: [\"http://core1:8884\"]`; or set `core: true`"
    )]
    WorkerWithoutClusters,
    /// Settings that are each valid but contradict each other.
    #[error("inconsistent settings: {rule}")]
    Inconsistent {
        /// The broken rule, with the values involved.
        rule: String,
    },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Keeps refused input printable: hostile or accidental megabyte values must
/// not turn into megabyte messages.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
