//! Structured inputs shared by the targets: names, numbers and JSON bodies
//! of the protocol's shapes, with values drawn from small lists of
//! meaningful ones or fully arbitrary.

use arbitrary::Arbitrary;
use base64::Engine as _;
use serde_json::{json, Value};

/// Node names the fixtures know.
pub const NAMES: [&str; 5] = ["core1", "w1", "w2", "w3", "core2"];
/// Topics the targets publish on.
pub const TOPICS: [&str; 7] = [
    "t/a",
    "t/b/c",
    "sensors/1/temp",
    "$SYS/load",
    "jobs/a",
    "",
    "a/+",
];
/// Subscriptions the targets use.
pub const FILTERS: [&str; 9] = [
    "t/+",
    "#",
    "sensors/#",
    "+/+/temp",
    "$share/g1/jobs/#",
    "$SYS/#",
    "a//b",
    "bad/#/x",
    "",
];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

/// A node name: a known one, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    /// One of [`NAMES`].
    Known(u8),
    /// Any text.
    Any(String),
}

impl Name {
    /// The name as text.
    pub fn text(&self) -> String {
        match self {
            Name::Known(i) => pick(&NAMES, *i).to_owned(),
            Name::Any(s) => s.clone(),
        }
    }
}

/// A topic: a known one, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Topic {
    /// One of [`TOPICS`].
    Known(u8),
    /// Any text.
    Any(String),
}

impl Topic {
    /// The topic as text.
    pub fn text(&self) -> String {
        match self {
            Topic::Known(i) => pick(&TOPICS, *i).to_owned(),
            Topic::Any(s) => s.clone(),
        }
    }
}

/// A subscription: a known one, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Filter {
    /// One of [`FILTERS`].
    Known(u8),
    /// Any text.
    Any(String),
}

impl Filter {
    /// The filter as text.
    pub fn text(&self) -> String {
        match self {
            Filter::Known(i) => pick(&FILTERS, *i).to_owned(),
            Filter::Any(s) => s.clone(),
        }
    }
}

/// A number: small (the interesting range) or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    /// 0 to 255.
    Small(u8),
    /// Any `u64`.
    Any(u64),
    /// Near the top of the range.
    Max(u8),
}

impl Num {
    /// The number.
    pub fn value(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n),
            Num::Any(n) => n,
            Num::Max(n) => u64::MAX - u64::from(n),
        }
    }
}

/// A JSON value that may not be the expected type at all.
#[derive(Arbitrary, Debug, Clone)]
pub enum Loose<T> {
    /// The expected shape.
    Right(T),
    /// `null`.
    Null,
    /// A string instead.
    Text(String),
    /// A negative or fractional number instead.
    Float(f64),
}

impl<T> Loose<T> {
    /// Converts, with `f` for the expected shape.
    pub fn json(&self, f: impl FnOnce(&T) -> Value) -> Value {
        match self {
            Loose::Right(t) => f(t),
            Loose::Null => Value::Null,
            Loose::Text(s) => Value::String(s.clone()),
            Loose::Float(x) => json!(x),
        }
    }
}

/// Bytes as the protocol carries them (base64), or a string that is not.
#[derive(Arbitrary, Debug, Clone)]
pub enum Payload {
    /// Well-formed base64 of these bytes.
    Bytes(Vec<u8>),
    /// Any text.
    Text(String),
}

impl Payload {
    /// The JSON string.
    pub fn json(&self) -> Value {
        match self {
            Payload::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            Payload::Text(s) => json!(s),
        }
    }
}

/// A role, or something that is not one.
#[derive(Arbitrary, Debug, Clone)]
pub enum RoleText {
    /// `"core"`.
    Core,
    /// `"worker"`.
    Worker,
    /// Anything.
    Any(String),
}

impl RoleText {
    /// The JSON value.
    pub fn json(&self) -> Value {
        match self {
            RoleText::Core => json!("core"),
            RoleText::Worker => json!("worker"),
            RoleText::Any(s) => json!(s),
        }
    }
}

/// One forwarded message.
#[derive(Arbitrary, Debug, Clone)]
pub struct MessageSpec {
    origin: Name,
    incarnation: Loose<Num>,
    topic: Topic,
    payload: Payload,
    qos: u8,
    retain: Option<bool>,
    properties: Option<Payload>,
    targets: Vec<(Name, Num)>,
}

impl MessageSpec {
    /// The JSON of a `ForwardedMessage`.
    pub fn json(&self) -> Value {
        let mut m = json!({
            "origin": self.origin.text(),
            "incarnation": self.incarnation.json(|n| json!(n.value())),
            "topic": self.topic.text(),
            "payload": self.payload.json(),
            "qos": self.qos % 4,
            "targets": self.targets.iter().take(8).map(|(n, s)| json!({"node": n.text(), "seq": s.value()})).collect::<Vec<_>>(),
        });
        if let Some(retain) = self.retain {
            m["retain"] = json!(retain);
        }
        if let Some(p) = &self.properties {
            m["properties"] = p.json();
        }
        m
    }
}

/// The JSON of a `ForwardRequest`.
pub fn forward_json(messages: &[MessageSpec]) -> Value {
    json!({ "messages": messages.iter().take(32).map(MessageSpec::json).collect::<Vec<_>>() })
}

/// One member record.
#[derive(Arbitrary, Debug, Clone)]
pub struct RecordSpec {
    id: Name,
    role: RoleText,
    incarnation: Num,
    state: u8,
    home: Name,
    address: Option<String>,
    clock: Num,
    by: Name,
}

impl RecordSpec {
    /// The JSON of a `MemberRecord`.
    pub fn json(&self) -> Value {
        let state = ["alive", "suspect", "dead", "left", "gone"][usize::from(self.state % 5)];
        let mut r = json!({
            "id": self.id.text(),
            "role": self.role.json(),
            "incarnation": self.incarnation.value(),
            "state": state,
            "home": self.home.text(),
            "stamp": { "clock": self.clock.value(), "by": self.by.text() },
        });
        if let Some(a) = &self.address {
            r["address"] = json!(a);
        }
        r
    }
}

/// Member records as a JSON array.
pub fn records_json(records: &[RecordSpec]) -> Value {
    Value::Array(records.iter().take(16).map(RecordSpec::json).collect())
}

/// A route change.
#[derive(Arbitrary, Debug, Clone)]
pub enum ChangeSpec {
    /// Added and removed filters after version `prev`.
    Delta {
        /// The version it follows.
        prev: Num,
        /// Filters added.
        add: Vec<Filter>,
        /// Filters removed.
        remove: Vec<Filter>,
    },
    /// Every filter of the node.
    Snapshot(Vec<Filter>),
}

/// One route update.
#[derive(Arbitrary, Debug, Clone)]
pub struct RouteUpdateSpec {
    node: Name,
    incarnation: Num,
    seq: Num,
    change: ChangeSpec,
}

fn filters(list: &[Filter]) -> Value {
    Value::Array(list.iter().take(8).map(|f| json!(f.text())).collect())
}

impl RouteUpdateSpec {
    /// The JSON of a `RouteUpdate`.
    pub fn json(&self) -> Value {
        let change = match &self.change {
            ChangeSpec::Delta { prev, add, remove } => json!({
                "kind": "delta", "prev": prev.value(), "add": filters(add), "remove": filters(remove),
            }),
            ChangeSpec::Snapshot(routes) => {
                json!({ "kind": "snapshot", "routes": filters(routes) })
            }
        };
        json!({
            "node": self.node.text(),
            "incarnation": self.incarnation.value(),
            "seq": self.seq.value(),
            "change": change,
        })
    }

    /// The same update with the given sender filled in, so that it passes
    /// the identity check of `POST /routes`.
    pub fn json_as(&self, node: &str, incarnation: u64) -> Value {
        let mut v = self.json();
        v["node"] = json!(node);
        v["incarnation"] = json!(incarnation);
        v
    }
}

/// Route updates as a JSON array.
pub fn updates_json(updates: &[RouteUpdateSpec]) -> Value {
    Value::Array(updates.iter().take(8).map(RouteUpdateSpec::json).collect())
}

/// How a JSON body is mangled before it is sent.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Mangle {
    /// Sent as is.
    None,
    /// An unknown field added.
    ExtraField,
    /// Cut short at a byte offset.
    Truncate(u16),
    /// One byte replaced.
    Flip(u16, u8),
}

/// Serialises `value` and applies `mangle`.
pub fn body(value: &Value, mangle: Mangle) -> Vec<u8> {
    let mut value = value.clone();
    if let (Mangle::ExtraField, Value::Object(map)) = (mangle, &mut value) {
        map.insert("unexpected".into(), json!(1));
    }
    let mut bytes = serde_json::to_vec(&value).unwrap_or_default();
    match mangle {
        Mangle::Truncate(at) => bytes.truncate(usize::from(at) % (bytes.len() + 1)),
        Mangle::Flip(at, b) => {
            if !bytes.is_empty() {
                let i = usize::from(at) % bytes.len();
                bytes[i] = b;
            }
        }
        Mangle::None | Mangle::ExtraField => {}
    }
    bytes
}

/// Splits `bytes` at the given points (taken modulo the length).
pub fn split<'a>(bytes: &'a [u8], points: &[u16]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points
        .iter()
        .take(32)
        .map(|p| usize::from(*p) % (bytes.len() + 1))
        .collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}
