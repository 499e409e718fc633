//! Reading a request's head (request line and headers) off a connection,
//! and what it says about the body that follows.

use std::io::{self, BufRead};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

/// The most a head may take; past it the request is refused `431`.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most header fields a head may have.
const MAX_HEADERS: usize = 64;

/// A request's head, checked.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Framing,
    /// The client asked to close the connection after this request (or
    /// speaks HTTP/1.0).
    pub(crate) close: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub(crate) expects_continue: bool,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// Why no head could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// The connection broke or timed out.
    #[error("reading the head failed: {0}")]
    Io(#[from] io::Error),
    /// Longer than [`MAX_HEAD`], or more than [`MAX_HEADERS`] fields.
    #[error("the request head is too large")]
    TooLarge,
    /// Not an HTTP/1.x request head.
    #[error("{0}")]
    Malformed(String),
}

/// Reads the next head; `None` if the client closed the connection
/// between requests.
pub(crate) fn read_head(reader: &mut impl BufRead) -> Result<Option<Head>, HeadError> {
    let mut bytes = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        };
        if available.is_empty() {
            return match bytes.is_empty() {
                true => Ok(None),
                false => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            };
        }
        let before = bytes.len();
        let room = MAX_HEAD + 1 - before;
        bytes.extend_from_slice(&available[..available.len().min(room)]);
        match complete_length(&bytes)? {
            Some(length) => {
                reader.consume(length - before);
                bytes.truncate(length);
                return parse(&bytes).map(Some);
            }
            None if bytes.len() > MAX_HEAD => return Err(HeadError::TooLarge),
            None => {
                let taken = bytes.len() - before;
                reader.consume(taken);
            }
        }
    }
}

/// The head's length once it is all there.
fn complete_length(bytes: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut fields).parse(bytes) {
        Ok(httparse::Status::Complete(length)) => Ok(Some(length)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(error) => Err(HeadError::Malformed(format!(
            "the request head is not HTTP/1.1: {error}"
        ))),
    }
}

fn parse(bytes: &[u8]) -> Result<Head, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    request.parse(bytes).map_err(|error| {
        HeadError::Malformed(format!("the request head is not HTTP/1.1: {error}"))
    })?;
    let malformed = |what: &str| HeadError::Malformed(what.to_owned());
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| malformed("the request method is not valid"))?;
    let uri = request
        .path
        .and_then(|p| p.parse::<Uri>().ok())
        .ok_or_else(|| malformed("the request target is not valid"))?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes());
        let value = HeaderValue::from_bytes(field.value);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                return Err(HeadError::Malformed(format!(
                    "header {} is not valid HTTP",
                    field.name
                )))
            }
        }
    }
    let body = framing(&headers)?;
    let connection = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let close = match version {
        Version::HTTP_10 => !connection("keep-alive"),
        _ => connection("close"),
    };
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    Ok(Head {
        method,
        uri,
        version,
        headers,
        body,
        close,
        expects_continue,
    })
}

/// The body's framing; a head that leaves it ambiguous (both a length and a
/// transfer coding, lengths that disagree, a coding other than chunked) is
/// refused, since a wrong guess would read the next request as this body.
fn framing(headers: &HeaderMap) -> Result<Framing, HeadError> {
    let malformed = |what: &str| Err(HeadError::Malformed(what.to_owned()));
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let coding = headers.get_all(header::TRANSFER_ENCODING).iter().count();
    match (lengths.next(), coding) {
        (Some(_), 1..) => malformed("both Content-Length and Transfer-Encoding"),
        (None, 0) => Ok(Framing::Empty),
        (None, 1) => {
            let chunked = headers
                .get(header::TRANSFER_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            match chunked {
                true => Ok(Framing::Chunked),
                false => malformed("only the chunked transfer coding is understood"),
            }
        }
        (None, _) => malformed("more than one Transfer-Encoding"),
        (Some(first), _) => {
            let length = first
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            let Some(length) = length else {
                return malformed("Content-Length is not a number");
            };
            if lengths.any(|other| other != first) {
                return malformed("Content-Length values disagree");
            }
            Ok(Framing::Length(length))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<Option<Head>, HeadError> {
        read_head(&mut io::BufReader::with_capacity(7, bytes))
    }

    #[test]
    fn a_head_is_read_in_pieces_and_leaves_the_body() {
        let bytes = b"POST /forward?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc";
        let mut reader = io::BufReader::with_capacity(5, &bytes[..]);
        let head = read_head(&mut reader).unwrap().unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri, "/forward?x=1");
        assert_eq!(head.body, Framing::Length(3));
        assert!(!head.close && !head.expects_continue);
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut reader, &mut rest).unwrap();
        assert_eq!(rest, b"abc");
    }

    #[test]
    fn framing_that_could_be_misread_is_refused() {
        for bytes in [
            &b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: -3\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            b"\x16\x03\x01 hello\r\n\r\n",
        ] {
            assert!(
                matches!(head(bytes), Err(HeadError::Malformed(_))),
                "{bytes:?}"
            );
        }
        let chunked = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().unwrap().body, Framing::Chunked);
    }

    #[test]
    fn closing_heads_are_recognised() {
        let h10 = head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h10.close);
        let close = head(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(close.unwrap().unwrap().close);
        assert!(head(b"").unwrap().is_none());
    }

    #[test]
    fn an_endless_head_is_refused_at_the_limit() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        while bytes.len() <= MAX_HEAD + 100 {
            bytes.extend_from_slice(b"x-filler: yes\r\n");
        }
        assert!(matches!(head(&bytes), Err(HeadError::TooLarge)));
    }
}
