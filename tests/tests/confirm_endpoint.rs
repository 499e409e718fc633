//! `POST /confirm` refuses what it must and changes nothing when it does:
//! only cores pass confirmations to each other; a worker, an outsider or a
//! malformed body is refused with a typed error. A core and its worker
//! wired by hand (the fuzz harness's `Pair`).

use bytes::Bytes;
use http::{Method, StatusCode};
use mqtt_cluster_core::wire::encode_json;
use mqtt_cluster_core::wire::messages::{ConfirmRequest, Confirmation};
use mqtt_cluster_core::{Incarnation, NodeId};
use mqtt_cluster_fuzz_harness::fixture::{checked_request, plain_request, Pair, Signer};

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn confirms(origin: &str) -> Bytes {
    encode_json(&ConfirmRequest {
        confirms: vec![Confirmation {
            origin: id(origin),
            incarnation: Incarnation(1),
            to: id("core1"),
            from: 1,
            through: 10,
        }],
    })
}

fn error_kind(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_worker_may_not_pass_confirmations() {
    let mut pair = Pair::new();
    let now = pair.now();
    let request = pair
        .fake
        .request(Method::POST, "/confirm", confirms("w1"), now.wall);
    let response = checked_request(&mut pair.core, now, request);
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_kind(response.body()), "cores_only");
}

#[test]
fn an_outsider_or_an_unsigned_request_is_refused() {
    let mut pair = Pair::new();
    let now = pair.now();
    let mut outsider = Signer::new("core9", 1);
    let request = outsider.request(Method::POST, "/confirm", confirms("w1"), now.wall);
    let response = checked_request(&mut pair.core, now, request);
    assert!(response.status().is_client_error(), "{}", response.status());
    let request = plain_request(Method::POST, "/confirm", confirms("w1"));
    let response = checked_request(&mut pair.core, now, request);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn malformed_confirmations_are_refused_whole() {
    let mut pair = Pair::new();
    let now = pair.now();
    for body in [
        &b"{\"confirms\": [{\"origin\": \"w1\"}]}"[..],
        b"{\"confirms\": [{\"origin\": \"w1\", \"incarnation\": 1, \"to\": \"core1\", \"from\": 1, \"through\": -1}]}",
        b"{\"confirms\": [], \"extra\": 1}",
        b"not json",
        b"{\"confirms\": [{\"origin\": \"not a name!\", \"incarnation\": 1, \"to\": \"core1\", \"from\": 1, \"through\": 2}]}",
    ] {
        let request = pair
            .fake
            .request(Method::POST, "/confirm", Bytes::from(body.to_vec()), now.wall);
        let response = checked_request(&mut pair.core, now, request);
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
