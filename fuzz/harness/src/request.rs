//! Any method, path, headers and body into a core and a worker. The body
//! is raw bytes or JSON of an endpoint's shape with arbitrary values; the
//! request is unsigned, signed as a registered member, or signed as anyone.
//! Every answer passes [`checked_request`]: a refused request leaves
//! `status()` exactly as it was.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::Method;
use mqtt_cluster_core::{Incarnation, NodeId};
use serde_json::json;

use crate::fixture::{checked_request, plain_request, Pair};
use crate::register::{add_headers, sign, Counter, Counters, HeaderChoice, Signature};
use crate::shapes::{
    body, forward_json, records_json, updates_json, Mangle, MessageSpec, Name, Num, RecordSpec,
    RoleText, RouteUpdateSpec,
};

const METHODS: [&str; 6] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"];
const PATHS: [&str; 18] = [
    "/health",
    "/register",
    "/heartbeat",
    "/sync",
    "/leave",
    "/stream",
    "/routes",
    "/forward",
    "/ack",
    "/status",
    "/metrics",
    "/register?x=1",
    "http://core1:8884/heartbeat",
    "/nope",
    "/explain?topic=a%2Fb",
    "/explain?topic=a&from=w1",
    "/explain?topic=a%2F%2B",
    "/explain",
];

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    /// The method the path takes.
    Right,
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum PathChoice {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Who {
    /// The fake worker `w2`, registered with the core.
    Fake,
    /// The real worker `w1`, in its real incarnation, with a far counter.
    RealWorker,
    /// The core itself, in its real incarnation.
    Core,
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Member { who: Who, counter: Counter },
    Anyone(Signature),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Empty,
    Raw(Vec<u8>),
    Register {
        node: Name,
        role: RoleText,
        incarnation: Num,
        address: Option<String>,
    },
    Heartbeat {
        members: Option<String>,
        /// Once a route digest, which the protocol no longer carries: its
        /// length is now the version of the quoted `membersSeen` position,
        /// so that the corpus's inputs keep decoding and reach the deltas.
        routes: Option<String>,
    },
    Sync {
        members: Vec<RecordSpec>,
        /// Once the `snapshot` flag of the protocol, now gone: kept so that
        /// the corpus's inputs still decode to the same requests.
        _former_snapshot: Option<bool>,
        routes: Vec<RouteUpdateSpec>,
    },
    /// A route update in the sender's own name.
    Routes(RouteUpdateSpec),
    Forward(Vec<MessageSpec>),
    Ack(Num),
    Leave,
}

#[derive(Arbitrary, Debug)]
struct Req {
    to_worker: bool,
    method: MethodChoice,
    path: PathChoice,
    headers: Vec<(HeaderChoice, Vec<u8>)>,
    body: Body,
    mangle: Mangle,
    auth: Auth,
    advance_ms: u8,
}

/// Who signs, as a name and incarnation.
fn identity(pair: &Pair, who: &Who) -> (NodeId, Incarnation) {
    match who {
        Who::Fake => (pair.fake.id.clone(), pair.fake.incarnation),
        Who::RealWorker => (pair.worker.id().clone(), pair.worker.incarnation()),
        Who::Core => (pair.core.id().clone(), pair.core.incarnation()),
    }
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(requests) = Vec::<Req>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut pair = Pair::new();
    let outsider = crate::fixture::Signer::new("w3", 1);
    let mut counters = Counters::new();
    let mut member_counter = 1u64 << 40;
    for req in requests.iter().take(16) {
        pair.advance(u64::from(req.advance_ms));
        let now = pair.now();
        let path = match &req.path {
            PathChoice::Known(i) => PATHS[usize::from(*i) % PATHS.len()].to_owned(),
            PathChoice::Any(s) => s.clone(),
        };
        let method = match &req.method {
            MethodChoice::Right => {
                let read_only = ["/health", "/stream", "/status", "/metrics"]
                    .contains(&path.as_str())
                    || path.starts_with("/explain");
                if read_only {
                    Method::GET
                } else {
                    Method::POST
                }
            }
            MethodChoice::Known(i) => {
                Method::from_bytes(METHODS[usize::from(*i) % 6].as_bytes()).unwrap_or(Method::GET)
            }
            MethodChoice::Any(s) => Method::from_bytes(s.as_bytes()).unwrap_or(Method::PATCH),
        };
        let (me, my_incarnation) = match &req.auth {
            Auth::Member { who, .. } => identity(&pair, who),
            _ => (pair.fake.id.clone(), pair.fake.incarnation),
        };
        let value = match &req.body {
            Body::Empty => None,
            Body::Raw(bytes) => Some(Err(bytes.clone())),
            Body::Register {
                node,
                role,
                incarnation,
                address,
            } => {
                let mut v = json!({"node": node.text(), "role": role.json(), "incarnation": incarnation.value()});
                if let Some(a) = address {
                    v["address"] = json!(a);
                }
                Some(Ok(v))
            }
            Body::Heartbeat { members, routes } => {
                let members = members
                    .clone()
                    .unwrap_or_else(|| pair.core.status().members_digest);
                let mut v = json!({ "membersDigest": members });
                if let Some(seen) = routes {
                    v["membersSeen"] = json!({
                        "incarnation": pair.core.incarnation().0,
                        "version": seen.len(),
                    });
                }
                Some(Ok(v))
            }
            // `snapshot` is no longer a field of the protocol; the input
            // keeps its shape so that the corpus still decodes the same.
            Body::Sync {
                members,
                _former_snapshot: _,
                routes,
            } => Some(Ok(
                json!({"members": records_json(members), "routes": updates_json(routes)}),
            )),
            Body::Routes(update) => Some(Ok(
                json!({"update": update.json_as(me.as_str(), my_incarnation.0)}),
            )),
            Body::Forward(messages) => Some(Ok(forward_json(messages))),
            Body::Ack(n) => Some(Ok(json!({"through": n.value()}))),
            Body::Leave => Some(Ok(json!({}))),
        };
        let bytes = match value {
            None => Vec::new(),
            Some(Err(raw)) => raw,
            Some(Ok(v)) => body(&v, req.mangle),
        };
        let mut request = plain_request(method, &path, Bytes::from(bytes));
        match &req.auth {
            Auth::None => add_headers(&mut request, &req.headers),
            Auth::Member { counter, .. } => {
                add_headers(&mut request, &req.headers);
                let counter = match counter {
                    Counter::Next => {
                        member_counter += 1;
                        member_counter
                    }
                    Counter::Again => member_counter,
                    Counter::Any(n) => *n,
                };
                outsider.sign_as(&mut request, &me, my_incarnation, counter, now.wall);
            }
            Auth::Anyone(signature) => {
                add_headers(&mut request, &req.headers);
                let ms = now.instant.as_millis();
                sign(&outsider, &mut counters, &mut request, signature, ms);
            }
        }
        let node = if req.to_worker {
            &mut pair.worker
        } else {
            &mut pair.core
        };
        checked_request(node, now, request);
        pair.pump();
    }
}
