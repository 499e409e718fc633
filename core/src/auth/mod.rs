//! Request signatures: who sent a request, that it is fresh, and that it was
//! not seen before.
//!
//! Every request except `GET /health` carries the headers of
//! [`crate::wire::headers`]. With a cluster secret, an HMAC-SHA256 over the
//! request (see [`Authenticator::sign`]) proves the sender knows the secret and
//! that nothing it covers was altered. Two further checks stop a captured
//! request from being sent again: its wall-clock timestamp must be within the
//! freshness window, and its counter must be new for its sender
//! ([`replay`]). The counter is the guard that matters, because node clocks
//! may disagree; the timestamp limits how long an evicted sender's requests
//! stay replayable.

mod identity;
pub mod replay;

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use sha2::{Digest, Sha256};

use crate::id::{Incarnation, NodeId};
use crate::time::WallTime;
use crate::wire::headers::{
    PROTOCOL_VERSION, X_CLUSTER_COUNTER, X_CLUSTER_INCARNATION, X_CLUSTER_NODE,
    X_CLUSTER_SIGNATURE, X_CLUSTER_TIMESTAMP, X_CLUSTER_VERSION,
};

pub use identity::Identity;
use replay::{Rejection, ReplayGuard};

/// The shared cluster secret. Its `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's bytes, as keyed into the MAC.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who sent a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The sender's node id, from `x-cluster-node`.
    pub node: NodeId,
    /// The sender's incarnation, from `x-cluster-incarnation`.
    pub incarnation: Incarnation,
    /// The request's counter within that incarnation, from `x-cluster-counter`.
    pub counter: u64,
}

/// Why a request was refused. A refused request changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A required protocol header is absent.
    #[error("missing header {name}")]
    MissingHeader {
        /// The header.
        name: HeaderName,
    },
    /// A protocol header is present but unusable.
    #[error("malformed header {name}: {reason}")]
    MalformedHeader {
        /// The header.
        name: HeaderName,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature does not match: the sender uses another cluster secret,
    /// or the request was altered on the way.
    #[error(
        "bad signature: the sender does not use this cluster's secret, or the request was altered"
    )]
    BadSignature,
    /// The timestamp is outside the freshness window.
    #[error("request timestamp is {skew_ms} ms off this node's clock (sender minus receiver), outside the freshness window; check both clocks")]
    Stale {
        /// The sender's timestamp minus this node's wall time, in milliseconds.
        skew_ms: i64,
    },
    /// The counter was used before, or is too old to tell.
    #[error("request counter {counter} was already used or is too old: refused as a replay")]
    Replayed {
        /// The refused counter.
        counter: u64,
    },
    /// The sender is known under a newer incarnation; the request comes from
    /// a previous life of that node.
    #[error(
        "sender incarnation {theirs} is older than the known incarnation {known}: re-register"
    )]
    StaleIncarnation {
        /// The incarnation in the request.
        theirs: Incarnation,
        /// The newest incarnation seen from that node.
        known: Incarnation,
    },
    /// The sender speaks another protocol version.
    #[error("incompatible cluster protocol version: the sender speaks version {theirs:?}, this node speaks version {ours}")]
    IncompatibleVersion {
        /// The sender's version header, as sent (cut to a printable length).
        theirs: String,
        /// [`PROTOCOL_VERSION`].
        ours: u32,
    },
}

impl AuthError {
    /// The HTTP status to answer with.
    ///
    /// `403` is reserved for a bad signature: a worker that receives it stops,
    /// because its secret is wrong and retrying cannot help. Everything that a
    /// retry with fresh headers could fix is `401`.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingHeader { .. }
            | AuthError::MalformedHeader { .. }
            | AuthError::Stale { .. }
            | AuthError::Replayed { .. } => StatusCode::UNAUTHORIZED,
            AuthError::BadSignature => StatusCode::FORBIDDEN,
            AuthError::StaleIncarnation { .. } => StatusCode::CONFLICT,
            AuthError::IncompatibleVersion { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// Short snake_case name, used as `error` in JSON error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::MissingHeader { .. } => "missing_header",
            AuthError::MalformedHeader { .. } => "malformed_header",
            AuthError::BadSignature => "bad_signature",
            AuthError::Stale { .. } => "stale_timestamp",
            AuthError::Replayed { .. } => "replayed",
            AuthError::StaleIncarnation { .. } => "stale_incarnation",
            AuthError::IncompatibleVersion { .. } => "incompatible_version",
        }
    }
}

/// Signs outgoing requests and verifies incoming ones.
///
/// The signature is HMAC-SHA256, keyed with the cluster secret, over these
/// lines joined by `\n`: the protocol version, the method, the path with its
/// query, the sender's node id, incarnation, counter and timestamp, and the
/// lowercase hex SHA-256 of the body. None of the parts can contain a newline,
/// so the joined string is unambiguous.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use mqtt_cluster_core::auth::{Authenticator, Secret};
/// use mqtt_cluster_core::{Incarnation, NodeId, WallTime};
///
/// let secret = Some(Secret::new("correct horse battery staple"));
/// let mut auth = Authenticator::new(secret, Duration::from_secs(30), 1024);
/// let me = NodeId::new("worker-1").unwrap();
/// let now = WallTime::from_unix_millis(1_700_000_000_000);
///
/// let mut request = http::Request::post("/heartbeat")
///     .body(Bytes::from_static(b"{}"))
///     .unwrap();
/// auth.sign(&mut request, &me, Incarnation(7), 1, now);
///
/// let sender = auth.verify(&request, now).unwrap();
/// assert_eq!((sender.node, sender.incarnation, sender.counter), (me, Incarnation(7), 1));
///
/// // The same request again is a replay.
/// let err = auth.verify(&request, now).unwrap_err();
/// assert_eq!((err.kind(), err.status().as_u16()), ("replayed", 401));
/// ```
pub struct Authenticator {
    secret: Option<Secret>,
    /// The MAC already keyed with `secret`: keying hashes two blocks, which
    /// every request would otherwise repeat.
    keyed: Option<Hmac<Sha256>>,
    freshness_window: Duration,
    replay: ReplayGuard,
    /// The `x-cluster-version` value, rendered once: every request sends it.
    version: HeaderValue,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("open", &self.secret.is_none())
            .field("freshness_window", &self.freshness_window)
            .field("tracked_senders", &self.replay.len())
            .finish()
    }
}

/// Identity headers as parsed from a request.
struct Claimed {
    node: NodeId,
    incarnation: Incarnation,
    counter: u64,
    timestamp: WallTime,
}

impl Claimed {
    fn signed(&self) -> Signed<'_> {
        Signed {
            node: self.node.as_str(),
            incarnation: self.incarnation,
            counter: self.counter,
            timestamp: self.timestamp,
        }
    }
}

/// The identity parts of the signed text, borrowed from whichever side
/// holds them: the sender's [`Identity`] or the receiver's [`Claimed`].
struct Signed<'a> {
    node: &'a str,
    incarnation: Incarnation,
    counter: u64,
    timestamp: WallTime,
}

impl Authenticator {
    /// An authenticator for a cluster with `secret`.
    ///
    /// `secret: None` means an open cluster: no signatures, but identity
    /// headers, version and replay counters are still checked. The replay
    /// guard remembers at most `max_senders` senders (at least one), evicting
    /// the least recently heard from.
    pub fn new(secret: Option<Secret>, freshness_window: Duration, max_senders: usize) -> Self {
        let keyed = secret
            .as_ref()
            .and_then(|secret| <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).ok());
        Authenticator {
            secret,
            keyed,
            freshness_window,
            replay: ReplayGuard::new(max_senders),
            version: HeaderValue::from(PROTOCOL_VERSION),
        }
    }

    /// Whether this is an open cluster (no secret).
    pub fn is_open(&self) -> bool {
        self.secret.is_none()
    }

    /// Remembers the counter of a request [`check`](Self::check) passed
    /// and the receiver accepted, so that it cannot be replayed. Nothing
    /// happens if the counter was recorded since the check.
    pub fn accept(&mut self, sender: &Sender) {
        // `check` passed and only `accept` records, so this refuses only a
        // sender accepted twice: the first acceptance stands.
        let _ = self
            .replay
            .record(&sender.node, sender.incarnation, sender.counter);
    }

    /// What the replay guard remembers: which counters of which senders were
    /// accepted. Equal before and after a refused request.
    pub fn replay_guard(&self) -> &ReplayGuard {
        &self.replay
    }

    /// How many senders the replay guard remembers now (for status).
    pub fn tracked_senders(&self) -> usize {
        self.replay.len()
    }

    /// Adds all protocol headers (version, node, incarnation, counter,
    /// timestamp, and the signature unless the cluster is open) to an outgoing
    /// request, replacing any already there.
    ///
    /// Sign last: the signature covers the method, path and body as they are
    /// now. `counter` must start at 1 and grow with every request within an
    /// incarnation; receivers refuse 0 and any counter they have seen.
    pub fn sign(
        &self,
        request: &mut Request<Bytes>,
        node: &NodeId,
        incarnation: Incarnation,
        counter: u64,
        wall: WallTime,
    ) {
        self.sign_as(
            request,
            &Identity::new(node.clone(), incarnation),
            counter,
            wall,
        );
    }

    /// [`sign`](Self::sign) for a sender that keeps its [`Identity`]: the
    /// same headers and signature, without rendering the node and
    /// incarnation again.
    pub fn sign_as(
        &self,
        request: &mut Request<Bytes>,
        identity: &Identity,
        counter: u64,
        wall: WallTime,
    ) {
        let mac = self.secret.as_ref().and_then(|_| {
            let signed = Signed {
                node: identity.node().as_str(),
                incarnation: identity.incarnation(),
                counter,
                timestamp: wall,
            };
            self.mac(request, &signed)
        });
        // The counter, the timestamp and the signature share one buffer:
        // three header values for one allocation.
        let mut number = Decimal::default();
        let mut text = BytesMut::with_capacity(20 + 20 + 64);
        text.extend_from_slice(number.of(counter));
        let counter_end = text.len();
        text.extend_from_slice(number.of(wall.as_unix_millis()));
        let timestamp_end = text.len();
        if let Some(mac) = mac {
            let mut digits = [0u8; 64];
            text.extend_from_slice(hex_into(&mac.finalize().into_bytes(), &mut digits));
        }
        let text = text.freeze();
        // Digits are valid header bytes: the fallbacks are never taken.
        let counter_value = HeaderValue::from_maybe_shared(text.slice(..counter_end))
            .unwrap_or_else(|_| HeaderValue::from(counter));
        let timestamp_value =
            HeaderValue::from_maybe_shared(text.slice(counter_end..timestamp_end))
                .unwrap_or_else(|_| HeaderValue::from(wall.as_unix_millis()));
        let signature = (text.len() > timestamp_end)
            .then(|| HeaderValue::from_maybe_shared(text.slice(timestamp_end..)).ok())
            .flatten();
        let headers = request.headers_mut();
        headers.insert(X_CLUSTER_VERSION, self.version.clone());
        match identity.node_header() {
            Some(value) => headers.insert(X_CLUSTER_NODE, value.clone()),
            None => headers.remove(X_CLUSTER_NODE),
        };
        headers.insert(X_CLUSTER_INCARNATION, identity.incarnation_header().clone());
        headers.insert(X_CLUSTER_COUNTER, counter_value);
        headers.insert(X_CLUSTER_TIMESTAMP, timestamp_value);
        match signature {
            Some(value) => {
                headers.insert(X_CLUSTER_SIGNATURE, value);
            }
            None => {
                headers.remove(X_CLUSTER_SIGNATURE);
            }
        }
    }

    /// Checks a received request ([`check`](Self::check)) and, if it
    /// passes, [`accept`](Self::accept)s it at once: for a receiver that has
    /// nothing else to check. On `Err`, changes nothing.
    pub fn verify(
        &mut self,
        request: &Request<Bytes>,
        wall: WallTime,
    ) -> Result<Sender, AuthError> {
        let sender = self.check(request, wall)?;
        self.accept(&sender);
        Ok(sender)
    }

    /// Checks a received request: version, identity headers, timestamp
    /// format, signature (unless open), freshness, then incarnation and
    /// counter. Changes nothing, whatever the outcome.
    ///
    /// A receiver that refuses the request for another reason afterwards
    /// (its body, the sender's membership) simply drops the [`Sender`]; one
    /// that accepts it calls [`accept`](Self::accept), so that its counter
    /// cannot be used again. Recording only accepted requests is what keeps
    /// a refused request from using up counters, from evicting other senders
    /// from the replay guard, and, sent under a newer incarnation, from
    /// locking the live one out. A refused request may therefore be sent
    /// again: it is refused again for the same reason, or, if the sender's
    /// membership changed meanwhile, accepted once, as the sender's own
    /// retry would have been.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use mqtt_cluster_core::auth::{Authenticator, Secret};
    /// use mqtt_cluster_core::{Incarnation, NodeId, WallTime};
    ///
    /// let secret = Some(Secret::new("s3cret-s3cret"));
    /// let now = WallTime::from_unix_millis(1_700_000_000_000);
    /// let sender = Authenticator::new(secret.clone(), Duration::from_secs(30), 64);
    /// let mut receiver = Authenticator::new(secret, Duration::from_secs(30), 64);
    /// let mut request = http::Request::post("/heartbeat").body(bytes::Bytes::new())?;
    /// sender.sign(&mut request, &NodeId::new("w1")?, Incarnation(1), 1, now);
    ///
    /// let checked = receiver.check(&request, now)?;
    /// // Refused for another reason: nothing recorded, the same bytes pass again.
    /// assert_eq!(receiver.check(&request, now)?, checked);
    /// receiver.accept(&checked);
    /// assert_eq!(receiver.check(&request, now).unwrap_err().kind(), "replayed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self, request: &Request<Bytes>, wall: WallTime) -> Result<Sender, AuthError> {
        check_version(request)?;
        let claimed = parse_claimed(request, &self.replay)?;
        if self.secret.is_some() {
            let signature = parse_signature(single_value(request, &X_CLUSTER_SIGNATURE)?)?;
            let mac = self
                .mac(request, &claimed.signed())
                .ok_or(AuthError::BadSignature)?;
            mac.verify_slice(&signature)
                .map_err(|_| AuthError::BadSignature)?;
        }
        if claimed.timestamp.distance(wall) > self.freshness_window {
            let skew = i128::from(claimed.timestamp.as_unix_millis())
                .saturating_sub(i128::from(wall.as_unix_millis()));
            let skew_ms = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(AuthError::Stale { skew_ms });
        }
        self.replay
            .check(&claimed.node, claimed.incarnation, claimed.counter)
            .map_err(|rejection| match rejection {
                Rejection::Replayed => AuthError::Replayed {
                    counter: claimed.counter,
                },
                Rejection::StaleIncarnation { known } => AuthError::StaleIncarnation {
                    theirs: claimed.incarnation,
                    known,
                },
            })?;
        Ok(Sender {
            node: claimed.node,
            incarnation: claimed.incarnation,
            counter: claimed.counter,
        })
    }
}

impl Authenticator {
    /// The keyed MAC fed with the canonical string; `None` only if HMAC
    /// refused the key, which it never does for any key length.
    fn mac(&self, request: &Request<Bytes>, signed: &Signed<'_>) -> Option<Hmac<Sha256>> {
        let mut mac = self.keyed.clone()?;
        feed_canonical(&mut mac, request, signed);
        Some(mac)
    }
}

/// Feeds the signed text to `mac`, piece by piece, without building it:
///
/// ```text
/// {version}\n{method}\n{path and query}\n{node}\n{incarnation}\n{counter}\n{timestamp}\n{hex sha256 of body}
/// ```
///
/// Parsed values are rendered back rather than the raw header text, so that
/// a signature binds exactly what the receiver acts on.
fn feed_canonical(mac: &mut Hmac<Sha256>, request: &Request<Bytes>, signed: &Signed<'_>) {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut number = Decimal::default();
    mac.update(number.of(u64::from(PROTOCOL_VERSION)));
    mac.update(b"\n");
    mac.update(request.method().as_str().as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(signed.node.as_bytes());
    mac.update(b"\n");
    mac.update(number.of(signed.incarnation.0));
    mac.update(b"\n");
    mac.update(number.of(signed.counter));
    mac.update(b"\n");
    mac.update(number.of(signed.timestamp.as_unix_millis()));
    mac.update(b"\n");
    let mut body_hash = [0u8; 64];
    mac.update(hex_into(&Sha256::digest(request.body()), &mut body_hash));
}

/// Room to render a `u64` in decimal without allocating.
#[derive(Default)]
pub(crate) struct Decimal([u8; 20]);

impl Decimal {
    /// The ASCII digits of `n`, two at a time: every request renders a
    /// thirteen-digit timestamp twice, and halving the divisions shows.
    pub(crate) fn of(&mut self, mut n: u64) -> &[u8] {
        let mut at = self.0.len();
        while n >= 100 {
            // `n % 100` is below 100: the cast keeps its value.
            let pair = DIGIT_PAIRS[(n % 100) as usize];
            n /= 100;
            at = at.saturating_sub(2);
            if let Some(out) = self.0.get_mut(at..at + 2) {
                out.copy_from_slice(&pair);
            }
        }
        // Below 100 now; one digit or two.
        let [tens, ones] = DIGIT_PAIRS[n as usize];
        at = at.saturating_sub(1);
        if let Some(out) = self.0.get_mut(at) {
            *out = ones;
        }
        if n >= 10 {
            at = at.saturating_sub(1);
            if let Some(out) = self.0.get_mut(at) {
                *out = tens;
            }
        }
        self.0.get(at..).unwrap_or_default()
    }
}

/// `00` to `99`.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut n = 0;
    while n < 100 {
        pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    pairs
};

/// The two lowercase hex digits of every byte value, so that a digest is
/// written a byte at a time rather than a nibble at a time: every request
/// writes two, and every receiver one.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [digits[b >> 4], digits[b & 0x0f]];
        b += 1;
    }
    pairs
};

/// Lowercase hex of `bytes`, written into `out` (which must hold twice as
/// many bytes; the hex is cut short otherwise); returns the part written.
fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut written = 0;
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
        written += 2;
    }
    out.get(..written).unwrap_or_default()
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        let [hi, lo] = HEX_PAIRS[usize::from(*b)];
        out.push(char::from(hi));
        out.push(char::from(lo));
    }
    out
}

fn parse_signature(value: &HeaderValue) -> Result<[u8; 32], AuthError> {
    let digits = value.as_bytes();
    if digits.len() != 64 {
        return Err(malformed(
            value,
            &X_CLUSTER_SIGNATURE,
            "expected 64 hex digits",
        ));
    }
    // Digits are random, so a branch per digit is mispredicted half the
    // time: look each one up, and check them all at the end.
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        if let [hi, lo] = pair {
            let (hi, lo) = (NIBBLES[usize::from(*hi)], NIBBLES[usize::from(*lo)]);
            invalid |= hi | lo;
            *byte = hi.wrapping_shl(4) | (lo & 0x0f);
        }
    }
    if invalid & NOT_HEX != 0 {
        return Err(malformed(value, &X_CLUSTER_SIGNATURE, "not a hex digit"));
    }
    Ok(out)
}

/// Marks a byte that is not a hex digit in [`NIBBLES`].
const NOT_HEX: u8 = 0x80;

/// The value of every hex digit, either case; [`NOT_HEX`] for other bytes.
const NIBBLES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut c = 0;
    while c < 10 {
        table[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        table[b'a' as usize + c] = 10 + c as u8;
        table[b'A' as usize + c] = 10 + c as u8;
        c += 1;
    }
    table
};

/// The one value of a header. A repeated protocol header is refused: sender
/// and receiver might otherwise read different copies.
fn single_value<'r>(
    request: &'r Request<Bytes>,
    name: &HeaderName,
) -> Result<&'r HeaderValue, AuthError> {
    let mut values = request.headers().get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| AuthError::MissingHeader { name: name.clone() })?;
    if values.next().is_some() {
        return Err(AuthError::MalformedHeader {
            name: name.clone(),
            reason: "repeated",
        });
    }
    Ok(value)
}

/// [`single_value`] as text.
fn single_header<'r>(request: &'r Request<Bytes>, name: &HeaderName) -> Result<&'r str, AuthError> {
    visible_text(single_value(request, name)?, name)
}

fn visible_text<'v>(value: &'v HeaderValue, name: &HeaderName) -> Result<&'v str, AuthError> {
    value.to_str().map_err(|_| AuthError::MalformedHeader {
        name: name.clone(),
        reason: "not visible ASCII",
    })
}

/// The error for a value of `name` that was read as bytes and refused:
/// that it is not text at all if so, `reason` otherwise.
fn malformed(value: &HeaderValue, name: &HeaderName, reason: &'static str) -> AuthError {
    match visible_text(value, name) {
        Err(not_text) => not_text,
        Ok(_) => AuthError::MalformedHeader {
            name: name.clone(),
            reason,
        },
    }
}

/// A plain decimal: digits only, so that `+5` or ` 5` cannot make two
/// different header texts mean the same number. Read in one pass, since
/// every request carries three.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &digit| {
        if digit.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        } else {
            None
        }
    })
}

fn decimal_header(request: &Request<Bytes>, name: &HeaderName) -> Result<u64, AuthError> {
    let value = single_value(request, name)?;
    parse_decimal(value.as_bytes()).ok_or_else(|| {
        malformed(
            value,
            name,
            "expected a decimal number that fits in 64 bits",
        )
    })
}

fn check_version(request: &Request<Bytes>) -> Result<(), AuthError> {
    let value = single_value(request, &X_CLUSTER_VERSION)?;
    if parse_decimal(value.as_bytes()) == Some(u64::from(PROTOCOL_VERSION)) {
        return Ok(());
    }
    let theirs = visible_text(value, &X_CLUSTER_VERSION)?;
    Err(AuthError::IncompatibleVersion {
        theirs: theirs.chars().take(32).collect(),
        ours: PROTOCOL_VERSION,
    })
}

/// The identity headers of `request`; a sender the replay guard knows is
/// taken from it rather than parsed and allocated again.
fn parse_claimed(request: &Request<Bytes>, replay: &ReplayGuard) -> Result<Claimed, AuthError> {
    let name = single_header(request, &X_CLUSTER_NODE)?;
    let node = match replay.known(name) {
        Some(known) => known.clone(),
        None => NodeId::new(name).map_err(|_| AuthError::MalformedHeader {
            name: X_CLUSTER_NODE,
            reason: "not a valid node name",
        })?,
    };
    let incarnation = Incarnation(decimal_header(request, &X_CLUSTER_INCARNATION)?);
    let counter = decimal_header(request, &X_CLUSTER_COUNTER)?;
    if counter == 0 {
        return Err(AuthError::MalformedHeader {
            name: X_CLUSTER_COUNTER,
            reason: "counters start at 1",
        });
    }
    let timestamp = WallTime::from_unix_millis(decimal_header(request, &X_CLUSTER_TIMESTAMP)?);
    Ok(Claimed {
        node,
        incarnation,
        counter,
        timestamp,
    })
}

#[cfg(test)]
mod tests;
