//! The query of `GET /explain`: which topic, published by whom.
//!
//! Topics travel percent-encoded (`/explain?topic=site%2F1%2Ftemp&from=w1`):
//! every byte but the unreserved ASCII letters, digits and `-._~` is
//! escaped, so a `+` is `%2B` and a space `%20` (a bare `+` stays a `+`,
//! which a topic name cannot hold anyway).

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::Endpoint;
use crate::id::{InvalidNodeId, NodeId};
use crate::routing::{TopicError, TopicName};

/// Bytes left as they are in a query value: RFC 3986's unreserved set.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What `GET /explain` is asked: a topic name and, optionally, the member
/// that publishes on it (by default the node asked).
///
/// ```
/// use mqtt_cluster_core::routing::TopicName;
/// use mqtt_cluster_core::wire::explain::ExplainQuery;
/// use mqtt_cluster_core::NodeId;
///
/// let query = ExplainQuery {
///     topic: TopicName::new("site/1 temp").unwrap(),
///     from: Some(NodeId::new("w1").unwrap()),
/// };
/// assert_eq!(query.to_query_string(), "topic=site%2F1%20temp&from=w1");
/// assert_eq!(ExplainQuery::parse(Some(&query.to_query_string())), Ok(query));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainQuery {
    /// The topic a message would be published on.
    pub topic: TopicName,
    /// The member publishing it; the node asked when `None`.
    pub from: Option<NodeId>,
}

/// A `GET /explain` query that cannot be answered: `400 bad_query`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainQueryError {
    /// No `topic` parameter.
    #[error("the query names no topic (/explain?topic=...)")]
    MissingTopic,
    /// A parameter other than `topic` and `from`.
    #[error("unknown query parameter {name:?}")]
    UnknownParameter {
        /// Its name, cut to a printable length.
        name: String,
    },
    /// A parameter given twice.
    #[error("query parameter {name:?} given more than once")]
    Repeated {
        /// `topic` or `from`.
        name: &'static str,
    },
    /// A value whose percent-decoding is not UTF-8.
    #[error("query parameter {name:?} is not UTF-8 once decoded")]
    NotUtf8 {
        /// `topic` or `from`.
        name: &'static str,
    },
    /// The topic is not a valid MQTT topic name (a filter with wildcards is
    /// not a topic a message is published on).
    #[error("bad topic: {0}")]
    Topic(#[from] TopicError),
    /// `from` is not a valid node id.
    #[error("bad publisher: {0}")]
    From(#[from] InvalidNodeId),
}

impl ExplainQueryError {
    /// Always `400`.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

impl ExplainQuery {
    /// Reads a request's query string (without the `?`).
    pub fn parse(query: Option<&str>) -> Result<ExplainQuery, ExplainQueryError> {
        let mut topic = None;
        let mut from = None;
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (slot, name) = match name {
                "topic" => (&mut topic, "topic"),
                "from" => (&mut from, "from"),
                other => {
                    return Err(ExplainQueryError::UnknownParameter {
                        name: other.chars().take(64).collect(),
                    })
                }
            };
            if slot.is_some() {
                return Err(ExplainQueryError::Repeated { name });
            }
            let decoded = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| ExplainQueryError::NotUtf8 { name })?;
            *slot = Some(decoded.into_owned());
        }
        let topic = TopicName::new(&topic.ok_or(ExplainQueryError::MissingTopic)?)?;
        let from = from.map(|f| NodeId::new(&f)).transpose()?;
        Ok(ExplainQuery { topic, from })
    }

    /// The query string, without the `?`.
    pub fn to_query_string(&self) -> String {
        let mut query = format!(
            "topic={}",
            utf8_percent_encode(self.topic.as_str(), QUERY_VALUE)
        );
        if let Some(from) = &self.from {
            query.push_str("&from=");
            query.extend(utf8_percent_encode(from.as_str(), QUERY_VALUE));
        }
        query
    }

    /// An unsigned `GET /explain` for this query at `base`
    /// (`http://host:port`).
    pub fn request(&self, base: &str) -> Request<Bytes> {
        let mut request = Endpoint::Explain.request(base, Bytes::new());
        let uri = format!("{}?{}", request.uri(), self.to_query_string());
        if let Ok(uri) = uri.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_back_what_they_write() {
        for topic in ["a", "a/b", "sp ace/ü/€", "$SYS/x", "a%2Fb", "/", "a//b"] {
            let query = ExplainQuery {
                topic: TopicName::new(topic).unwrap(),
                from: None,
            };
            let text = query.to_query_string();
            assert!(!text.contains(' ') && !text.contains('/'), "{text}");
            assert_eq!(ExplainQuery::parse(Some(&text)), Ok(query), "{topic}");
        }
    }

    #[test]
    fn bad_queries_are_told_apart() {
        use ExplainQueryError as E;
        assert_eq!(ExplainQuery::parse(None), Err(E::MissingTopic));
        assert_eq!(ExplainQuery::parse(Some("from=w1")), Err(E::MissingTopic));
        assert!(matches!(
            ExplainQuery::parse(Some("topic=a&x=1")),
            Err(E::UnknownParameter { .. })
        ));
        assert_eq!(
            ExplainQuery::parse(Some("topic=a&topic=b")),
            Err(E::Repeated { name: "topic" })
        );
        assert_eq!(
            ExplainQuery::parse(Some("topic=%FF")),
            Err(E::NotUtf8 { name: "topic" })
        );
        assert!(matches!(
            ExplainQuery::parse(Some("topic=a%2F%2B")),
            Err(E::Topic(_))
        ));
        assert!(matches!(
            ExplainQuery::parse(Some("topic=")),
            Err(E::Topic(_))
        ));
        assert!(matches!(
            ExplainQuery::parse(Some("topic=a&from=")),
            Err(E::From(_))
        ));
    }

    #[test]
    fn the_request_carries_the_query_in_its_target() {
        let query = ExplainQuery::parse(Some("topic=a%2Fb&from=w1")).unwrap();
        let request = query.request("http://core1:8884");
        assert_eq!(
            request.uri(),
            "http://core1:8884/explain?topic=a%2Fb&from=w1"
        );
        assert_eq!(request.method(), http::Method::GET);
    }
}
