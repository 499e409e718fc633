//! Reading plugin.yaml: YAML text to a checked [`Config`].
//!
//! The document is parsed into a generic YAML value and walked by hand rather
//! than derived with serde, so that every refusal can name the key as the user
//! spelt it, the value as written, and what would have been accepted.

use serde_yaml::{Mapping, Value};

use super::duration::{parse_duration, DurationError};
use super::error::shorten;
use super::keys::{self, Field, KeyNames};
use super::validate::{self, Bounds};
use super::{ClusterUrl, Config, ConfigError};
use crate::auth::Secret;
use crate::id::NodeId;
use crate::queue::QueuePolicy;

pub(super) fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
    let document: Value = serde_yaml::from_str(text).map_err(|e| {
        let location = e.location();
        ConfigError::Yaml {
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message: e.to_string(),
        }
    })?;
    let mapping = match document {
        Value::Mapping(m) => m,
        // An empty file (or one of comments only) sets nothing.
        Value::Null => Mapping::new(),
        other => {
            return Err(ConfigError::NotAMapping {
                found: describe(&other),
            })
        }
    };
    let mut config = Config::default();
    let mut names = KeyNames::default();
    for (key, value) in mapping {
        let key = match key {
            Value::String(k) => k,
            other => {
                return Err(ConfigError::NonStringKey {
                    key: render(&other),
                })
            }
        };
        let Some((field, spelling)) = keys::lookup(&key) else {
            return Err(ConfigError::UnknownKey {
                suggestion: keys::suggest(&key).map(str::to_string),
                key: shorten(&key),
            });
        };
        names.record(field, spelling)?;
        apply(&mut config, field, spelling, value)?;
    }
    validate::check(&config, &names)?;
    Ok(config)
}

fn apply(c: &mut Config, field: Field, key: &str, v: Value) -> Result<(), ConfigError> {
    match field {
        Field::Core => c.core = boolean(key, &v)?,
        Field::Host => c.host = string(key, &v)?,
        Field::Port => c.port = number(key, &v, validate::PORT)?,
        Field::QueueLength => c.queue_length = number(key, &v, validate::QUEUE_LENGTH)?,
        Field::QueuePolicy => c.queue_policy = queue_policy(key, &v)?,
        Field::Clusters => c.clusters = clusters(key, &v)?,
        Field::NodeName => c.node_name = node_name(key, &v)?,
        Field::Advertise => {
            c.advertise = match &v {
                Value::Null => None,
                _ => Some(url(key, &string(key, &v)?)?),
            }
        }
        Field::Secret => c.secret = secret(key, &v)?,
        Field::OpenCluster => c.open_cluster = boolean(key, &v)?,
        Field::HeartbeatInterval => c.heartbeat_interval = duration(key, &v)?,
        Field::SuspectTimeout => c.suspect_timeout = duration(key, &v)?,
        Field::DeadTimeout => c.dead_timeout = duration(key, &v)?,
        Field::RequestTimeout => c.request_timeout = duration(key, &v)?,
        Field::RetryBackoff => c.retry_backoff = duration(key, &v)?,
        Field::RetryBackoffMax => c.retry_backoff_max = duration(key, &v)?,
        Field::MessageExpiry => c.message_expiry = duration(key, &v)?,
        Field::FreshnessWindow => c.freshness_window = duration(key, &v)?,
        Field::BatchSize => c.batch_size = number(key, &v, validate::BATCH_SIZE)?,
        Field::MaxInFlight => c.max_in_flight = number(key, &v, validate::MAX_IN_FLIGHT)?,
        Field::MaxBodySize => c.max_body_size = number(key, &v, validate::MAX_BODY_SIZE)?,
        Field::RetainedLimit => c.retained_limit = number(key, &v, validate::RETAINED_LIMIT)?,
    }
    Ok(())
}

fn wrong_type(key: &str, v: &Value, expected: &str) -> ConfigError {
    ConfigError::WrongType {
        key: key.to_string(),
        value: render(v),
        expected: expected.to_string(),
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        // Quoted booleans come from templating tools; anything looser
        // (`yes`, `on`, `1`) is too easy to misread.
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(wrong_type(key, v, "true or false")),
    }
}

fn string(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(wrong_type(key, v, "a string")),
    }
}

/// A whole number within `bounds`, converted to the setting's type.
fn number<T: TryFrom<u64>>(key: &str, v: &Value, bounds: Bounds) -> Result<T, ConfigError> {
    let Value::Number(n) = v else {
        return Err(wrong_type(
            key,
            v,
            &format!("a whole number ({})", bounds.allowed),
        ));
    };
    if n.is_f64() {
        return Err(wrong_type(
            key,
            v,
            &format!("a whole number ({})", bounds.allowed),
        ));
    }
    let value = n
        .as_u64()
        .ok_or_else(|| bounds.refuse(key, n.to_string()))?;
    bounds.check(key, value)?;
    T::try_from(value).map_err(|_| bounds.refuse(key, n.to_string()))
}

const QUEUE_POLICY_ALLOWED: &str = "0 (discard newest) or 1 (discard oldest)";

fn queue_policy(key: &str, v: &Value) -> Result<QueuePolicy, ConfigError> {
    let Value::Number(n) = v else {
        return Err(wrong_type(key, v, QUEUE_POLICY_ALLOWED));
    };
    n.as_i64()
        .and_then(QueuePolicy::from_code)
        .ok_or_else(|| ConfigError::InvalidValue {
            key: key.to_string(),
            value: n.to_string(),
            allowed: QUEUE_POLICY_ALLOWED.to_string(),
        })
}

fn url(key: &str, text: &str) -> Result<ClusterUrl, ConfigError> {
    text.parse()
        .map_err(|reason| ConfigError::InvalidClusterUrl {
            key: key.to_string(),
            value: quote(text),
            reason,
        })
}

fn clusters(key: &str, v: &Value) -> Result<Vec<ClusterUrl>, ConfigError> {
    const EXPECTED: &str = "a list of core URLs, e.g. [\"http://core1:8884\"]";
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_key = format!("{key}[{i}]");
                match item {
                    Value::String(s) => url(&item_key, s),
                    other => Err(wrong_type(
                        &item_key,
                        other,
                        "a URL such as \"http://core1:8884\"",
                    )),
                }
            })
            .collect(),
        _ => Err(wrong_type(key, v, EXPECTED)),
    }
}

fn node_name(key: &str, v: &Value) -> Result<Option<NodeId>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => NodeId::new(s)
            .map(Some)
            .map_err(|_| ConfigError::InvalidValue {
                key: key.to_string(),
                value: quote(s),
                allowed: validate::NODE_NAME_ALLOWED.to_string(),
            }),
        _ => Err(wrong_type(
            key,
            v,
            "a string (quote names that look like numbers)",
        )),
    }
}

fn secret(key: &str, v: &Value) -> Result<Option<Secret>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(Secret::new(s.as_str()))),
        // Never echo anything that may be the secret, even mistyped.
        _ => Err(ConfigError::WrongType {
            key: key.to_string(),
            value: "***".to_string(),
            expected: "a string (quote secrets that look like numbers)".to_string(),
        }),
    }
}

fn duration(key: &str, v: &Value) -> Result<std::time::Duration, ConfigError> {
    let refuse = |reason| ConfigError::InvalidDuration {
        key: key.to_string(),
        value: render(v),
        reason,
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(ms) => Ok(std::time::Duration::from_millis(ms)),
            None if n.is_f64() => Err(refuse(DurationError::NotWhole)),
            None => Err(refuse(DurationError::Negative)),
        },
        Value::String(s) => parse_duration(s).map_err(refuse),
        _ => Err(wrong_type(
            key,
            v,
            "a duration: whole milliseconds (500) or a string with a unit (\"2s\")",
        )),
    }
}

/// What kind of YAML value `v` is, for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => format!("the value {}", render(v)),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// `v` as the user wrote it, near enough: scalars verbatim (strings quoted),
/// collections by kind.
fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Sequence(items) => format!("a list of {} item(s)", items.len()),
        Value::Mapping(m) => format!("a mapping of {} key(s)", m.len()),
        Value::Tagged(t) => format!("{} {}", t.tag, render(&t.value)),
    }
}

fn quote(s: &str) -> String {
    format!("{:?}", shorten(s))
}
