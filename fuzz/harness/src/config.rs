//! plugin.yaml into the loader: it must not panic; a loaded config must
//! validate, load the same from bytes as from text, and survive being
//! serialised (the form `status()` shows) and loaded again. The
//! serialised form writes the secret as `"***"`, so only that field is
//! expected to differ.

use arbitrary::{Arbitrary, Unstructured};
use mqtt_cluster_core::Config;

const KEYS: [&str; 46] = [
    "core",
    "host",
    "port",
    "queueLength",
    "queuePolicy",
    "clusters",
    "nodeName",
    "advertise",
    "secret",
    "openCluster",
    "heartbeatInterval",
    "suspectTimeout",
    "deadTimeout",
    "requestTimeout",
    "retryBackoff",
    "retryBackoffMax",
    "messageExpiry",
    "freshnessWindow",
    "batchSize",
    "maxInFlight",
    "maxBodySize",
    "queue_length",
    "queue_policy",
    "node_name",
    "open_cluster",
    "heartbeat_interval",
    "suspect_timeout",
    "dead_timeout",
    "request_timeout",
    "retry_backoff",
    "retry_backoff_max",
    "message_expiry",
    "freshness_window",
    "batch_size",
    "max_in_flight",
    "max_body_size",
    "queueDiscardPolicy",
    "queue_discard_policy",
    "queuePolicyy",
    "Core",
    "",
    "secret ",
    "clusters:",
    "\"port\"",
    "? port",
    "<<",
];

const WORDS: [&str; 24] = [
    "true",
    "false",
    "null",
    "~",
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "1024",
    "10ms",
    "500ms",
    "2s",
    "1m",
    "1h",
    "25h",
    "0ms",
    "1.5s",
    "s3cret-value",
    "''",
    "[]",
    "{}",
    "0x10",
    "1e3",
];

const URLS: [&str; 10] = [
    "http://core1:8884",
    "https://core2:443",
    "http://[::1]:8884",
    "http://127.0.0.1:1",
    "http://CORE1:8884",
    "http://core1",
    "ftp://x:1",
    "http://core1:0",
    "http://core1:8884/",
    "http://a b:1",
];

#[derive(Arbitrary, Debug)]
enum Value {
    Word(u8),
    Number(u64),
    Text(String),
    Quoted(String),
    Url(u8),
    Urls(Vec<u8>),
    Duration(u16, u8),
    Nested(Vec<(u8, u8)>),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Word(i) => WORDS[usize::from(*i) % WORDS.len()].to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Text(s) => s.clone(),
            Value::Quoted(s) => serde_json::to_string(s).unwrap_or_default(),
            Value::Url(i) => URLS[usize::from(*i) % URLS.len()].to_owned(),
            Value::Urls(list) => {
                let items: Vec<&str> = list
                    .iter()
                    .take(6)
                    .map(|i| URLS[usize::from(*i) % URLS.len()])
                    .collect();
                format!("[{}]", items.join(", "))
            }
            Value::Duration(n, unit) => {
                let unit = ["", "ms", "s", "m", "h", "d", " ms"][usize::from(*unit) % 7];
                format!("{n}{unit}")
            }
            Value::Nested(pairs) => {
                let items: Vec<String> = pairs
                    .iter()
                    .take(4)
                    .map(|(k, v)| {
                        format!(
                            "{}: {}",
                            KEYS[usize::from(*k) % KEYS.len()],
                            WORDS[usize::from(*v) % WORDS.len()]
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Bytes(Vec<u8>),
    Text(String),
    Pairs(Vec<(Key, Value)>),
}

fn check(text: &str) {
    let loaded = Config::from_yaml_str(text);
    let from_bytes = Config::from_yaml_slice(text.as_bytes());
    assert_eq!(loaded, from_bytes, "text and bytes load differently");
    let Ok(config) = loaded else {
        return;
    };
    if let Err(e) = config.validate() {
        panic!("a loaded config does not validate: {e}\n{text}");
    }
    let shown = match serde_yaml::to_string(&config) {
        Ok(shown) => shown,
        Err(e) => panic!("a loaded config does not serialise: {e}\n{text}"),
    };
    let mut again = match Config::from_yaml_str(&shown) {
        Ok(again) => again,
        Err(e) => panic!("a serialised config does not load: {e}\n{shown}\nfrom:\n{text}"),
    };
    // The serialised form hides the secret as "***".
    again.secret.clone_from(&config.secret);
    assert_eq!(
        again, config,
        "a config changed through serialising and loading:\n{shown}\nfrom:\n{text}"
    );
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match input {
        Input::Bytes(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => check(text),
            Err(_) => assert!(
                Config::from_yaml_slice(&bytes).is_err(),
                "bytes that are not UTF-8 loaded"
            ),
        },
        Input::Text(text) => check(&text),
        Input::Pairs(pairs) => {
            let mut text = String::new();
            for (key, value) in pairs.iter().take(32) {
                let key = match key {
                    Key::Known(i) => KEYS[usize::from(*i) % KEYS.len()].to_owned(),
                    Key::Any(s) => s.clone(),
                };
                text.push_str(&key);
                text.push_str(": ");
                text.push_str(&value.render());
                text.push('\n');
            }
            check(&text);
        }
    }
}
