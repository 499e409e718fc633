//! The SSE decoder fed arbitrary bytes in arbitrary chunks: the frames and
//! the error must be those of the whole input fed at once, an error must
//! end the output, and memory must stay within the limit plus one chunk.

use arbitrary::{Arbitrary, Unstructured};
use mqtt_cluster_core::wire::sse::{SseDecoder, SseError, SseFrame};

const BIG: usize = 1 << 20;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A piece of input that matters to the parser.
#[derive(Arbitrary, Debug)]
enum Token {
    Data,
    Event,
    Id,
    Retry,
    Colon,
    Space,
    Cr,
    Lf,
    CrLf,
    LfLf,
    Bom,
    Utf8,
    HalfUtf8,
    Nul,
    Word(u8),
    Byte(u8),
}

impl Token {
    fn bytes(&self, out: &mut Vec<u8>) {
        let b: &[u8] = match self {
            Token::Data => b"data",
            Token::Event => b"event",
            Token::Id => b"id",
            Token::Retry => b"retry",
            Token::Colon => b":",
            Token::Space => b" ",
            Token::Cr => b"\r",
            Token::Lf => b"\n",
            Token::CrLf => b"\r\n",
            Token::LfLf => b"\n\n",
            Token::Bom => BOM,
            Token::Utf8 => "é🦀".as_bytes(),
            Token::HalfUtf8 => b"\xF0\x9F",
            Token::Nul => b"\0",
            Token::Word(n) => {
                for i in 0..(n % 8 + 1) {
                    out.push(b'a' + (n.wrapping_add(i) % 26));
                }
                return;
            }
            Token::Byte(b) => {
                out.push(*b);
                return;
            }
        };
        out.extend_from_slice(b);
    }
}

#[derive(Arbitrary, Debug)]
enum Bytes {
    Raw(Vec<u8>),
    Tokens(Vec<Token>),
}

#[derive(Arbitrary, Debug)]
enum Limit {
    Small(u8),
    Big,
}

#[derive(Arbitrary, Debug)]
struct Input {
    limit: Limit,
    bytes: Bytes,
    cuts: Vec<u16>,
}

type Output = Vec<Result<SseFrame, SseError>>;

fn decode<'a>(limit: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Output {
    let mut decoder = SseDecoder::new(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        let _ = decoder.push(chunk);
        assert!(
            decoder.buffered() <= limit.max(BOM.len()).saturating_add(chunk.len()),
            "decoder holds {} bytes after a push of {} with limit {limit}",
            decoder.buffered(),
            chunk.len()
        );
        while let Some(result) = decoder.next_frame() {
            out.push(result);
        }
        assert!(
            decoder.buffered() <= limit.max(BOM.len() - 1),
            "decoder holds {} bytes after draining, limit {limit}",
            decoder.buffered()
        );
    }
    out
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let limit = match input.limit {
        Limit::Small(n) => usize::from(n),
        Limit::Big => BIG,
    };
    let bytes = match &input.bytes {
        Bytes::Raw(b) => b.clone(),
        Bytes::Tokens(tokens) => {
            let mut out = Vec::new();
            for t in tokens {
                t.bytes(&mut out);
            }
            out
        }
    };
    let whole = decode(limit, [bytes.as_slice()]);
    if let Some(i) = whole.iter().position(Result::is_err) {
        assert_eq!(i + 1, whole.len(), "output continues after an error");
    }
    let split = decode(limit, crate::shapes::split(&bytes, &input.cuts));
    assert_eq!(split, whole, "chunked decoding differs from whole decoding");
    if bytes.len() <= 4096 {
        let single = decode(limit, bytes.chunks(1));
        assert_eq!(single, whole, "byte-by-byte decoding differs from whole");
    }
}
