use super::*;
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const WINDOW: Duration = Duration::from_secs(30);

/// Every header a signed request carries, in signing order.
const PROTOCOL_HEADERS: [HeaderName; 6] = [
    X_CLUSTER_VERSION,
    X_CLUSTER_NODE,
    X_CLUSTER_INCARNATION,
    X_CLUSTER_COUNTER,
    X_CLUSTER_TIMESTAMP,
    X_CLUSTER_SIGNATURE,
];

fn node(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn wall(ms: u64) -> WallTime {
    WallTime::from_unix_millis(ms)
}

fn keyed(secret: &str) -> Authenticator {
    Authenticator::new(Some(Secret::new(secret)), WINDOW, 16)
}

fn request(method: &str, uri: &str, body: &'static [u8]) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::from_static(body))
        .unwrap()
}

fn signed(auth: &Authenticator, counter: u64) -> Request<Bytes> {
    let mut r = request("POST", "/forward?batch=1", b"{\"messages\":[]}");
    auth.sign(&mut r, &node("w1"), Incarnation(3), counter, wall(T0));
    r
}

fn set(r: &mut Request<Bytes>, name: HeaderName, value: &str) {
    r.headers_mut()
        .insert(name, HeaderValue::from_str(value).unwrap());
}

#[test]
fn signed_request_verifies_and_names_its_sender() {
    let mut auth = keyed("k");
    let r = signed(&auth, 1);
    assert_eq!(
        auth.verify(&r, wall(T0)),
        Ok(Sender {
            node: node("w1"),
            incarnation: Incarnation(3),
            counter: 1
        })
    );
    assert_eq!(auth.tracked_senders(), 1);
}

#[test]
fn sign_writes_every_protocol_header() {
    let auth = keyed("k");
    let r = signed(&auth, 9);
    let h = r.headers();
    assert_eq!(h[&X_CLUSTER_VERSION], "1");
    assert_eq!(h[&X_CLUSTER_NODE], "w1");
    assert_eq!(h[&X_CLUSTER_INCARNATION], "3");
    assert_eq!(h[&X_CLUSTER_COUNTER], "9");
    assert_eq!(h[&X_CLUSTER_TIMESTAMP], T0.to_string().as_str());
    let sig = h[&X_CLUSTER_SIGNATURE].to_str().unwrap();
    assert_eq!(sig.len(), 64);
    assert!(sig
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn signature_is_hmac_sha256_of_the_canonical_string() {
    let auth = keyed("k");
    let r = signed(&auth, 1);
    let body_hash = hex(&Sha256::digest(b"{\"messages\":[]}"));
    let text = format!("1\nPOST\n/forward?batch=1\nw1\n3\n1\n{T0}\n{body_hash}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap();
    mac.update(text.as_bytes());
    let expected = hex(&mac.finalize().into_bytes());
    assert_eq!(r.headers()[&X_CLUSTER_SIGNATURE], expected.as_str());
}

#[test]
fn absolute_uri_on_the_sender_matches_origin_form_on_the_receiver() {
    let auth = keyed("k");
    let mut sent = request("POST", "http://core-1:8080/routes?x=y", b"[]");
    auth.sign(&mut sent, &node("w1"), Incarnation(1), 1, wall(T0));
    let mut received = request("POST", "/routes?x=y", b"[]");
    *received.headers_mut() = sent.headers().clone();
    let mut receiver = keyed("k");
    assert!(receiver.verify(&received, wall(T0)).is_ok());
}

#[test]
fn wrong_secret_is_bad_signature_403_and_records_nothing() {
    let r = signed(&keyed("one"), 1);
    let mut other = keyed("two");
    let err = other.verify(&r, wall(T0)).unwrap_err();
    assert_eq!(err, AuthError::BadSignature);
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert_eq!(err.kind(), "bad_signature");
    assert_eq!(other.tracked_senders(), 0);
}

#[test]
fn altering_anything_covered_breaks_the_signature() {
    let auth = keyed("k");
    let original = signed(&auth, 5);
    type Alteration = Box<dyn Fn(&mut Request<Bytes>)>;
    let alterations: Vec<(&str, Alteration)> = vec![
        (
            "body",
            Box::new(|r| *r.body_mut() = Bytes::from_static(b"{}")),
        ),
        ("method", Box::new(|r| *r.method_mut() = http::Method::PUT)),
        (
            "path",
            Box::new(|r| *r.uri_mut() = "/routes?batch=1".parse().unwrap()),
        ),
        (
            "query",
            Box::new(|r| *r.uri_mut() = "/forward?batch=2".parse().unwrap()),
        ),
        ("node", Box::new(|r| set(r, X_CLUSTER_NODE, "w2"))),
        (
            "incarnation",
            Box::new(|r| set(r, X_CLUSTER_INCARNATION, "4")),
        ),
        ("counter", Box::new(|r| set(r, X_CLUSTER_COUNTER, "6"))),
        (
            "timestamp",
            Box::new(|r| set(r, X_CLUSTER_TIMESTAMP, &(T0 + 1).to_string())),
        ),
    ];
    for (what, alter) in alterations {
        let mut r = original.clone();
        alter(&mut r);
        let mut fresh = keyed("k");
        assert_eq!(
            fresh.verify(&r, wall(T0)),
            Err(AuthError::BadSignature),
            "{what}"
        );
    }
}

#[test]
fn uppercase_hex_signature_is_accepted() {
    let auth = keyed("k");
    let mut r = signed(&auth, 1);
    let upper = r.headers()[&X_CLUSTER_SIGNATURE]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    set(&mut r, X_CLUSTER_SIGNATURE, &upper);
    assert!(keyed("k").verify(&r, wall(T0)).is_ok());
}

#[test]
fn malformed_signature_is_a_typed_error() {
    let auth = keyed("k");
    for bad in [
        "",
        "abc",
        &"0".repeat(63),
        &"0".repeat(65),
        &"g".repeat(64),
        &"é".repeat(32),
    ] {
        let mut r = signed(&auth, 1);
        r.headers_mut().insert(
            X_CLUSTER_SIGNATURE,
            HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
        assert_eq!(err.kind(), "malformed_header", "{bad:?}");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn each_missing_header_is_named() {
    let auth = keyed("k");
    for name in PROTOCOL_HEADERS {
        let mut r = signed(&auth, 1);
        r.headers_mut().remove(&name);
        let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
        assert_eq!(err, AuthError::MissingHeader { name: name.clone() });
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert!(err.to_string().contains(name.as_str()));
    }
}

#[test]
fn numbers_must_be_plain_decimals() {
    let auth = keyed("k");
    for name in [
        X_CLUSTER_INCARNATION,
        X_CLUSTER_COUNTER,
        X_CLUSTER_TIMESTAMP,
    ] {
        for bad in [
            "",
            "+5",
            " 5",
            "5 ",
            "-1",
            "0x10",
            "1e3",
            "18446744073709551616",
        ] {
            let mut r = signed(&auth, 1);
            r.headers_mut()
                .insert(&name, HeaderValue::from_bytes(bad.as_bytes()).unwrap());
            let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
            assert!(
                matches!(&err, AuthError::MalformedHeader { name: n, .. } if *n == name),
                "{name}: {bad:?} gave {err:?}"
            );
        }
    }
}

#[test]
fn header_bytes_that_are_not_text_are_named_as_such() {
    let auth = keyed("k");
    // The node header is checked as a name, not as bytes.
    for name in PROTOCOL_HEADERS
        .into_iter()
        .filter(|n| *n != X_CLUSTER_NODE)
    {
        let mut r = signed(&auth, 1);
        r.headers_mut()
            .insert(&name, HeaderValue::from_bytes("1é".as_bytes()).unwrap());
        let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
        assert_eq!(
            err,
            AuthError::MalformedHeader {
                name: name.clone(),
                reason: "not visible ASCII"
            }
        );
    }
}

#[test]
fn the_largest_decimal_is_read_and_one_more_is_refused() {
    assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_decimal(b"18446744073709551616"), None);
    assert_eq!(parse_decimal(b"0042"), Some(42));
    assert_eq!(parse_decimal(b""), None);
}

#[test]
fn a_kept_identity_signs_each_request_with_its_own_numbers() {
    // Counter, timestamp and signature are cut from one buffer: each must
    // come out whole and in its own header.
    let me = Identity::new(node("w1"), Incarnation(3));
    assert_eq!((me.node(), me.incarnation()), (&node("w1"), Incarnation(3)));
    for secret in [None, Some(Secret::new("k"))] {
        let open = secret.is_none();
        let mut auth = Authenticator::new(secret, WINDOW, 16);
        for (counter, ts) in [(1, T0), (10, T0 + 1), (u64::MAX, T0 + 999)] {
            let mut r = request("POST", "/forward?batch=1", b"{}");
            auth.sign_as(&mut r, &me, counter, wall(ts));
            let h = r.headers();
            assert_eq!(h[&X_CLUSTER_NODE], "w1");
            assert_eq!(h[&X_CLUSTER_INCARNATION], "3");
            assert_eq!(h[&X_CLUSTER_COUNTER], counter.to_string().as_str());
            assert_eq!(h[&X_CLUSTER_TIMESTAMP], ts.to_string().as_str());
            assert_eq!(h.get(&X_CLUSTER_SIGNATURE).is_none(), open);
            let sender = auth.verify(&r, wall(ts)).unwrap();
            assert_eq!(sender.counter, counter);
        }
    }
}

#[test]
fn a_known_sender_is_named_by_the_id_already_held() {
    let mut auth = keyed("k");
    let first = auth.verify(&signed(&auth, 1), wall(T0)).unwrap();
    let second = auth.verify(&signed(&auth, 2), wall(T0)).unwrap();
    assert_eq!(first.node, second.node);
    assert!(std::ptr::eq(first.node.as_str(), second.node.as_str()));
}

#[test]
fn counter_zero_is_refused() {
    let auth = keyed("k");
    let r = signed(&auth, 0);
    let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
    assert_eq!(err.kind(), "malformed_header");
}

#[test]
fn invalid_node_name_is_malformed() {
    let mut auth = Authenticator::new(None, WINDOW, 4);
    let mut r = signed(&auth, 1);
    set(&mut r, X_CLUSTER_NODE, "not/a/name");
    assert_eq!(
        auth.verify(&r, wall(T0)).unwrap_err().kind(),
        "malformed_header"
    );
}

#[test]
fn repeated_header_is_malformed() {
    let auth = keyed("k");
    let mut r = signed(&auth, 1);
    r.headers_mut()
        .append(X_CLUSTER_COUNTER, HeaderValue::from_static("2"));
    let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
    assert_eq!(
        err,
        AuthError::MalformedHeader {
            name: X_CLUSTER_COUNTER,
            reason: "repeated"
        }
    );
}

#[test]
fn other_version_is_refused_with_both_versions_in_the_message() {
    let auth = keyed("k");
    let mut r = signed(&auth, 1);
    set(&mut r, X_CLUSTER_VERSION, "2");
    r.headers_mut().remove(X_CLUSTER_NODE);
    // Version comes first, even before a missing identity header.
    let err = keyed("k").verify(&r, wall(T0)).unwrap_err();
    assert_eq!(
        err,
        AuthError::IncompatibleVersion {
            theirs: "2".into(),
            ours: 1
        }
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(err.kind(), "incompatible_version");
    let message = err.to_string();
    assert!(
        message.contains("\"2\"") && message.contains("version 1"),
        "{message}"
    );
}

#[test]
fn missing_version_is_missing_header() {
    let auth = keyed("k");
    let mut r = signed(&auth, 1);
    r.headers_mut().remove(X_CLUSTER_VERSION);
    assert_eq!(
        keyed("k").verify(&r, wall(T0)),
        Err(AuthError::MissingHeader {
            name: X_CLUSTER_VERSION
        })
    );
}

#[test]
fn timestamps_outside_the_window_are_stale_in_both_directions() {
    let auth = keyed("k");
    let r = signed(&auth, 1);
    let limit = WINDOW.as_millis() as u64;
    let mut v = keyed("k");
    assert_eq!(
        v.verify(&r, wall(T0 + limit + 1)),
        Err(AuthError::Stale {
            skew_ms: -(limit as i64) - 1
        })
    );
    assert_eq!(
        v.verify(&r, wall(T0 - limit - 5)),
        Err(AuthError::Stale {
            skew_ms: limit as i64 + 5
        })
    );
    let err = v.verify(&r, wall(0)).unwrap_err();
    assert_eq!(
        (err.kind(), err.status()),
        ("stale_timestamp", StatusCode::UNAUTHORIZED)
    );
    assert_eq!(v.tracked_senders(), 0, "a stale request records nothing");
    // Exactly at the edge of the window is still fresh.
    assert!(v.verify(&r, wall(T0 + limit)).is_ok());
}

#[test]
fn signature_is_checked_before_freshness() {
    let r = signed(&keyed("one"), 1);
    assert_eq!(
        keyed("two").verify(&r, wall(0)),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn replayed_request_is_refused_and_out_of_order_counters_accepted() {
    let auth = keyed("k");
    let mut v = keyed("k");
    for counter in [5, 2, 9, 1] {
        assert!(
            v.verify(&signed(&auth, counter), wall(T0)).is_ok(),
            "{counter}"
        );
    }
    let err = v.verify(&signed(&auth, 2), wall(T0)).unwrap_err();
    assert_eq!(err, AuthError::Replayed { counter: 2 });
    assert_eq!(
        (err.kind(), err.status()),
        ("replayed", StatusCode::UNAUTHORIZED)
    );
}

#[test]
fn counter_older_than_the_window_is_refused() {
    let auth = keyed("k");
    let mut v = keyed("k");
    assert!(v.verify(&signed(&auth, 5000), wall(T0)).is_ok());
    assert_eq!(
        v.verify(&signed(&auth, 5000 - replay::WINDOW), wall(T0)),
        Err(AuthError::Replayed {
            counter: 5000 - replay::WINDOW
        })
    );
    assert!(v
        .verify(&signed(&auth, 5001 - replay::WINDOW), wall(T0))
        .is_ok());
}

#[test]
fn older_incarnation_is_409_and_newer_starts_a_fresh_window() {
    let auth = keyed("k");
    let sign = |inc: u64, counter: u64| {
        let mut r = request("POST", "/heartbeat", b"{}");
        auth.sign(&mut r, &node("w1"), Incarnation(inc), counter, wall(T0));
        r
    };
    let mut v = keyed("k");
    assert!(v.verify(&sign(5, 100), wall(T0)).is_ok());
    let err = v.verify(&sign(4, 101), wall(T0)).unwrap_err();
    assert_eq!(
        err,
        AuthError::StaleIncarnation {
            theirs: Incarnation(4),
            known: Incarnation(5)
        }
    );
    assert_eq!(
        (err.kind(), err.status()),
        ("stale_incarnation", StatusCode::CONFLICT)
    );
    // A restart begins counting at 1 again.
    assert!(v.verify(&sign(6, 1), wall(T0)).is_ok());
    assert_eq!(
        v.verify(&sign(6, 1), wall(T0)),
        Err(AuthError::Replayed { counter: 1 })
    );
    assert!(v.verify(&sign(5, 101), wall(T0)).is_err());
}

#[test]
fn open_cluster_checks_everything_but_the_signature() {
    let open = Authenticator::new(None, WINDOW, 4);
    let mut v = Authenticator::new(None, WINDOW, 4);
    assert!(v.is_open());
    let r = signed(&open, 1);
    assert!(r.headers().get(X_CLUSTER_SIGNATURE).is_none());
    assert!(v.verify(&r, wall(T0)).is_ok());
    assert_eq!(
        v.verify(&r, wall(T0)),
        Err(AuthError::Replayed { counter: 1 })
    );
    assert_eq!(
        v.verify(&signed(&open, 2), wall(0)).unwrap_err().kind(),
        "stale_timestamp"
    );
    let mut anonymous = request("GET", "/stream", b"");
    set(&mut anonymous, X_CLUSTER_VERSION, "1");
    assert_eq!(
        v.verify(&anonymous, wall(T0)),
        Err(AuthError::MissingHeader {
            name: X_CLUSTER_NODE
        })
    );
}

#[test]
fn signing_for_an_open_cluster_removes_a_stale_signature() {
    let mut r = signed(&keyed("k"), 1);
    Authenticator::new(None, WINDOW, 4).sign(&mut r, &node("w1"), Incarnation(3), 2, wall(T0));
    assert!(r.headers().get(X_CLUSTER_SIGNATURE).is_none());
}

#[test]
fn replay_guard_is_bounded_by_max_senders() {
    let signer = keyed("k");
    let mut v = Authenticator::new(Some(Secret::new("k")), WINDOW, 3);
    for i in 0..10 {
        let mut r = request("POST", "/heartbeat", b"{}");
        signer.sign(&mut r, &node(&format!("n{i}")), Incarnation(1), 1, wall(T0));
        assert!(v.verify(&r, wall(T0)).is_ok());
        assert!(v.tracked_senders() <= 3);
    }
    assert_eq!(v.tracked_senders(), 3);
}

#[test]
fn debug_output_hides_the_secret() {
    let auth = keyed("hunter2");
    assert!(!format!("{auth:?}").contains("hunter2"));
}

fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Some),
        "[0-9]{0,22}".prop_map(|s| Some(s.into_bytes())),
        "[0-9a-fA-F]{62,66}".prop_map(|s| Some(s.into_bytes())),
    ]
}

proptest! {
    #[test]
    fn decimals_render_as_display_does_and_read_back(n in any::<u64>(), small in 0u64..1000) {
        for n in [n, small, u64::MAX, 0, 9, 10, 99, 100] {
            let mut room = Decimal::default();
            let digits = room.of(n);
            let shown = n.to_string();
            prop_assert_eq!(digits, shown.as_bytes());
            prop_assert_eq!(parse_decimal(digits), Some(n));
        }
    }

    #[test]
    fn hex_is_lowercase_and_reads_back(bytes in any::<[u8; 32]>()) {
        let mut digits = [0u8; 64];
        let text = hex_into(&bytes, &mut digits).to_vec();
        let owned = hex(&bytes);
        prop_assert_eq!(&text, owned.as_bytes());
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(&text, expected.as_bytes());
        let value = HeaderValue::from_bytes(&text).unwrap();
        prop_assert_eq!(parse_signature(&value).unwrap(), bytes);
        let upper = HeaderValue::from_bytes(text.to_ascii_uppercase().as_slice()).unwrap();
        prop_assert_eq!(parse_signature(&upper).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_headers_never_panic_and_refusals_record_nothing(
        values in proptest::collection::vec(header_value(), 6),
        now in any::<u64>(),
    ) {
        let names = PROTOCOL_HEADERS;
        for secret in [None, Some(Secret::new("k"))] {
            let mut v = Authenticator::new(secret, WINDOW, 4);
            let mut r = request("POST", "/sync", b"x");
            for (name, value) in names.iter().zip(&values) {
                if let Some(value) = value {
                    if let Ok(value) = HeaderValue::from_bytes(value) {
                        r.headers_mut().insert(name, value);
                    }
                }
            }
            match v.verify(&r, wall(now)) {
                Ok(_) => prop_assert_eq!(v.tracked_senders(), 1),
                Err(e) => {
                    prop_assert_eq!(v.tracked_senders(), 0);
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn any_signed_request_verifies_once(
        name in "[A-Za-z0-9._:-]{1,64}",
        incarnation in any::<u64>(),
        counter in 1u64..,
        ts in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        path in "/[a-z]{0,10}(\\?[a-z=&]{0,10})?",
    ) {
        let auth = keyed("secret");
        let mut r = Request::post(path.as_str()).body(Bytes::from(body)).unwrap();
        auth.sign(&mut r, &node(&name), Incarnation(incarnation), counter, wall(ts));
        let mut v = keyed("secret");
        let sender = v.verify(&r, wall(ts)).unwrap();
        prop_assert_eq!(sender, Sender { node: node(&name), incarnation: Incarnation(incarnation), counter });
        prop_assert_eq!(v.verify(&r, wall(ts)), Err(AuthError::Replayed { counter }));
    }
}
