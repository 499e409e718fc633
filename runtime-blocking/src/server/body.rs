//! Reading a request's body, up to one byte past the node's limit: that
//! byte is enough for the core to refuse it as too large, and the rest is
//! never held in memory.

use std::io::{self, BufRead, Read};

use super::head::Framing;

/// The longest chunk-size line (with extensions) or trailer line read.
const MAX_LINE: u64 = 4096;

/// A body as read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Body {
    pub(crate) bytes: Vec<u8>,
    /// The whole body was read, so the connection can carry another
    /// request.
    pub(crate) complete: bool,
}

/// Reads the body `framing` announces, up to `limit + 1` bytes. A body
/// announced longer than `limit` is not read at all: the core refuses it
/// from its `Content-Length`.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    framing: Framing,
    limit: usize,
) -> io::Result<Body> {
    let cap = limit as u64 + 1;
    match framing {
        Framing::Empty => Ok(Body {
            bytes: Vec::new(),
            complete: true,
        }),
        Framing::Length(length) if length > limit as u64 => Ok(Body {
            bytes: Vec::new(),
            complete: length == 0,
        }),
        Framing::Length(length) => {
            let mut bytes = Vec::with_capacity(length as usize);
            reader.take(length).read_to_end(&mut bytes)?;
            if (bytes.len() as u64) < length {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(Body {
                bytes,
                complete: true,
            })
        }
        Framing::Chunked => read_chunked(reader, cap),
    }
}

fn read_chunked(reader: &mut impl BufRead, cap: u64) -> io::Result<Body> {
    let mut bytes = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid("a chunk size is not hexadecimal"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(Body {
                bytes,
                complete: true,
            });
        }
        let room = cap - bytes.len() as u64;
        let wanted = size.min(room);
        let before = bytes.len();
        reader.take(wanted).read_to_end(&mut bytes)?;
        if ((bytes.len() - before) as u64) < wanted {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if wanted < size {
            return Ok(Body {
                bytes,
                complete: false,
            });
        }
        if !read_line(reader)?.is_empty() {
            return Err(invalid("a chunk does not end where its size says"));
        }
    }
}

/// One line without its line ending; an error past [`MAX_LINE`] bytes or at
/// the end of input.
fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.take(MAX_LINE + 2).read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(match line.len() as u64 > MAX_LINE {
            true => invalid("a chunk line is too long"),
            false => io::ErrorKind::UnexpectedEof.into(),
        });
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], framing: Framing, limit: usize) -> io::Result<Body> {
        read_body(&mut io::BufReader::with_capacity(3, bytes), framing, limit)
    }

    #[test]
    fn chunks_are_joined_and_trailers_skipped() {
        let body = read(
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
            Framing::Chunked,
            10,
        );
        assert_eq!(
            body.unwrap(),
            Body {
                bytes: b"abcde".to_vec(),
                complete: true
            }
        );
    }

    #[test]
    fn reading_stops_one_byte_past_the_limit() {
        let chunked = read(b"8\r\nabcdefgh\r\n0\r\n\r\n", Framing::Chunked, 4).unwrap();
        assert_eq!((chunked.bytes.len(), chunked.complete), (5, false));
        let announced = read(b"abcdefgh", Framing::Length(8), 4).unwrap();
        assert_eq!((announced.bytes.len(), announced.complete), (0, false));
        let exact = read(b"abcd", Framing::Length(4), 4).unwrap();
        assert_eq!((exact.bytes.len(), exact.complete), (4, true));
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert!(read(b"ab", Framing::Length(4), 10).is_err());
        assert!(read(b"zz\r\nab\r\n0\r\n\r\n", Framing::Chunked, 10).is_err());
        assert!(read(b"2\r\nabc\r\n0\r\n\r\n", Framing::Chunked, 10).is_err());
        assert!(read(b"2\r\nab", Framing::Chunked, 10).is_err());
        let endless = vec![b'1'; 10_000];
        assert!(read(&endless, Framing::Chunked, 10).is_err());
    }
}
