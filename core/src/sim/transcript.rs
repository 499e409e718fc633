//! The record of a run: one line of text per event, hashed as it is written.
//!
//! A line is `{simulated ms} {what happened}`; the hash is SHA-256 over all
//! lines, each followed by `\n`. Lines are kept only when asked for, the
//! hash always. The frequent lines (timers, requests, responses, stream
//! bytes) are assembled from [`Part`]s rather than through `format!`: the
//! text is the same, and a line is written for every event, so formatting
//! machinery would be a sizeable share of a run.

use std::fmt;
use std::io::Write as _;

use sha2::{Digest, Sha256};

use crate::auth::Decimal;
use crate::wire::messages::Qos;

/// A piece of a transcript line.
#[derive(Clone, Copy, Debug)]
pub(super) enum Part<'a> {
    /// Text, as is.
    Text(&'a str),
    /// A number, in decimal.
    Number(u64),
}

/// The lines of a run and their running hash.
pub(super) struct Transcript {
    hasher: Sha256,
    lines: Option<Vec<String>>,
    /// The line being written, kept to spare an allocation per event. Bytes
    /// rather than a `String`: the parts are appended with plain copies,
    /// and every part is text, so the line is always UTF-8.
    line: Vec<u8>,
}

impl Transcript {
    /// An empty transcript that keeps only the hash.
    pub(super) fn new() -> Self {
        Transcript {
            hasher: Sha256::new(),
            lines: None,
            line: Vec::new(),
        }
    }

    /// Keeps every line from now on, besides hashing it.
    pub(super) fn keep_lines(&mut self) {
        self.lines.get_or_insert_with(Vec::new);
    }

    /// Writes the line `{at_ms} {parts…}`.
    pub(super) fn write(&mut self, at_ms: u64, parts: &[Part<'_>]) {
        self.line.clear();
        push_decimal(&mut self.line, at_ms);
        self.line.push(b' ');
        for part in parts {
            match part {
                Part::Text(text) => self.line.extend_from_slice(text.as_bytes()),
                Part::Number(n) => push_decimal(&mut self.line, *n),
            }
        }
        self.finish_line();
    }

    /// Writes the line `{at_ms} {text}`, for the rare lines that need
    /// `Debug` or other formatting.
    pub(super) fn write_formatted(&mut self, at_ms: u64, text: fmt::Arguments<'_>) {
        self.line.clear();
        // Writing into a `Vec` cannot fail.
        let _ = write!(self.line, "{at_ms} {text}");
        self.finish_line();
    }

    /// Lowercase hex of the hash of every line so far.
    pub(super) fn hash(&self) -> String {
        crate::auth::hex(&self.hasher.clone().finalize())
    }

    /// Every line so far, if they are kept.
    pub(super) fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }

    fn finish_line(&mut self) {
        self.hasher.update(&self.line);
        self.hasher.update(b"\n");
        if let Some(lines) = &mut self.lines {
            lines.push(String::from_utf8_lossy(&self.line).into_owned());
        }
    }
}

/// Whether `{:?}` of `text` is `text` in quotes: true for printable ASCII
/// without quotes or backslashes, which is what scenario topics and
/// payloads nearly always are.
pub(super) fn debug_is_verbatim(text: &str) -> bool {
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// `{:?}` of `qos`.
pub(super) fn qos_name(qos: Qos) -> &'static str {
    match qos {
        Qos::AtMostOnce => "AtMostOnce",
        Qos::AtLeastOnce => "AtLeastOnce",
        Qos::ExactlyOnce => "ExactlyOnce",
    }
}

/// Appends `n` in decimal, as `Display` would.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(Decimal::default().of(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_write_the_same_text_and_hash_as_formatting() {
        let mut parts = Transcript::new();
        parts.keep_lines();
        let mut formatted = Transcript::new();
        formatted.keep_lines();
        for (at, n) in [(0, 0), (7, 9), (1_000, 10), (u64::MAX, u64::MAX)] {
            parts.write(
                at,
                &[
                    Part::Text("response w1 #"),
                    Part::Number(n),
                    Part::Text(" 200"),
                ],
            );
            formatted.write_formatted(at, format_args!("response w1 #{n} 200"));
        }
        assert_eq!(parts.lines(), formatted.lines());
        assert_eq!(parts.hash(), formatted.hash());
        assert_eq!(
            parts.lines().and_then(|l| l.last()).map(String::as_str),
            Some("18446744073709551615 response w1 #18446744073709551615 200")
        );
    }

    #[test]
    fn verbatim_text_is_what_debug_quotes_unchanged() {
        for text in ["", "room/1/t", "x x", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"] {
            assert!(debug_is_verbatim(text), "{text}");
            assert_eq!(format!("{text:?}"), format!("\"{text}\""));
        }
        for text in ["a\"b", "a\\b", "tab\there", "new\nline", "é", "\u{7f}"] {
            assert!(!debug_is_verbatim(text), "{text:?}");
        }
        for qos in [Qos::AtMostOnce, Qos::AtLeastOnce, Qos::ExactlyOnce] {
            assert_eq!(qos_name(qos), format!("{qos:?}"));
        }
    }

    #[test]
    fn the_hash_covers_line_boundaries() {
        let mut one = Transcript::new();
        one.write(1, &[Part::Text("ab")]);
        let mut two = Transcript::new();
        two.write(1, &[Part::Text("a")]);
        two.write(1, &[Part::Text("b")]);
        assert_ne!(one.hash(), two.hash());
    }
}
