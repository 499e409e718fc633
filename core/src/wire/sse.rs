//! Server-Sent Events framing for `GET /stream`.
//!
//! A core writes frames with [`encode`] (and keepalives with
//! [`encode_comment`]); a worker feeds whatever bytes arrive, in chunks split
//! anywhere, into an [`SseDecoder`] and takes complete frames out. The decoder
//! follows the text format of the HTML standard's `EventSource`: `\n`, `\r\n`
//! and `\r` all end a line, a blank line dispatches a frame, `:` starts a
//! comment, `data` lines accumulate, `id` persists, unknown fields are ignored
//! and a leading byte-order mark is skipped. Unlike a browser it refuses
//! invalid UTF-8 instead of replacing it, and refuses frames larger than a
//! limit, because a peer sending either is broken or hostile.

use std::io::Write as _;

use bytes::Bytes;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    /// The event name; `"message"` when the frame has no (or an empty)
    /// `event` field, as the SSE standard says.
    pub event: String,
    /// The `id` field of this frame, if it had one. Unlike the standard's
    /// `lastEventId`, this is not inherited from earlier frames; that value
    /// is [`SseDecoder::last_event_id`].
    pub id: Option<String>,
    /// The `data` lines joined by `\n`.
    pub data: String,
}

/// Why a stream cannot be decoded further. Errors are final: the stream is
/// corrupt or hostile, so the runtime should drop it and reconnect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line of the stream is not valid UTF-8.
    #[error("stream line is not valid UTF-8")]
    InvalidUtf8,
    /// A frame (or a single line) grew beyond the decoder's limit.
    #[error("stream frame exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The limit given to [`SseDecoder::new`].
        limit: usize,
    },
}

/// Frames `data` as event `event`: `event: {event}\n`, then `data: {line}\n`
/// for each line of `data`, then a blank line.
///
/// SSE cannot carry a carriage return inside data, so `\r\n` and `\r` in
/// `data` arrive as `\n`; JSON bodies never contain raw ones. Line breaks in
/// `event` would end the field early, so they are removed.
pub fn encode(event: &str, data: &str) -> Bytes {
    frame(event, None, data)
}

/// Like [`encode`], with an `id` line carrying a sequence number, which the
/// receiver reads as [`SseFrame::id`] and [`SseDecoder::last_event_id`].
pub fn encode_with_id(event: &str, id: u64, data: &str) -> Bytes {
    frame(event, Some(id), data)
}

/// A comment block, `: {text}\n\n`: ignored by decoders, it keeps idle
/// connections (and the proxies on the way) from timing out. Each line of a
/// multi-line `text` becomes its own comment line.
pub fn encode_comment(text: &str) -> Bytes {
    let mut out = String::with_capacity(text.len().saturating_add(4));
    for_each_line(text, |line| {
        out.push_str(": ");
        out.push_str(line);
        out.push('\n');
    });
    out.push('\n');
    Bytes::from(out)
}

fn frame(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let mut out = Vec::with_capacity(event.len().saturating_add(data.len()).saturating_add(32));
    write_head(&mut out, event, id);
    let mut first = true;
    for_each_line(data, |line| {
        if !first {
            out.extend_from_slice(b"\ndata: ");
        }
        first = false;
        out.extend_from_slice(line.as_bytes());
    });
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Writes `event: {event}\n`, the `id` line if any, and `data: `, leaving
/// the data and the frame's end to the caller.
fn write_head(out: &mut Vec<u8>, event: &str, id: Option<u64>) {
    out.extend_from_slice(b"event: ");
    if find_line_end(event.as_bytes()).is_some() {
        out.extend(event.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    } else {
        out.extend_from_slice(event.as_bytes());
    }
    out.push(b'\n');
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    out.extend_from_slice(b"data: ");
}

/// Frames `value`'s JSON as event `event`, serialising it straight into the
/// frame: the same bytes as [`encode`] of `serde_json::to_string(value)`,
/// without building the JSON text separately and copying it.
///
/// Compact JSON never holds a raw line break (JSON escapes control
/// characters inside strings, and the compact writer adds no whitespace), so
/// the text is always a single `data` line. Should serialising fail, the
/// frame carries `{}` (and the receiver refuses it as malformed).
pub fn encode_json<T: serde::Serialize + ?Sized>(event: &str, value: &T) -> Bytes {
    encode_json_sized(event, value, 0)
}

/// Like [`encode_json`], reserving room for `expected` bytes of JSON at
/// once, so that a large frame is not grown by repeated copying.
pub fn encode_json_sized<T: serde::Serialize + ?Sized>(
    event: &str,
    value: &T,
    expected: usize,
) -> Bytes {
    encode_json_with(event, expected, |out| {
        let start = out.len();
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
    })
}

/// Frames JSON that `write` appends to the buffer it is given (about
/// `expected` bytes of it), as [`encode_json`] does: one `data` line.
///
/// JSON holding a raw line break (which no JSON writer produces) still
/// gives a correct frame, split into `data` lines like [`encode`] does.
pub fn encode_json_with(event: &str, expected: usize, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(event.len().saturating_add(expected).saturating_add(32));
    write_head(&mut out, event, None);
    let data_start = out.len();
    write(&mut out);
    if find_line_end(out.get(data_start..).unwrap_or_default()).is_some() {
        let data = String::from_utf8_lossy(out.get(data_start..).unwrap_or_default()).into_owned();
        return encode(event, &data);
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The position of the first `\r` or `\n` in `bytes`.
///
/// Frames of forwarded messages are single lines tens of kilobytes long,
/// so both the encoder and the decoder spend their time looking for line
/// ends; this looks at eight bytes per step instead of one.
pub(crate) fn find_line_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const LF: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const CR: u64 = u64::from_ne_bytes([b'\r'; 8]);
    // Sets the high bit of the bytes of `x` that are zero (and possibly of
    // bytes above a zero one, which is why the word is rescanned bytewise).
    fn zero_bytes(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGHS
    }
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0usize;
    for word in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let v = u64::from_ne_bytes(eight);
        if zero_bytes(v ^ LF) | zero_bytes(v ^ CR) != 0 {
            return word
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| offset.saturating_add(i));
        }
        offset = offset.saturating_add(8);
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|i| offset.saturating_add(i))
}

/// Calls `f` with each line of `text`, split at `\r\n`, `\r` and `\n`: the
/// line ends a decoder recognises.
fn for_each_line(text: &str, mut f: impl FnMut(&str)) {
    let mut rest = text;
    while let Some(end) = find_line_end(rest.as_bytes()) {
        let (line, tail) = rest.split_at(end);
        f(line);
        // The line end is one ASCII byte (two for `\r\n`): still a char
        // boundary after it.
        let skip = if tail.starts_with("\r\n") { 2 } else { 1 };
        rest = tail.get(skip..).unwrap_or_default();
    }
    f(rest);
}

/// The fields of the frame being assembled.
#[derive(Debug, Default)]
struct Partial {
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    /// Bytes of this frame's complete lines so far, line ends not counted.
    line_bytes: usize,
}

/// An incremental SSE parser with a size limit.
///
/// Feed bytes with [`push`](Self::push) in chunks of any size, split
/// anywhere (inside a UTF-8 sequence or between `\r` and `\n` included),
/// then call [`next_frame`](Self::next_frame) until it returns `None`. The
/// result does not depend on where the chunks were split.
///
/// Memory stays within `max_frame_bytes` plus one chunk as long as frames
/// are taken out after every push: a frame's size is the bytes of its lines,
/// line ends not counted, and a frame or line growing past the limit is an
/// error. Scanning resumes where it stopped, so many tiny chunks cost no more
/// than one large one.
///
/// ```
/// use mqtt_cluster_core::wire::sse::{encode_with_id, SseDecoder};
///
/// let bytes = encode_with_id("forward", 7, "{\"topic\":\"a/b\"}");
/// let mut decoder = SseDecoder::new(64 * 1024);
/// let (head, tail) = bytes.split_at(10);
///
/// decoder.push(head).unwrap();
/// assert!(decoder.next_frame().is_none(), "not complete yet");
///
/// decoder.push(tail).unwrap();
/// let frame = decoder.next_frame().unwrap().unwrap();
/// assert_eq!(frame.event, "forward");
/// assert_eq!(frame.id.as_deref(), Some("7"));
/// assert_eq!(frame.data, "{\"topic\":\"a/b\"}");
/// assert!(decoder.next_frame().is_none());
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// First byte of `buf` not yet consumed as part of a line.
    start: usize,
    /// `buf[start..scan]` holds no line end: the next search starts at `scan`.
    scan: usize,
    max_frame_bytes: usize,
    /// Nothing consumed yet, so a byte-order mark may still be arriving.
    at_stream_start: bool,
    /// The last line ended with `\r`; a `\n` right after it belongs to it.
    after_cr: bool,
    partial: Partial,
    last_event_id: String,
    retry: Option<u64>,
    /// A line is known to exceed the limit; the error is due at the next
    /// `next_frame`.
    overflowed: bool,
    failed: Option<SseError>,
}

impl SseDecoder {
    /// A decoder refusing frames larger than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            start: 0,
            scan: 0,
            max_frame_bytes,
            at_stream_start: true,
            after_cr: false,
            partial: Partial::default(),
            last_event_id: String::new(),
            retry: None,
            overflowed: false,
            failed: None,
        }
    }

    /// Appends received bytes. Take frames out with
    /// [`next_frame`](Self::next_frame) afterwards.
    ///
    /// Fails, dropping the bytes, once the decoder has reported an error.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.overflowed {
            return Ok(());
        }
        let unscanned_before = self.scan < self.buf.len();
        let ends_a_line = find_line_end(chunk).is_some();
        if !self.at_stream_start && !unscanned_before && !ends_a_line {
            // Everything held plus this chunk is one unfinished line: if
            // that is already too long, the error is certain, so do not
            // store the bytes only to refuse them later.
            let line = self.held().saturating_add(chunk.len());
            if self.partial.line_bytes.saturating_add(line) > self.max_frame_bytes {
                self.overflowed = true;
                self.release();
                return Ok(());
            }
        }
        self.compact(chunk.len());
        self.buf.extend_from_slice(chunk);
        if !unscanned_before && !ends_a_line {
            self.scan = self.buf.len();
        }
        Ok(())
    }

    /// The next complete frame, `None` when more bytes are needed.
    ///
    /// An error is returned once; afterwards the decoder yields `None` and
    /// refuses further input.
    pub fn next_frame(&mut self) -> Option<Result<SseFrame, SseError>> {
        if self.failed.is_some() {
            return None;
        }
        if self.overflowed {
            return Some(Err(self.fail(SseError::FrameTooLarge {
                limit: self.max_frame_bytes,
            })));
        }
        loop {
            if self.at_stream_start && !self.skip_bom() {
                return None;
            }
            if self.after_cr {
                match self.buf.get(self.start) {
                    None => return None,
                    Some(b'\n') => {
                        self.start = self.start.saturating_add(1);
                        self.scan = self.scan.max(self.start);
                    }
                    Some(_) => {}
                }
                self.after_cr = false;
            }
            let unscanned = self.buf.get(self.scan..).unwrap_or_default();
            let Some(offset) = find_line_end(unscanned) else {
                self.scan = self.buf.len();
                let line = self.held();
                if self.partial.line_bytes.saturating_add(line) > self.max_frame_bytes {
                    return Some(Err(self.fail(SseError::FrameTooLarge {
                        limit: self.max_frame_bytes,
                    })));
                }
                return None;
            };
            let end = self.scan.saturating_add(offset);
            let line = self.buf.get(self.start..end).unwrap_or_default();
            let frame_bytes = self.partial.line_bytes.saturating_add(line.len());
            if frame_bytes > self.max_frame_bytes {
                return Some(Err(self.fail(SseError::FrameTooLarge {
                    limit: self.max_frame_bytes,
                })));
            }
            let Ok(line) = std::str::from_utf8(line) else {
                return Some(Err(self.fail(SseError::InvalidUtf8)));
            };
            self.partial.line_bytes = frame_bytes;
            let dispatched = process_line(
                &mut self.partial,
                &mut self.last_event_id,
                &mut self.retry,
                line,
            );
            self.after_cr = self.buf.get(end) == Some(&b'\r');
            self.start = end.saturating_add(1);
            self.scan = self.start;
            if let Some(frame) = dispatched {
                return Some(Ok(frame));
            }
        }
    }

    /// Bytes held: received but not yet consumed, plus the fields of the
    /// frame being assembled.
    pub fn buffered(&self) -> usize {
        let p = &self.partial;
        self.held()
            .saturating_add(p.event.len())
            .saturating_add(p.data.len())
            .saturating_add(p.id.as_ref().map_or(0, String::len))
    }

    /// The id of the last dispatched frame that had one (or that set it to
    /// empty), as the SSE standard keeps it across frames: what a reconnecting
    /// client would send as `Last-Event-ID`. Empty when none.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server asked for with a `retry` field, in
    /// milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Received bytes not yet consumed as lines.
    fn held(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// Skips a byte-order mark at the very start of the stream. `false` while
    /// too few bytes have arrived to tell.
    fn skip_bom(&mut self) -> bool {
        let held = self.buf.get(self.start..).unwrap_or_default();
        let n = held.len().min(BOM.len());
        if held.get(..n) != BOM.get(..n) {
            self.at_stream_start = false;
        } else if n == BOM.len() {
            self.start = self.start.saturating_add(n);
            self.scan = self.scan.max(self.start);
            self.at_stream_start = false;
        }
        !self.at_stream_start
    }

    /// Moves unconsumed bytes to the front when that is cheaper than what
    /// would happen otherwise: when at least as many bytes are consumed as
    /// remain (so each byte moves O(1) times), or when the buffer would
    /// reallocate for `incoming` anyway.
    fn compact(&mut self, incoming: usize) {
        if self.start == 0 {
            return;
        }
        let remaining = self.held();
        let would_grow = self.buf.len().saturating_add(incoming) > self.buf.capacity();
        if self.start >= remaining || would_grow {
            self.buf.drain(..self.start);
            self.scan = self.scan.saturating_sub(self.start);
            self.start = 0;
        }
    }

    fn release(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.scan = 0;
        self.partial = Partial::default();
    }

    fn fail(&mut self, error: SseError) -> SseError {
        self.release();
        self.overflowed = false;
        self.failed = Some(error.clone());
        error
    }
}

/// Applies one complete line; returns the frame a blank line dispatches.
fn process_line(
    partial: &mut Partial,
    last_event_id: &mut String,
    retry: &mut Option<u64>,
    line: &str,
) -> Option<SseFrame> {
    if line.is_empty() {
        let done = std::mem::take(partial);
        if let Some(id) = &done.id {
            last_event_id.clone_from(id);
        }
        if !done.has_data {
            return None;
        }
        let event = if done.event.is_empty() {
            String::from("message")
        } else {
            done.event
        };
        return Some(SseFrame {
            event,
            id: done.id,
            data: done.data,
        });
    }
    if line.starts_with(':') {
        return None;
    }
    let (field, value) = match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    };
    match field {
        "event" => value.clone_into(&mut partial.event),
        "data" => {
            if partial.has_data {
                partial.data.push('\n');
            }
            partial.data.push_str(value);
            partial.has_data = true;
        }
        // An id with NUL is ignored because browsers could not send it back
        // in a `Last-Event-ID` header.
        "id" if !value.contains('\0') => partial.id = Some(value.to_owned()),
        "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            if let Ok(ms) = value.parse() {
                *retry = Some(ms);
            }
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: usize = 1 << 20;

    fn frame(event: &str, id: Option<&str>, data: &str) -> SseFrame {
        SseFrame {
            event: event.into(),
            id: id.map(Into::into),
            data: data.into(),
        }
    }

    /// Everything a decoder yields when fed `chunks`, draining after each.
    fn decode_chunks<'a>(
        limit: usize,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Result<SseFrame, SseError>> {
        let mut decoder = SseDecoder::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            let _ = decoder.push(chunk);
            while let Some(result) = decoder.next_frame() {
                out.push(result);
            }
        }
        out
    }

    fn decode(input: &[u8]) -> Vec<Result<SseFrame, SseError>> {
        decode_chunks(BIG, [input])
    }

    fn frames(input: &str) -> Vec<SseFrame> {
        decode(input.as_bytes())
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn encode_writes_event_then_one_data_line_per_line() {
        assert_eq!(
            &encode("forward", "{}")[..],
            b"event: forward\ndata: {}\n\n"
        );
        assert_eq!(
            &encode("e", "a\nb\r\nc\rd")[..],
            b"event: e\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(&encode("e", "")[..], b"event: e\ndata: \n\n");
        assert_eq!(&encode("e", "x\n")[..], b"event: e\ndata: x\ndata: \n\n");
    }

    #[test]
    fn encode_removes_line_breaks_from_the_event_name() {
        assert_eq!(&encode("a\r\nb\nc", "x")[..], b"event: abc\ndata: x\n\n");
    }

    #[test]
    fn encode_with_id_adds_an_id_line() {
        assert_eq!(
            &encode_with_id("e", 42, "x")[..],
            b"event: e\nid: 42\ndata: x\n\n"
        );
    }

    #[test]
    fn encode_comment_is_a_comment_block() {
        assert_eq!(&encode_comment("keepalive")[..], b": keepalive\n\n");
        assert_eq!(&encode_comment("a\nb")[..], b": a\n: b\n\n");
        assert!(frames(std::str::from_utf8(&encode_comment("x\ny")).unwrap()).is_empty());
    }

    #[test]
    fn all_three_line_ends_are_recognised() {
        let expected = vec![frame("e", None, "a\nb")];
        assert_eq!(frames("event: e\ndata: a\ndata: b\n\n"), expected);
        assert_eq!(frames("event: e\r\ndata: a\r\ndata: b\r\n\r\n"), expected);
        assert_eq!(frames("event: e\rdata: a\rdata: b\r\r"), expected);
        assert_eq!(frames("event: e\r\ndata: a\rdata: b\n\r\n"), expected);
    }

    #[test]
    fn cr_at_the_end_of_a_chunk_pairs_with_lf_in_the_next() {
        let chunks: [&[u8]; 4] = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\ndata: c\n\n"];
        assert_eq!(
            decode_chunks(BIG, chunks),
            vec![
                Ok(frame("message", None, "a\nb")),
                Ok(frame("message", None, "c"))
            ]
        );
        // A CR followed by anything else is still a line end on its own.
        let chunks: [&[u8]; 3] = [b"data: a\r", b"\r", b"data: b\n\n"];
        assert_eq!(
            decode_chunks(BIG, chunks),
            vec![
                Ok(frame("message", None, "a")),
                Ok(frame("message", None, "b"))
            ]
        );
    }

    #[test]
    fn blank_line_dispatches_and_stream_end_does_not() {
        assert_eq!(frames("data: a\n"), vec![]);
        assert_eq!(
            frames("data: a\n\ndata: b"),
            vec![frame("message", None, "a")]
        );
    }

    #[test]
    fn comment_lines_are_ignored() {
        assert_eq!(
            frames(": hello\ndata: a\n:data: b\n\n"),
            vec![frame("message", None, "a")]
        );
    }

    #[test]
    fn only_one_space_after_the_colon_is_removed() {
        assert_eq!(frames("data:a\n\n"), vec![frame("message", None, "a")]);
        assert_eq!(frames("data:  a \n\n"), vec![frame("message", None, " a ")]);
        assert_eq!(
            frames("data: a: b\n\n"),
            vec![frame("message", None, "a: b")]
        );
    }

    #[test]
    fn line_without_colon_is_a_field_with_empty_value() {
        assert_eq!(frames("data\ndata\n\n"), vec![frame("message", None, "\n")]);
        assert_eq!(frames("data\n\n"), vec![frame("message", None, "")]);
    }

    #[test]
    fn event_defaults_to_message_and_resets_after_each_frame() {
        assert_eq!(
            frames("event: a\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\nevent: x\nevent: y\ndata: 4\n\n"),
            vec![
                frame("a", None, "1"),
                frame("message", None, "2"),
                frame("message", None, "3"),
                frame("y", None, "4"),
            ]
        );
    }

    #[test]
    fn frames_without_data_are_not_dispatched_and_reset_the_event() {
        assert_eq!(
            frames("event: a\n\ndata: 1\n\nevent: b\nid: 3\n\n"),
            vec![frame("message", None, "1")]
        );
    }

    #[test]
    fn id_belongs_to_its_frame_and_persists_as_last_event_id() {
        let mut d = SseDecoder::new(BIG);
        d.push(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\nid: bad\0id\ndata: c\n\nid\ndata: d\n\n")
            .unwrap();
        assert_eq!(d.next_frame(), Some(Ok(frame("message", Some("1"), "a"))));
        assert_eq!(d.last_event_id(), "1");
        assert_eq!(d.next_frame(), Some(Ok(frame("message", None, "b"))));
        assert_eq!(d.last_event_id(), "1");
        // `id: 2` with no data is not dispatched but still sets the last id; an
        // id with NUL is ignored.
        assert_eq!(d.next_frame(), Some(Ok(frame("message", None, "c"))));
        assert_eq!(d.last_event_id(), "2");
        // An empty id resets it.
        assert_eq!(d.next_frame(), Some(Ok(frame("message", Some(""), "d"))));
        assert_eq!(d.last_event_id(), "");
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn retry_takes_only_plain_digits() {
        let mut d = SseDecoder::new(BIG);
        d.push(b"retry: 1500\n\nretry: 12a\n\nretry: -1\n\nretry:\n\nretry: 99999999999999999999999\n\n")
            .unwrap();
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.retry(), Some(1500));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            frames("foo: bar\nData: x\ndata: a\nEVENT: b\n\n"),
            vec![frame("message", None, "a")]
        );
    }

    #[test]
    fn leading_bom_is_skipped_even_when_split() {
        let expected = vec![Ok(frame("message", None, "a"))];
        assert_eq!(decode(b"\xEF\xBB\xBFdata: a\n\n"), expected);
        let chunks: [&[u8]; 4] = [b"\xEF", b"\xBB", b"\xBFdata: a\n", b"\n"];
        assert_eq!(decode_chunks(BIG, chunks), expected);
    }

    #[test]
    fn only_the_first_bom_is_skipped() {
        // The second one makes the field name "\u{feff}data", which is unknown.
        assert_eq!(frames("\u{feff}\u{feff}data: a\n\n"), vec![]);
        assert_eq!(
            frames("data: a\n\n\u{feff}data: b\n\n"),
            vec![frame("message", None, "a")]
        );
        assert_eq!(
            frames("data: \u{feff}a\n\n"),
            vec![frame("message", None, "\u{feff}a")]
        );
    }

    #[test]
    fn utf8_split_across_chunks_is_reassembled() {
        let bytes = "data: grüße 🦀\n\n".as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            decode_chunks(BIG, chunks),
            vec![Ok(frame("message", None, "grüße 🦀"))]
        );
    }

    #[test]
    fn invalid_utf8_fails_once_and_then_stays_failed() {
        let mut d = SseDecoder::new(BIG);
        d.push(b"data: ok\n\ndata: \xFF\n\ndata: later\n\n")
            .unwrap();
        assert_eq!(d.next_frame(), Some(Ok(frame("message", None, "ok"))));
        assert_eq!(d.next_frame(), Some(Err(SseError::InvalidUtf8)));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.push(b"data: x\n\n"), Err(SseError::InvalidUtf8));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn frame_at_the_limit_passes_and_one_byte_more_fails() {
        // Line bytes, line ends not counted: "data: 123" + "data: 45" = 17.
        let input = b"data: 123\ndata: 45\n\n";
        assert_eq!(decode_chunks(17, [&input[..]]).len(), 1);
        assert!(decode_chunks(17, [&input[..]])[0].is_ok());
        assert_eq!(
            decode_chunks(16, [&input[..]]),
            vec![Err(SseError::FrameTooLarge { limit: 16 })]
        );
    }

    #[test]
    fn many_small_lines_count_towards_the_frame() {
        let input = "data: x\n".repeat(100);
        assert_eq!(
            decode_chunks(500, [input.as_bytes()]),
            vec![Err(SseError::FrameTooLarge { limit: 500 })]
        );
        // The same lines split into frames are fine.
        let input = "data: x\n\n".repeat(100);
        assert_eq!(decode_chunks(500, [input.as_bytes()]).len(), 100);
    }

    #[test]
    fn endless_line_is_refused_without_holding_more_than_limit_plus_a_chunk() {
        let limit = 1000;
        let mut d = SseDecoder::new(limit);
        d.push(b"data: ").unwrap();
        let chunk = [b'x'; 64];
        let mut error = None;
        for _ in 0..100 {
            if d.push(&chunk).is_err() {
                break;
            }
            assert!(d.buffered() <= limit + chunk.len());
            if let Some(result) = d.next_frame() {
                error = Some(result);
            }
            assert!(d.buffered() <= limit);
        }
        assert_eq!(error, Some(Err(SseError::FrameTooLarge { limit })));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn endless_line_is_refused_even_if_frames_are_not_taken_out() {
        let limit = 100;
        let mut d = SseDecoder::new(limit);
        d.push(b"data: ").unwrap();
        let _ = d.next_frame();
        for _ in 0..1000 {
            d.push(&[b'y'; 10]).unwrap();
            assert!(d.buffered() <= limit + 10);
        }
        assert_eq!(d.next_frame(), Some(Err(SseError::FrameTooLarge { limit })));
    }

    #[test]
    fn buffered_counts_unconsumed_bytes_and_the_partial_frame() {
        let mut d = SseDecoder::new(BIG);
        assert_eq!(d.buffered(), 0);
        d.push(b"event: ab\ndata: xyz\ndat").unwrap();
        assert_eq!(d.buffered(), 23);
        assert_eq!(d.next_frame(), None);
        // "ab" + "xyz" + the unfinished "dat".
        assert_eq!(d.buffered(), 2 + 3 + 3);
        d.push(b"a: 1\n\n").unwrap();
        assert_eq!(d.next_frame(), Some(Ok(frame("ab", None, "xyz\n1"))));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn one_byte_chunks_of_a_long_stream_decode() {
        let mut input = Vec::new();
        for i in 0..2000 {
            input.extend_from_slice(&encode_with_id("forward", i, &"z".repeat(i as usize % 50)));
        }
        let results = decode_chunks(BIG, input.chunks(1));
        assert_eq!(results.len(), 2000);
        assert!(results.iter().all(Result::is_ok));
    }

    /// What a frame looks like after the trip: SSE cannot carry CR in data or
    /// line breaks in event names.
    fn expected_frame(event: &str, id: Option<u64>, data: &str) -> SseFrame {
        let event: String = event.chars().filter(|&c| c != '\r' && c != '\n').collect();
        SseFrame {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            id: id.map(|i| i.to_string()),
            data: data.replace("\r\n", "\n").replace('\r', "\n"),
        }
    }

    fn split_at_points<'a>(bytes: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }

    /// Text with plenty of line breaks, colons, spaces and multi-byte characters.
    fn sse_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z: \r\n\u{e9}\u{1f980}\u{feff}]{0,30}",]
    }

    /// Byte soup built from the tokens that matter to the parser.
    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"event".to_vec()),
            Just(b"id".to_vec()),
            Just(b"retry".to_vec()),
            Just(b":".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(BOM.to_vec()),
            Just("é🦀".as_bytes().to_vec()),
            Just(b"\xF0\x9F".to_vec()),
            Just(b"\0".to_vec()),
            "[a-z0-9]{1,8}".prop_map(String::into_bytes),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
    }

    #[test]
    fn json_frames_are_what_encode_makes_of_the_json_text() {
        let value = serde_json::json!({"a": "x\ny\r", "b": [1, 2], "c": "é\"\\"});
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(encode_json("messages", &value), encode("messages", &text));
        let written = encode_json_with("e\nv", 0, |out| out.extend_from_slice(text.as_bytes()));
        assert_eq!(written, encode("e\nv", &text));
        // Should a writer ever emit a raw line break, the frame is still right.
        let broken = encode_json_with("e", 0, |out| out.extend_from_slice(b"{\n}"));
        assert_eq!(&broken[..], b"event: e\ndata: {\ndata: }\n\n");
    }

    proptest! {
        #[test]
        fn line_ends_are_found_where_a_plain_scan_finds_them(bytes in any::<Vec<u8>>()) {
            let plain = bytes.iter().position(|&b| b == b'\n' || b == b'\r');
            prop_assert_eq!(find_line_end(&bytes), plain);
        }

        #[test]
        fn encoded_frames_survive_any_chunking(
            items in proptest::collection::vec(
                (sse_text(), proptest::option::of(any::<u64>()), sse_text(), proptest::option::of(sse_text())),
                0..8,
            ),
            bom in any::<bool>(),
            points in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
            let mut expected = Vec::new();
            for (event, id, data, comment) in &items {
                if let Some(comment) = comment {
                    bytes.extend_from_slice(&encode_comment(comment));
                }
                match id {
                    Some(id) => bytes.extend_from_slice(&encode_with_id(event, *id, data)),
                    None => bytes.extend_from_slice(&encode(event, data)),
                }
                expected.push(Ok(expected_frame(event, *id, data)));
            }
            prop_assert_eq!(&decode_chunks(BIG, split_at_points(&bytes, &points)), &expected);
            prop_assert_eq!(&decode_chunks(BIG, bytes.chunks(1)), &expected);
        }

        #[test]
        fn arbitrary_bytes_decode_the_same_however_split(
            bytes in prop_oneof![sse_bytes(), proptest::collection::vec(any::<u8>(), 0..200)],
            points in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            limit in prop_oneof![0usize..64, Just(BIG)],
        ) {
            let whole = decode_chunks(limit, [bytes.as_slice()]);
            prop_assert_eq!(&decode_chunks(limit, split_at_points(&bytes, &points)), &whole);
            prop_assert_eq!(&decode_chunks(limit, bytes.chunks(1)), &whole);
            // Errors end the output.
            if let Some(i) = whole.iter().position(Result::is_err) {
                prop_assert_eq!(i + 1, whole.len());
            }
        }

        #[test]
        fn memory_stays_within_the_limit_after_draining(
            bytes in sse_bytes(),
            points in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            limit in 0usize..64,
        ) {
            let mut d = SseDecoder::new(limit);
            for chunk in split_at_points(&bytes, &points) {
                let _ = d.push(chunk);
                prop_assert!(d.buffered() <= limit.max(BOM.len()) + chunk.len());
                while d.next_frame().is_some() {}
                // Up to two bytes of a possible BOM may wait before the limit applies.
                prop_assert!(d.buffered() <= limit.max(BOM.len() - 1));
            }
        }
    }
}
