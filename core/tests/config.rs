//! plugin.yaml loading: the seed's and the original plugin's files, every
//! refusal, and that no input makes the loader panic.

mod config {
    use std::time::Duration;

    use mqtt_cluster_core::auth::Secret;
    use mqtt_cluster_core::config::{
        ClusterUrl, ClusterUrlError, Config, ConfigError, DurationError, Scheme,
    };
    use mqtt_cluster_core::queue::QueuePolicy;
    use mqtt_cluster_core::{NodeId, Role};

    const SEED: &str = include_str!("fixtures/config/seed.yaml");
    const ORIGINAL: &str = include_str!("fixtures/config/original_snake_case.yaml");
    const ALL_KEYS: &str = include_str!("fixtures/config/all_keys.yaml");
    const ALL_KEYS_SNAKE: &str = include_str!("fixtures/config/all_keys_snake.yaml");

    fn url(s: &str) -> ClusterUrl {
        s.parse().unwrap()
    }

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(yaml)
    }

    /// A valid core, plus `extra` lines.
    fn core_with(extra: &str) -> Result<Config, ConfigError> {
        load(&format!("core: true\nsecret: s3cret-value\n{extra}"))
    }

    fn err(result: Result<Config, ConfigError>) -> ConfigError {
        match result {
            Ok(c) => panic!("expected an error, loaded {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn seed_file_fails_only_for_its_missing_secret() {
        let e = err(load(SEED));
        assert_eq!(e, ConfigError::MissingSecret);
        let msg = e.to_string();
        assert!(msg.contains("secret"), "{msg}");
        assert!(msg.contains("openCluster: true"), "{msg}");
    }

    #[test]
    fn seed_file_loads_once_a_secret_is_added() {
        let c = load(&format!("{SEED}secret: s3cret\n")).unwrap();
        assert!(c.core);
        assert_eq!(c.role(), Role::Core);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 8884);
        assert_eq!(c.queue_length, 1024);
        assert_eq!(c.queue_policy, QueuePolicy::DiscardNewest);
        assert_eq!(
            c.clusters,
            vec![url("http://core1:8884"), url("http://core2:8884")]
        );
        assert_eq!(c.secret, Some(Secret::new("s3cret")));
        assert!(!c.open_cluster);
        let defaults = Config::default();
        assert_eq!(c.heartbeat_interval, defaults.heartbeat_interval);
        assert_eq!(c.batch_size, defaults.batch_size);
    }

    #[test]
    fn seed_file_loads_with_an_explicit_open_cluster() {
        let c = load(&format!("{SEED}openCluster: true\n")).unwrap();
        assert!(c.open_cluster);
        assert_eq!(c.secret, None);
    }

    #[test]
    fn original_plugins_snake_case_file_loads() {
        let c = load(ORIGINAL).unwrap();
        assert!(c.core);
        assert_eq!(c.queue_length, 1024);
        assert_eq!(c.queue_policy, QueuePolicy::DiscardOldest);
        assert_eq!(c.batch_size, 64);
        assert_eq!(c.clusters.len(), 2);
        assert_eq!(c.secret, Some(Secret::new("s3cret-shared-by-all-nodes")));
    }

    #[test]
    fn every_key_loads_in_both_spellings_alike() {
        let camel = load(ALL_KEYS).unwrap();
        let snake = load(ALL_KEYS_SNAKE).unwrap();
        assert_eq!(camel, snake);
        assert_eq!(camel.host, "::");
        assert_eq!(camel.port, 9000);
        assert_eq!(camel.queue_length, 2048);
        assert_eq!(camel.queue_policy, QueuePolicy::DiscardOldest);
        assert_eq!(camel.clusters[1].scheme(), Scheme::Https);
        assert_eq!(camel.clusters[1].authority(), "[fd00::2]:9443");
        assert_eq!(camel.node_name, Some(NodeId::new("core-a").unwrap()));
        assert_eq!(camel.advertise, Some(url("http://core-a.example:9000")));
        assert_eq!(camel.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(camel.suspect_timeout, Duration::from_secs(2));
        assert_eq!(camel.dead_timeout, Duration::from_secs(60));
        assert_eq!(camel.request_timeout, Duration::from_millis(3000));
        assert_eq!(camel.retry_backoff, Duration::from_millis(100));
        assert_eq!(camel.retry_backoff_max, Duration::from_secs(10));
        assert_eq!(camel.message_expiry, Duration::from_secs(3600));
        assert_eq!(camel.freshness_window, Duration::from_secs(45));
        assert_eq!(camel.batch_size, 128);
        assert_eq!(camel.max_in_flight, 512);
        assert_eq!(camel.max_body_size, 1 << 20);
    }

    #[test]
    fn queue_policy_aliases_all_work() {
        for key in [
            "queuePolicy",
            "queue_policy",
            "queueDiscardPolicy",
            "queue_discard_policy",
        ] {
            let c = core_with(&format!("{key}: 1\n")).unwrap();
            assert_eq!(c.queue_policy, QueuePolicy::DiscardOldest, "{key}");
        }
    }

    #[test]
    fn defaults_are_as_documented() {
        let c = Config::default();
        assert!(!c.core);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 8884);
        assert_eq!(c.queue_length, 1024);
        assert_eq!(c.queue_policy, QueuePolicy::DiscardNewest);
        assert!(c.clusters.is_empty());
        assert_eq!(
            (c.node_name.clone(), c.advertise.clone(), c.secret.clone()),
            (None, None, None)
        );
        assert!(!c.open_cluster);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.suspect_timeout, Duration::from_secs(3));
        assert_eq!(c.dead_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.retry_backoff, Duration::from_millis(200));
        assert_eq!(c.retry_backoff_max, Duration::from_secs(5));
        assert_eq!(c.message_expiry, Duration::from_secs(60));
        assert_eq!(c.freshness_window, Duration::from_secs(30));
        assert_eq!(c.batch_size, 256);
        assert_eq!(c.max_in_flight, 1024);
        assert_eq!(c.max_body_size, 4 * 1024 * 1024);
        assert_eq!(c.validate(), Err(ConfigError::WorkerWithoutClusters));
    }

    #[test]
    fn same_setting_under_two_spellings_is_refused_naming_both() {
        let e = err(core_with("queueLength: 10\nqueue_length: 10\n"));
        assert_eq!(
            e,
            ConfigError::DuplicateKey {
                first: "queueLength".into(),
                second: "queue_length".into()
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("queueLength") && msg.contains("queue_length"),
            "{msg}"
        );

        let e = err(core_with("queue_discard_policy: 1\nqueuePolicy: 0\n"));
        assert_eq!(
            e,
            ConfigError::DuplicateKey {
                first: "queue_discard_policy".into(),
                second: "queuePolicy".into()
            }
        );
        // The literal same key twice is already a YAML error.
        assert!(matches!(
            err(core_with("port: 1\nport: 2\n")),
            ConfigError::Yaml { .. }
        ));
    }

    #[test]
    fn queue_length_out_of_range_is_refused() {
        for (text, value) in [("0", "0"), ("10000001", "10000001"), ("-3", "-3")] {
            let e = err(core_with(&format!("queueLength: {text}\n")));
            match &e {
                ConfigError::InvalidValue {
                    key,
                    value: v,
                    allowed,
                } => {
                    assert_eq!(key, "queueLength");
                    assert_eq!(v, value);
                    assert!(allowed.contains("1 to 10000000"), "{allowed}");
                }
                other => panic!("{other:?}"),
            }
        }
        let e = err(core_with("queue_length: 0\n"));
        assert!(e.to_string().contains("`queue_length`"), "{e}");
    }

    #[test]
    fn queue_policy_other_than_0_or_1_is_refused() {
        let e = err(core_with("queuePolicy: 7\n"));
        assert_eq!(
            e,
            ConfigError::InvalidValue {
                key: "queuePolicy".into(),
                value: "7".into(),
                allowed: "0 (discard newest) or 1 (discard oldest)".into()
            }
        );
        assert!(matches!(
            err(core_with("queuePolicy: -1\n")),
            ConfigError::InvalidValue { .. }
        ));
        assert!(matches!(
            err(core_with("queuePolicy: 1.0\n")),
            ConfigError::InvalidValue { .. }
        ));
        assert!(matches!(
            err(core_with("queuePolicy: \"1\"\n")),
            ConfigError::WrongType { .. }
        ));
        assert!(matches!(
            err(core_with("queuePolicy: discard_oldest\n")),
            ConfigError::WrongType { .. }
        ));
    }

    #[test]
    fn cluster_urls_other_than_http_host_port_are_refused() {
        let cases = [
            ("core1:8884", ClusterUrlError::MissingScheme),
            (
                "tcp://core1:8884",
                ClusterUrlError::UnsupportedScheme {
                    scheme: "tcp".into(),
                },
            ),
            ("http://core1", ClusterUrlError::MissingPort),
            (
                "http://core1:0",
                ClusterUrlError::InvalidPort { port: "0".into() },
            ),
            (
                "http://core1:8884/api",
                ClusterUrlError::Path {
                    path: "/api".into(),
                },
            ),
            ("http://core1:8884?a=b", ClusterUrlError::Query),
            ("http://u:p@core1:8884", ClusterUrlError::UserInfo),
            (
                "http://::1:8884",
                ClusterUrlError::InvalidHost { host: "::1".into() },
            ),
            ("http://:8884", ClusterUrlError::MissingHost),
        ];
        for (text, reason) in cases {
            let e = err(core_with(&format!(
                "clusters:\n- http://ok:1\n- \"{text}\"\n"
            )));
            assert_eq!(
                e,
                ConfigError::InvalidClusterUrl {
                    key: "clusters[1]".into(),
                    value: format!("{text:?}"),
                    reason
                },
                "{text}"
            );
            assert!(e.to_string().contains(text), "{e}");
        }
        let e = err(core_with("advertise: core1:8884\n"));
        assert!(matches!(e, ConfigError::InvalidClusterUrl { ref key, .. } if key == "advertise"));
        let e = err(core_with("clusters: [http://a:1, http://A:1/]\n"));
        assert!(
            matches!(e, ConfigError::InvalidValue { ref key, .. } if key == "clusters[1]"),
            "{e:?}"
        );
    }

    #[test]
    fn trailing_slash_on_a_cluster_url_is_tolerated() {
        let c = core_with("clusters: [\"http://core1:8884/\"]\n").unwrap();
        assert_eq!(c.clusters, vec![url("http://core1:8884")]);
    }

    #[test]
    fn worker_without_clusters_is_refused() {
        for yaml in [
            "secret: s3cret-value\n",
            "core: false\nsecret: s3cret-value\n",
            "clusters: []\nsecret: s3cret-value\n",
            "clusters:\nsecret: s3cret-value\n",
            "",
            "# only a comment\n",
        ] {
            assert_eq!(
                err(load(yaml)),
                ConfigError::WorkerWithoutClusters,
                "{yaml:?}"
            );
        }
        let c = load("clusters: [http://core1:8884]\nsecret: s3cret-value\n").unwrap();
        assert_eq!(c.role(), Role::Worker);
        assert!(ConfigError::WorkerWithoutClusters
            .to_string()
            .contains("clusters"));
    }

    #[test]
    fn unknown_keys_are_refused_with_the_nearest_key_in_the_users_style() {
        let cases = [
            ("queuePolicyy", Some("queuePolicy")),
            ("queue_lenght", Some("queue_length")),
            ("QueueLength", Some("queueLength")),
            ("heartbeat_intervall", Some("heartbeat_interval")),
            ("cluster", Some("clusters")),
            ("tls", None),
            ("completelyUnrelatedSetting", None),
        ];
        for (key, suggestion) in cases {
            let e = err(core_with(&format!("{key}: 1\n")));
            assert_eq!(
                e,
                ConfigError::UnknownKey {
                    key: key.into(),
                    suggestion: suggestion.map(Into::into)
                }
            );
            let msg = e.to_string();
            assert!(msg.contains(key), "{msg}");
            if let Some(s) = suggestion {
                assert!(msg.contains(&format!("did you mean `{s}`?")), "{msg}");
            }
        }
    }

    #[test]
    fn a_node_needs_a_secret_or_an_explicit_open_cluster_but_not_both() {
        assert_eq!(err(load("core: true\n")), ConfigError::MissingSecret);
        assert_eq!(
            err(load("clusters: [http://c:1]\n")),
            ConfigError::MissingSecret
        );
        assert_eq!(
            err(load("core: true\nsecret:\n")),
            ConfigError::MissingSecret
        );
        assert_eq!(
            err(load("core: true\nsecret: abcdefgh\nopenCluster: true\n")),
            ConfigError::SecretAndOpenCluster
        );
        assert!(load("core: true\nopen_cluster: true\n").is_ok());
        let e = err(load("core: true\nsecret: \"\"\n"));
        assert!(matches!(e, ConfigError::InvalidValue { ref key, .. } if key == "secret"));
    }

    #[test]
    fn a_mistyped_secret_is_never_echoed() {
        let e = err(load("core: true\nsecret: 918273645\n"));
        assert!(matches!(e, ConfigError::WrongType { .. }));
        assert!(!e.to_string().contains("918273645"), "{e}");
        assert!(!format!("{e:?}").contains("918273645"), "{e:?}");
    }

    #[test]
    fn durations_take_milliseconds_or_a_unit() {
        let c = core_with("requestTimeout: 750\nmessageExpiry: 2m\nfreshnessWindow: \"15s\"\n")
            .unwrap();
        assert_eq!(c.request_timeout, Duration::from_millis(750));
        assert_eq!(c.message_expiry, Duration::from_secs(120));
        assert_eq!(c.freshness_window, Duration::from_secs(15));
    }

    #[test]
    fn bad_durations_are_refused_with_a_typed_reason() {
        let cases = [
            ("\"2 s\"", DurationError::UnknownUnit { unit: " s".into() }),
            ("2sec", DurationError::UnknownUnit { unit: "sec".into() }),
            ("1.5s", DurationError::NotWhole),
            ("1.5", DurationError::NotWhole),
            ("-5", DurationError::Negative),
            ("\"-5s\"", DurationError::Negative),
            ("\"500\"", DurationError::MissingUnit),
            ("\"\"", DurationError::Empty),
            ("s", DurationError::MissingNumber),
            ("99999999999999999999h", DurationError::Overflow),
        ];
        for (text, reason) in cases {
            let e = err(core_with(&format!("requestTimeout: {text}\n")));
            match &e {
                ConfigError::InvalidDuration { key, reason: r, .. } => {
                    assert_eq!(key, "requestTimeout", "{text}");
                    assert_eq!(r, &reason, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(e.to_string().contains("requestTimeout"), "{e}");
        }
        assert!(matches!(
            err(core_with("deadTimeout: true\n")),
            ConfigError::WrongType { .. }
        ));
        assert!(matches!(
            err(core_with("deadTimeout: [1]\n")),
            ConfigError::WrongType { .. }
        ));
        for (text, key) in [("0", "requestTimeout"), ("25h", "requestTimeout")] {
            let e = err(core_with(&format!("{key}: {text}\n")));
            assert!(matches!(e, ConfigError::InvalidValue { .. }), "{e:?}");
            assert!(e.to_string().contains(text), "{e}");
        }
    }

    #[test]
    fn cross_field_timing_rules_are_enforced() {
        let inconsistent = [
            "heartbeatInterval: 3s\n",
            "suspectTimeout: 1s\n",
            "deadTimeout: 3s\n",
            "heartbeatInterval: 5s\nsuspectTimeout: 4s\n",
            "retryBackoff: 6s\n",
            "retryBackoffMax: 100ms\n",
        ];
        for extra in inconsistent {
            let e = err(core_with(extra));
            assert!(
                matches!(e, ConfigError::Inconsistent { .. }),
                "{extra}: {e:?}"
            );
        }
        let e = err(core_with("suspect_timeout: 1s\n"));
        assert_eq!(
            e.to_string(),
            "inconsistent settings: `suspect_timeout` (1s) must be longer than `heartbeatInterval` (1s)"
        );
        let e = err(core_with("heartbeatInterval: 5ms\n"));
        assert_eq!(
            e,
            ConfigError::InvalidValue {
                key: "heartbeatInterval".into(),
                value: "5ms".into(),
                allowed: "10ms to 24h".into()
            }
        );
        assert!(core_with("heartbeatInterval: 10ms\nretryBackoff: 5s\n").is_ok());
    }

    #[test]
    fn wrong_types_are_typed_errors() {
        let cases = [
            ("port: abc\n", "port", "\"abc\""),
            ("port: \"8884\"\n", "port", "\"8884\""),
            ("port: 8884.5\n", "port", "8884.5"),
            ("clusters: 5\n", "clusters", "5"),
            (
                "clusters: http://core1:8884\n",
                "clusters",
                "\"http://core1:8884\"",
            ),
            ("clusters: [5]\n", "clusters[0]", "5"),
            ("core: yes-please\n", "core", "\"yes-please\""),
            ("core: yes\n", "core", "\"yes\""),
            ("core: 1\n", "core", "1"),
            ("host: 5\n", "host", "5"),
            ("host: [a, b]\n", "host", "a list of 2 item(s)"),
            ("nodeName: 42\n", "nodeName", "42"),
            ("batchSize: {a: 1}\n", "batchSize", "a mapping of 1 key(s)"),
            ("maxInFlight: !big 5\n", "maxInFlight", "!big 5"),
        ];
        for (yaml, want_key, want_value) in cases {
            let e = err(load(&format!("openCluster: true\n{yaml}")));
            match &e {
                ConfigError::WrongType { key, value, .. } => {
                    assert_eq!(
                        (key.as_str(), value.as_str()),
                        (want_key, want_value),
                        "{yaml}"
                    );
                }
                other => panic!("{yaml}: {other:?}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(want_key) && msg.contains(want_value), "{msg}");
        }
        let c = load("core: \"true\"\nopenCluster: \"true\"\n").unwrap();
        assert!(c.core && c.open_cluster);
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let cases = [
            ("port: 0\n", "port"),
            ("port: 65536\n", "port"),
            ("batchSize: 0\n", "batchSize"),
            ("batch_size: 65537\n", "batch_size"),
            ("maxInFlight: 0\n", "maxInFlight"),
            ("maxBodySize: 1023\n", "maxBodySize"),
            ("maxBodySize: 268435457\n", "maxBodySize"),
            ("queueLength: 18446744073709551615\n", "queueLength"),
            ("nodeName: has spaces\n", "nodeName"),
            ("host: \"not a host\"\n", "host"),
            ("host: \"\"\n", "host"),
        ];
        for (yaml, want_key) in cases {
            let e = err(core_with(yaml));
            assert!(
                matches!(&e, ConfigError::InvalidValue { key, .. } if key == want_key),
                "{yaml}: {e:?}"
            );
        }
        assert!(core_with("batchSize: 65536\nmaxBodySize: 1024\nport: 65535\n").is_ok());
    }

    #[test]
    fn documents_that_are_not_mappings_are_refused() {
        for yaml in ["- a\n- b\n", "42\n", "just text\n"] {
            assert!(
                matches!(err(load(yaml)), ConfigError::NotAMapping { .. }),
                "{yaml}"
            );
        }
        let e = err(load("core: true\n5: x\n"));
        assert_eq!(e, ConfigError::NonStringKey { key: "5".into() });
        assert!(matches!(
            err(load("? [a]\n: 1\n")),
            ConfigError::NonStringKey { .. }
        ));
    }

    #[test]
    fn yaml_syntax_errors_report_their_position() {
        let e = err(load("core: true\nclusters: [http://a:1\n"));
        match &e {
            ConfigError::Yaml {
                line,
                column,
                message,
            } => {
                assert!(line.is_some() && column.is_some(), "{e:?}");
                assert!(message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            err(load("a: 1\n---\nb: 2\n")),
            ConfigError::Yaml { .. }
        ));
    }

    #[test]
    fn non_utf8_bytes_are_refused() {
        let e = Config::from_yaml_slice(b"core: true\nhost: \xff\xfe\n").unwrap_err();
        assert_eq!(e, ConfigError::NotUtf8 { valid_up_to: 17 });
        assert!(e.to_string().contains("UTF-8"));
        let ok = Config::from_yaml_slice(format!("{SEED}secret: s3cret\n").as_bytes());
        assert!(ok.is_ok());
    }

    #[test]
    fn error_messages_name_the_key_and_the_value() {
        let cases = [
            ("queueLength: 0\n", "queueLength", "0"),
            ("queuePolicy: 7\n", "queuePolicy", "7"),
            ("port: abc\n", "port", "abc"),
            ("clusters: [\"ftp://x:1\"]\n", "clusters[0]", "ftp://x:1"),
            ("deadTimeout: 5parsecs\n", "deadTimeout", "5parsecs"),
            ("batch_size: 0\n", "batch_size", "0"),
            ("max_body_size: 12\n", "max_body_size", "12"),
            ("nodeName: \"bad name\"\n", "nodeName", "bad name"),
            ("queue_lenght: 5\n", "queue_lenght", "queue_length"),
        ];
        for (yaml, key, value) in cases {
            let msg = err(core_with(yaml)).to_string();
            assert!(msg.contains(key), "{yaml}: {msg}");
            assert!(msg.contains(value), "{yaml}: {msg}");
        }
    }

    #[test]
    fn configs_built_in_code_get_the_same_checks() {
        let core = Config::core("0.0.0.0", 8884).with_secret(Secret::new("s3cret"));
        assert_eq!(core.validate(), Ok(()));
        assert_eq!(
            Config::core("0.0.0.0", 8884).validate(),
            Err(ConfigError::MissingSecret)
        );
        let worker = Config::worker([url("http://core1:8884")])
            .with_open_cluster(true)
            .with_name(NodeId::new("w1").unwrap());
        assert_eq!(worker.validate(), Ok(()));
        assert_eq!(worker.node_name.as_ref().map(NodeId::as_str), Some("w1"));
        assert_eq!(
            worker.clone().with_secret(Secret::new("x")).validate(),
            Err(ConfigError::SecretAndOpenCluster)
        );

        let mut bad = core.clone();
        bad.port = 0;
        assert!(
            matches!(bad.validate(), Err(ConfigError::InvalidValue { key, .. }) if key == "port")
        );
        let mut bad = core.clone();
        bad.queue_length = 0;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidValue { key, .. }) if key == "queueLength"
        ));
        let mut bad = core.clone();
        bad.secret = Some(Secret::new(""));
        assert!(
            matches!(bad.validate(), Err(ConfigError::InvalidValue { key, .. }) if key == "secret")
        );
        let mut bad = core.clone();
        bad.dead_timeout = bad.suspect_timeout;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Inconsistent { .. })
        ));
        let mut bad = core.clone();
        bad.clusters = vec![url("http://a:1"), url("http://a:1")];
        assert!(bad.validate().is_err());
        let mut bad = core;
        bad.request_timeout = Duration::from_micros(1500);
        assert!(
            bad.validate().is_ok(),
            "sub-millisecond precision is allowed in code"
        );
        bad.request_timeout = Duration::from_micros(500);
        let e = bad.validate().unwrap_err();
        assert!(e.to_string().contains("500µs"), "{e}");
    }

    #[test]
    fn serialized_config_hides_the_secret_and_uses_camel_case() {
        let c = load(ORIGINAL).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["secret"], "***");
        assert_eq!(json["queueLength"], 1024);
        assert_eq!(json["queuePolicy"], 1);
        assert_eq!(json["batchSize"], 64);
        assert_eq!(json["heartbeatInterval"], 1000);
        assert_eq!(json["clusters"][0], "http://core1:8884");
        assert!(json.get("nodeName").is_none());
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains('_'), "{text}");
    }

    #[test]
    fn serialized_config_loads_back_unchanged() {
        let c = load(ALL_KEYS).unwrap();
        let open = Config {
            secret: None,
            open_cluster: true,
            ..c
        };
        let yaml = serde_yaml::to_string(&open).unwrap();
        assert_eq!(load(&yaml).unwrap(), open, "{yaml}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "core",
            "host",
            "port",
            "queueLength",
            "queue_length",
            "queuePolicy",
            "queue_policy",
            "queueDiscardPolicy",
            "queue_discard_policy",
            "clusters",
            "nodeName",
            "node_name",
            "advertise",
            "secret",
            "openCluster",
            "open_cluster",
            "heartbeatInterval",
            "heartbeat_interval",
            "suspectTimeout",
            "suspect_timeout",
            "deadTimeout",
            "dead_timeout",
            "requestTimeout",
            "request_timeout",
            "retryBackoff",
            "retry_backoff",
            "retryBackoffMax",
            "retry_backoff_max",
            "messageExpiry",
            "message_expiry",
            "freshnessWindow",
            "freshness_window",
            "batchSize",
            "batch_size",
            "maxInFlight",
            "max_in_flight",
            "maxBodySize",
            "max_body_size",
            "queuePolicyy",
            "",
        ];

        fn scalar() -> impl Strategy<Value = serde_yaml::Value> {
            use serde_yaml::Value;
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| Value::Number(n.into())),
                any::<u64>().prop_map(|n| Value::Number(n.into())),
                (0u64..100_000).prop_map(|n| Value::Number(n.into())),
                any::<f64>().prop_map(|n| Value::Number(n.into())),
                any::<String>().prop_map(Value::String),
                "[0-9]{1,6}(ms|s|m|h|)".prop_map(Value::String),
                "(http|https|ftp)://[a-z0-9:.\\[\\]]{0,12}(:[0-9]{0,6})?/?".prop_map(Value::String),
                prop::collection::vec("https?://[a-z]{1,5}:[0-9]{1,5}", 0..3)
                    .prop_map(|v| { Value::Sequence(v.into_iter().map(Value::String).collect()) }),
            ]
        }

        fn check(result: Result<Config, ConfigError>) {
            match result {
                Ok(c) => {
                    assert_eq!(c.validate(), Ok(()));
                    let _ = serde_json::to_string(&c).unwrap();
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }

        proptest! {
            #[test]
            fn config_loader_never_panics_on_arbitrary_text(text in any::<String>()) {
                check(Config::from_yaml_str(&text));
            }

            #[test]
            fn config_loader_never_panics_on_arbitrary_bytes(bytes in any::<Vec<u8>>()) {
                check(Config::from_yaml_slice(&bytes));
            }

            #[test]
            fn config_loader_never_panics_on_known_keys_with_any_scalar(
                entries in prop::collection::vec(
                    (prop::sample::select(KEYS), scalar()), 0..12)
            ) {
                // Start from a valid core so that accepted configs are reached too.
                let mut map = serde_yaml::Mapping::new();
                map.insert("core".into(), true.into());
                map.insert("openCluster".into(), true.into());
                for (k, v) in entries {
                    map.insert(serde_yaml::Value::String(k.to_string()), v);
                }
                let yaml = serde_yaml::to_string(&map).unwrap();
                check(Config::from_yaml_str(&yaml));
            }

            #[test]
            fn config_loader_never_panics_on_yaml_ish_lines(
                lines in prop::collection::vec(
                    (prop::sample::select(KEYS), "[ -~]{0,20}"), 0..12)
            ) {
                let yaml: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                check(Config::from_yaml_str(&yaml));
            }

            #[test]
            fn config_cluster_urls_round_trip_through_display(text in "[ -~]{0,40}") {
                if let Ok(u) = text.parse::<ClusterUrl>() {
                    prop_assert_ne!(u.port(), 0);
                    prop_assert_eq!(u.to_string().parse::<ClusterUrl>(), Ok(u.clone()));
                }
            }
        }
    }
}
