//! `POST /register` bodies and headers into a core: raw bytes, signed raw
//! bytes, and signed JSON of the right shape with arbitrary values. Every
//! answer passes [`checked_request`]; an accepted registration answers
//! with a register response.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use mqtt_cluster_core::wire::messages::RegisterResponse;
use mqtt_cluster_core::{Incarnation, NodeId};
use serde_json::json;

use crate::fixture::{at, checked_request, core_config, drain_alone, node, plain_request, Signer};
use crate::shapes::{body, Loose, Mangle, Name, Num, RoleText};

/// Who the request claims to be and how it is signed.
#[derive(Arbitrary, Debug)]
pub(crate) struct Signature {
    /// The signer's node name.
    pub(crate) node: Name,
    /// The signer's incarnation.
    pub(crate) incarnation: Num,
    /// The request counter.
    pub(crate) counter: Counter,
    /// Wall-clock skew of the signer, in units of 4 milliseconds.
    pub(crate) skew: Option<i16>,
    /// Headers added after signing (they may replace the protocol's).
    pub(crate) extra: Vec<(HeaderChoice, Vec<u8>)>,
}

/// A request counter.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum Counter {
    /// The next one of the harness's counter.
    Next,
    /// The same as the previous request's.
    Again,
    /// Any number.
    Any(u64),
}

/// A header name.
#[derive(Arbitrary, Debug)]
pub(crate) enum HeaderChoice {
    /// One of the protocol's or HTTP's own.
    Known(u8),
    /// Anything.
    Any(String),
}

const HEADERS: [&str; 9] = [
    "x-cluster-version",
    "x-cluster-node",
    "x-cluster-incarnation",
    "x-cluster-counter",
    "x-cluster-timestamp",
    "x-cluster-signature",
    "content-length",
    "content-type",
    "host",
];

impl HeaderChoice {
    fn name(&self) -> Option<HeaderName> {
        match self {
            HeaderChoice::Known(i) => {
                HeaderName::from_bytes(HEADERS[usize::from(*i) % HEADERS.len()].as_bytes()).ok()
            }
            HeaderChoice::Any(s) => HeaderName::from_bytes(s.as_bytes()).ok(),
        }
    }
}

/// Appends arbitrary headers, skipping those `http` cannot hold.
pub(crate) fn add_headers(request: &mut http::Request<Bytes>, headers: &[(HeaderChoice, Vec<u8>)]) {
    for (name, value) in headers.iter().take(8) {
        if let (Some(name), Ok(value)) = (name.name(), HeaderValue::from_bytes(value)) {
            request.headers_mut().append(name, value);
        }
    }
}

/// A counter source shared by the requests of one input.
pub(crate) struct Counters {
    next: u64,
    last: u64,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            next: 1_000,
            last: 0,
        }
    }

    pub(crate) fn take(&mut self, choice: Counter) -> u64 {
        let counter = match choice {
            Counter::Next => {
                self.next += 1;
                self.next
            }
            Counter::Again => self.last,
            Counter::Any(n) => n,
        };
        self.last = counter;
        counter
    }
}

/// Signs `request` as described; a name that is no node id signs as `w3`.
pub(crate) fn sign(
    signer: &Signer,
    counters: &mut Counters,
    request: &mut http::Request<Bytes>,
    signature: &Signature,
    now_ms: u64,
) {
    let node = NodeId::new(&signature.node.text())
        .unwrap_or_else(|_| NodeId::new("w3").unwrap_or_else(|_| signer.id.clone()));
    let skew = signature.skew.map_or(0, |s| i64::from(s) * 4);
    let wall_ms = now_ms.saturating_add_signed(skew);
    signer.sign_as(
        request,
        &node,
        Incarnation(signature.incarnation.value()),
        counters.take(signature.counter),
        at(wall_ms).wall,
    );
    add_headers(request, &signature.extra);
}

#[derive(Arbitrary, Debug)]
struct RegisterBody {
    /// `None`: the signer's own name.
    node: Option<Name>,
    role: RoleText,
    /// `None`: the signer's own incarnation.
    incarnation: Option<Loose<Num>>,
    address: Option<Loose<String>>,
    mangle: Mangle,
}

#[derive(Arbitrary, Debug)]
enum Shape {
    Raw {
        headers: Vec<(HeaderChoice, Vec<u8>)>,
        body: Vec<u8>,
    },
    SignedRaw {
        signature: Signature,
        body: Vec<u8>,
    },
    Signed {
        signature: Signature,
        body: RegisterBody,
    },
}

#[derive(Arbitrary, Debug)]
struct Step {
    shape: Shape,
    advance_ms: u8,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let u = Unstructured::new(data);
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(u) else {
        return;
    };
    let mut now_ms = 0;
    let mut core = node(core_config(), at(now_ms), 1);
    drain_alone(&mut core, at(now_ms));
    let signer = Signer::new("w3", 1);
    let mut counters = Counters::new();
    for step in steps.iter().take(16) {
        now_ms += u64::from(step.advance_ms) * 8;
        let now = at(now_ms);
        let request = match &step.shape {
            Shape::Raw { headers, body } => {
                let mut request =
                    plain_request(Method::POST, "/register", Bytes::from(body.clone()));
                add_headers(&mut request, headers);
                request
            }
            Shape::SignedRaw { signature, body } => {
                let mut request =
                    plain_request(Method::POST, "/register", Bytes::from(body.clone()));
                sign(&signer, &mut counters, &mut request, signature, now_ms);
                request
            }
            Shape::Signed {
                signature,
                body: spec,
            } => {
                let node = spec.node.as_ref().unwrap_or(&signature.node).text();
                let incarnation = match &spec.incarnation {
                    Some(loose) => loose.json(|n| json!(n.value())),
                    None => json!(signature.incarnation.value()),
                };
                let mut value = json!({
                    "node": node,
                    "role": spec.role.json(),
                    "incarnation": incarnation,
                });
                if let Some(address) = &spec.address {
                    value["address"] = address.json(|a| json!(a));
                }
                let mut request = plain_request(
                    Method::POST,
                    "/register",
                    Bytes::from(body(&value, spec.mangle)),
                );
                sign(&signer, &mut counters, &mut request, signature, now_ms);
                request
            }
        };
        let response = checked_request(&mut core, now, request);
        if response.status() == StatusCode::OK {
            let answer: Result<RegisterResponse, _> = serde_json::from_slice(response.body());
            assert!(
                answer.is_ok(),
                "an accepted registration answered {:?}",
                String::from_utf8_lossy(response.body())
            );
        }
        drain_alone(&mut core, now);
        core.handle_timeout(now);
        drain_alone(&mut core, now);
    }
}
