//! The checks every config passes, whether it came from YAML or from code.

use std::time::Duration;

use super::duration::format_duration;
use super::keys::{Field, KeyNames};
use super::url::is_valid_host;
use super::{Config, ConfigError};

/// An inclusive range of whole numbers a setting allows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) min: u64,
    pub(super) max: u64,
    /// How the range reads in messages.
    pub(super) allowed: &'static str,
}

impl Bounds {
    /// Refuses `value` for `key` unless it is in range.
    pub(super) fn check(&self, key: &str, value: u64) -> Result<(), ConfigError> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(self.refuse(key, value.to_string()))
        }
    }

    pub(super) fn refuse(&self, key: &str, value: String) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_string(),
            value,
            allowed: self.allowed.to_string(),
        }
    }
}

pub(super) const PORT: Bounds = Bounds {
    min: 1,
    max: 65_535,
    allowed: "1 to 65535",
};
/// Past ten million a queue is a misconfiguration, not a bound.
pub(super) const QUEUE_LENGTH: Bounds = Bounds {
    min: 1,
    max: 10_000_000,
    allowed: "1 to 10000000",
};
pub(super) const BATCH_SIZE: Bounds = Bounds {
    min: 1,
    max: 65_536,
    allowed: "1 to 65536",
};
/// Same reasoning as [`QUEUE_LENGTH`]: the cap exists to bound memory.
pub(super) const MAX_IN_FLIGHT: Bounds = Bounds {
    min: 1,
    max: 10_000_000,
    allowed: "1 to 10000000",
};
pub(super) const MAX_BODY_SIZE: Bounds = Bounds {
    min: 1024,
    max: 256 * 1024 * 1024,
    allowed: "1024 (1 KiB) to 268435456 (256 MiB) bytes",
};

/// A million retained topics is far beyond what one host keeps in memory
/// for every node of a cluster; 0 turns the cluster's set off.
pub(super) const RETAINED_LIMIT: Bounds = Bounds {
    min: 0,
    max: 1_000_000,
    allowed: "0 (off) to 1000000",
};

/// Durations longer than a day are typos (seconds written as milliseconds
/// the other way round) and would only delay failure detection for ever.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Below this, heartbeats are a busy loop over HTTP.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
const MIN_DURATION: Duration = Duration::from_millis(1);

pub(super) const NODE_NAME_ALLOWED: &str = "1 to 64 characters of A-Z a-z 0-9 . _ - :";
pub(super) const HOST_ALLOWED: &str =
    "a host name, an IPv4 address or an IPv6 address (e.g. 0.0.0.0, ::, core1)";

/// Runs every check on `config`, naming keys as `names` says they were spelt.
pub(super) fn check(config: &Config, names: &KeyNames) -> Result<(), ConfigError> {
    check_fields(config, names)?;
    check_roles(config)?;
    check_timing(config, names)
}

fn check_fields(c: &Config, names: &KeyNames) -> Result<(), ConfigError> {
    PORT.check(names.name(Field::Port), u64::from(c.port))?;
    if !is_valid_host(&c.host) {
        return Err(ConfigError::InvalidValue {
            key: names.name(Field::Host).to_string(),
            value: format!("{:?}", c.host),
            allowed: HOST_ALLOWED.to_string(),
        });
    }
    let sizes = [
        (Field::QueueLength, c.queue_length, QUEUE_LENGTH),
        (Field::BatchSize, c.batch_size, BATCH_SIZE),
        (Field::MaxInFlight, c.max_in_flight, MAX_IN_FLIGHT),
        (Field::MaxBodySize, c.max_body_size, MAX_BODY_SIZE),
        (Field::RetainedLimit, c.retained_limit, RETAINED_LIMIT),
    ];
    for (field, value, bounds) in sizes {
        let key = names.name(field);
        let as_u64 = u64::try_from(value).map_err(|_| bounds.refuse(key, value.to_string()))?;
        bounds.check(key, as_u64)?;
    }
    for (field, value) in durations(c) {
        let min = if field == Field::HeartbeatInterval {
            MIN_HEARTBEAT
        } else {
            MIN_DURATION
        };
        if value < min || value > MAX_DURATION {
            return Err(ConfigError::InvalidValue {
                key: names.name(field).to_string(),
                value: format_duration(value),
                allowed: format!("{} to 24h", format_duration(min)),
            });
        }
    }
    if c.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
        return Err(ConfigError::InvalidValue {
            key: names.name(Field::Secret).to_string(),
            value: "\"\"".to_string(),
            allowed: "a non-empty string".to_string(),
        });
    }
    for (i, url) in c.clusters.iter().enumerate() {
        if c.clusters.iter().take(i).any(|earlier| earlier == url) {
            return Err(ConfigError::InvalidValue {
                key: format!("{}[{i}]", names.name(Field::Clusters)),
                value: url.to_string(),
                allowed: "each core once (this one is listed twice)".to_string(),
            });
        }
    }
    Ok(())
}

fn durations(c: &Config) -> [(Field, Duration); 8] {
    [
        (Field::HeartbeatInterval, c.heartbeat_interval),
        (Field::SuspectTimeout, c.suspect_timeout),
        (Field::DeadTimeout, c.dead_timeout),
        (Field::RequestTimeout, c.request_timeout),
        (Field::RetryBackoff, c.retry_backoff),
        (Field::RetryBackoffMax, c.retry_backoff_max),
        (Field::MessageExpiry, c.message_expiry),
        (Field::FreshnessWindow, c.freshness_window),
    ]
}

fn check_roles(c: &Config) -> Result<(), ConfigError> {
    if !c.core && c.clusters.is_empty() {
        return Err(ConfigError::WorkerWithoutClusters);
    }
    match (&c.secret, c.open_cluster) {
        (Some(_), true) => Err(ConfigError::SecretAndOpenCluster),
        (None, false) => Err(ConfigError::MissingSecret),
        _ => Ok(()),
    }
}

fn check_timing(c: &Config, names: &KeyNames) -> Result<(), ConfigError> {
    let longer = |(short_field, short): (Field, Duration),
                  (long_field, long): (Field, Duration)| {
        if long > short {
            Ok(())
        } else {
            Err(ConfigError::Inconsistent {
                rule: format!(
                    "`{}` ({}) must be longer than `{}` ({})",
                    names.name(long_field),
                    format_duration(long),
                    names.name(short_field),
                    format_duration(short),
                ),
            })
        }
    };
    let heartbeat = (Field::HeartbeatInterval, c.heartbeat_interval);
    let suspect = (Field::SuspectTimeout, c.suspect_timeout);
    let dead = (Field::DeadTimeout, c.dead_timeout);
    longer(heartbeat, suspect)?;
    longer(suspect, dead)?;
    if c.retry_backoff > c.retry_backoff_max {
        return Err(ConfigError::Inconsistent {
            rule: format!(
                "`{}` ({}) must not be longer than `{}` ({})",
                names.name(Field::RetryBackoff),
                format_duration(c.retry_backoff),
                names.name(Field::RetryBackoffMax),
                format_duration(c.retry_backoff_max),
            ),
        });
    }
    Ok(())
}
