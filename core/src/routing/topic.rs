//! Validated MQTT topic names, topic filters and (shared) subscriptions.
//!
//! The rules are those of MQTT 3.1.1 §4.7 and MQTT 5 §4.7–4.8: a topic name
//! is what a message is published to, a topic filter is what a client
//! subscribes to, and `$share/{group}/{filter}` is a shared subscription.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest topic name, filter or subscription accepted, in bytes (MQTT
/// strings carry a 16-bit length).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix that turns a subscription into a shared one (MQTT 5 §4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// How much of a refused input an error keeps, in characters, so that a
/// 64 KiB topic does not turn into a 64 KiB log line.
const SHOWN_INPUT_CHARS: usize = 120;

/// Which kind of string a [`TopicError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicKind {
    /// A topic name, as published to.
    Name,
    /// A topic filter, as subscribed to.
    Filter,
    /// A subscription: a filter, or `$share/{group}/{filter}`.
    Subscription,
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicKind::Name => "topic name",
            TopicKind::Filter => "topic filter",
            TopicKind::Subscription => "subscription",
        })
    }
}

/// Why a topic name, filter or subscription was refused.
///
/// `input` fields hold the refused string, cut to its first 120 characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The string is empty; MQTT requires at least one character.
    #[error("empty {kind}: at least one character is required")]
    Empty {
        /// What was being parsed.
        kind: TopicKind,
    },
    /// The string is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("{kind} of {len} bytes is longer than the {MAX_TOPIC_LEN} bytes allowed: {input:?}")]
    TooLong {
        /// What was being parsed.
        kind: TopicKind,
        /// Its length in bytes.
        len: usize,
        /// The refused string, cut.
        input: String,
    },
    /// The string contains U+0000, which MQTT forbids in topics.
    #[error("{kind} {input:?} contains a NUL character")]
    Nul {
        /// What was being parsed.
        kind: TopicKind,
        /// The refused string, cut.
        input: String,
    },
    /// A topic name contains `+` or `#`, which only filters may use.
    #[error(
        "topic name {input:?} contains the wildcard '{wildcard}', which only topic filters may use"
    )]
    WildcardInName {
        /// The wildcard found.
        wildcard: char,
        /// The refused string, cut.
        input: String,
    },
    /// A `+` shares its level with other characters.
    #[error("topic filter {input:?}: '+' must fill a whole level, as in \"a/+/b\"")]
    MisplacedPlus {
        /// The refused string, cut.
        input: String,
    },
    /// A `#` shares its level with other characters or is not the last level.
    #[error("topic filter {input:?}: '#' must be the whole last level, as in \"a/#\"")]
    MisplacedHash {
        /// The refused string, cut.
        input: String,
    },
    /// A plain topic filter starts with `$share/`, which MQTT 5 reserves for
    /// shared subscriptions.
    #[error("topic filter {input:?} starts with \"$share/\", which is reserved for shared subscriptions")]
    ReservedSharePrefix {
        /// The refused string, cut.
        input: String,
    },
    /// `$share/{group}/...` with an empty group.
    #[error("shared subscription {input:?} has an empty group name")]
    EmptyShareGroup {
        /// The refused string, cut.
        input: String,
    },
    /// A share group name containing `+`, `#` or `/`.
    #[error("share group {group:?} must not contain '+', '#' or '/'")]
    InvalidShareGroup {
        /// The refused group name, cut.
        group: String,
    },
    /// `$share/{group}` with no filter after the group.
    #[error("shared subscription {input:?} has no topic filter after the group: expected \"$share/{{group}}/{{filter}}\"")]
    MissingSharedFilter {
        /// The refused string, cut.
        input: String,
    },
}

fn shown(input: &str) -> String {
    input.chars().take(SHOWN_INPUT_CHARS).collect()
}

/// The checks every kind of topic string shares: not empty, not too long, no NUL.
fn check_common(input: &str, kind: TopicKind) -> Result<(), TopicError> {
    if input.is_empty() {
        return Err(TopicError::Empty { kind });
    }
    if input.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            kind,
            len: input.len(),
            input: shown(input),
        });
    }
    if input.contains('\0') {
        return Err(TopicError::Nul {
            kind,
            input: shown(input),
        });
    }
    Ok(())
}

/// The level rules of filters, on a string that passed [`check_common`].
/// `whole` is the full input, for the error message.
fn check_filter_levels(filter: &str, whole: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedPlus {
                input: shown(whole),
            });
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedHash {
                input: shown(whole),
            });
        }
    }
    Ok(())
}

/// A topic a message is published to: non-empty, at most 65535 bytes, no
/// wildcards, no NUL.
///
/// Levels are separated by `/`, and empty levels are real levels: `a//b` has
/// three. Topics starting with `$` (such as `$SYS/...`) are not matched by
/// filters whose first level is a wildcard.
///
/// ```
/// use mqtt_cluster_core::routing::TopicName;
/// let topic = TopicName::new("site/1/temp").unwrap();
/// assert_eq!(topic.levels().count(), 3);
/// assert!(TopicName::new("site/+/temp").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(std::sync::Arc<str>);

impl TopicName {
    /// Checks `name` and makes it a topic name.
    pub fn new(name: &str) -> Result<Self, TopicError> {
        Self::check(name)?;
        Ok(TopicName(name.into()))
    }

    fn check(name: &str) -> Result<(), TopicError> {
        check_common(name, TopicKind::Name)?;
        if let Some(wildcard) = name.chars().find(|c| matches!(c, '+' | '#')) {
            return Err(TopicError::WildcardInName {
                wildcard,
                input: shown(name),
            });
        }
        Ok(())
    }

    /// The topic as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the topic, empty ones included.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the topic starts with `$`, which hides it from filters that
    /// start with a wildcard.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A topic filter a client subscribes to.
///
/// Levels are separated by `/`; a level may be empty. `+` must fill a whole
/// level and matches exactly one level (an empty one too); `#` must be the
/// whole last level and matches its parent level and any number of levels
/// below it. At most 65535 bytes, no NUL. A filter starting with `$share/` is
/// refused: that is a shared subscription, see [`Subscription`].
///
/// ```
/// use mqtt_cluster_core::routing::{TopicFilter, TopicName};
/// let filter = TopicFilter::new("site/+/temp/#").unwrap();
/// assert!(filter.matches(&TopicName::new("site/1/temp").unwrap()));
/// assert!(TopicFilter::new("site/a+").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(Box<str>);

impl TopicFilter {
    /// Checks `filter` and makes it a topic filter.
    pub fn new(filter: &str) -> Result<Self, TopicError> {
        Self::check(filter)?;
        Ok(TopicFilter(filter.into()))
    }

    fn check(filter: &str) -> Result<(), TopicError> {
        check_common(filter, TopicKind::Filter)?;
        if filter.starts_with(SHARE_PREFIX) {
            return Err(TopicError::ReservedSharePrefix {
                input: shown(filter),
            });
        }
        check_filter_levels(filter, filter)
    }

    /// The filter as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The levels of the filter, empty ones included.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the filter contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Whether a message published to `topic` matches this filter.
    ///
    /// This checks one filter; [`RouteTable`](super::RouteTable) matches a
    /// topic against many at once.
    pub fn matches(&self, topic: &TopicName) -> bool {
        // Validation guarantees a leading '+' or '#' is a whole first level.
        if topic.is_dollar() && self.0.starts_with(['+', '#']) {
            return false;
        }
        let mut filter_levels = self.levels();
        let mut topic_levels = topic.levels();
        loop {
            match (filter_levels.next(), topic_levels.next()) {
                // `#` also matches when the topic ended at its parent level.
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(wanted), Some(level)) if wanted == level => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// Builds a filter from text the routing table assembled from levels that
    /// were each validated when inserted.
    pub(super) fn from_validated_levels(text: String) -> Result<Self, TopicError> {
        // Re-checking costs little next to building the string, and keeps a
        // bug in the table from producing a filter that breaks the rules.
        Self::check(&text)?;
        Ok(TopicFilter(text.into_boxed_str()))
    }
}

/// The name of a shared-subscription group: non-empty, without `+`, `#`, `/`
/// or NUL.
///
/// ```
/// use mqtt_cluster_core::routing::ShareGroup;
/// assert!(ShareGroup::new("workers").is_ok());
/// assert!(ShareGroup::new("a/b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareGroup(Box<str>);

impl ShareGroup {
    /// Checks `group` and makes it a group name.
    pub fn new(group: &str) -> Result<Self, TopicError> {
        if group.is_empty() {
            return Err(TopicError::EmptyShareGroup {
                input: shown(group),
            });
        }
        if group.contains(['+', '#', '/', '\0']) || group.len() > MAX_TOPIC_LEN {
            return Err(TopicError::InvalidShareGroup {
                group: shown(group),
            });
        }
        Ok(ShareGroup(group.into()))
    }

    /// The group name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a node subscribes to: a plain filter, or a filter shared by a group
/// whose messages each go to only one of the group's subscribers.
///
/// Written as the filter, or as `$share/{group}/{filter}`; both parse back
/// with [`Subscription::parse`] and (de)serialise as that string.
///
/// ```
/// use mqtt_cluster_core::routing::Subscription;
/// let shared = Subscription::parse("$share/workers/jobs/#").unwrap();
/// assert_eq!(shared.share_group(), Some("workers"));
/// assert_eq!(shared.filter().as_str(), "jobs/#");
/// assert_eq!(shared.to_string(), "$share/workers/jobs/#");
/// assert!(Subscription::parse("$share/workers").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subscription {
    /// Every subscriber of the filter gets every matching message.
    Plain(TopicFilter),
    /// One subscriber among those holding the same group and filter gets
    /// each matching message.
    Shared {
        /// The group.
        group: ShareGroup,
        /// The filter the group shares.
        filter: TopicFilter,
    },
}

impl Subscription {
    /// Parses a filter or `$share/{group}/{filter}`.
    pub fn parse(input: &str) -> Result<Self, TopicError> {
        check_common(input, TopicKind::Subscription)?;
        let Some(rest) = input.strip_prefix(SHARE_PREFIX) else {
            return TopicFilter::new(input).map(Subscription::Plain);
        };
        let Some((group, filter)) = rest.split_once('/') else {
            if rest.is_empty() {
                return Err(TopicError::EmptyShareGroup {
                    input: shown(input),
                });
            }
            return Err(TopicError::MissingSharedFilter {
                input: shown(input),
            });
        };
        if group.is_empty() {
            return Err(TopicError::EmptyShareGroup {
                input: shown(input),
            });
        }
        let group = ShareGroup::new(group)?;
        if filter.is_empty() {
            return Err(TopicError::MissingSharedFilter {
                input: shown(input),
            });
        }
        if filter.starts_with(SHARE_PREFIX) {
            return Err(TopicError::ReservedSharePrefix {
                input: shown(input),
            });
        }
        check_filter_levels(filter, input)?;
        Ok(Subscription::Shared {
            group,
            filter: TopicFilter(filter.into()),
        })
    }

    /// The topic filter, shared or not.
    pub fn filter(&self) -> &TopicFilter {
        match self {
            Subscription::Plain(filter) | Subscription::Shared { filter, .. } => filter,
        }
    }

    /// The share group, for a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        match self {
            Subscription::Plain(_) => None,
            Subscription::Shared { group, .. } => Some(group.as_str()),
        }
    }
}

impl From<TopicFilter> for Subscription {
    fn from(filter: TopicFilter) -> Self {
        Subscription::Plain(filter)
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Plain(filter) => f.write_str(filter.as_str()),
            Subscription::Shared { group, filter } => {
                write!(f, "{SHARE_PREFIX}{}/{}", group.as_str(), filter.as_str())
            }
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl FromStr for Subscription {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subscription::parse(s)
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subscription {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let crate::wire::Text(text) = crate::wire::Text::deserialize(deserializer)?;
        Subscription::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The string-like impls the three validated string types share.
macro_rules! validated_string_impls {
    ($type:ident) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $type {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $type::new(s)
            }
        }

        impl TryFrom<&str> for $type {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $type::new(s)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let crate::wire::Text(text) = crate::wire::Text::deserialize(deserializer)?;
                $type::new(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_string_impls!(TopicName);
validated_string_impls!(TopicFilter);
validated_string_impls!(ShareGroup);
