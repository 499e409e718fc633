//! Bodies: reading them with a hard size limit, and the response body of a
//! push stream that the driver feeds.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use mqtt_cluster_core::StreamId;
use tokio::sync::{mpsc, Notify};

/// A body read up to a limit.
pub(crate) enum Limited<B> {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// The first `limit + 1` bytes, and the unread rest. One byte over is
    /// enough for the core's size check to refuse it, and the rest is never
    /// held in memory.
    Overflow(Bytes, B),
}

/// Reads `body` but never holds more than `limit + 1` bytes of it.
pub(crate) async fn read_limited<B>(mut body: B, limit: usize) -> Result<Limited<B>, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue; // trailers carry nothing the protocol uses
        };
        if total + data.len() > limit {
            data.truncate(limit + 1 - total);
            chunks.push(data);
            return Ok(Limited::Overflow(concat(chunks), body));
        }
        total += data.len();
        chunks.push(data);
    }
    Ok(Limited::Complete(concat(chunks)))
}

fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        // The common case costs no copy.
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }
}

/// Reads and discards what is left of a refused request body, within bounds,
/// while the answer is written. A peer still sending when the connection
/// closes would otherwise get a reset instead of the answer.
pub(crate) fn drain_in_background<B>(mut body: B, max_bytes: usize, max_time: Duration)
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > max_bytes {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(max_time, drain).await;
    });
}

/// Served streams whose reader went away, for the driver to report with
/// `handle_stream_closed`.
///
/// Not a channel: the report is made from `Drop`, which cannot wait for
/// channel capacity, and this list can hold at most one entry per open
/// stream, so it is bounded by what the core already bounds.
#[derive(Debug, Default)]
pub(crate) struct ClosedStreams {
    ids: Mutex<Vec<StreamId>>,
    pub(crate) notify: Notify,
}

impl ClosedStreams {
    fn push(&self, id: StreamId) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.push(id);
        }
        self.notify.notify_one();
    }

    /// Everything reported since the last call.
    pub(crate) fn take(&self) -> Vec<StreamId> {
        self.ids
            .lock()
            .map(|mut ids| std::mem::take(&mut *ids))
            .unwrap_or_default()
    }
}

/// Tells the driver that a served stream is gone when its body is dropped:
/// the reader disconnected, the connection broke, or the stream ended.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    id: StreamId,
    closed: Arc<ClosedStreams>,
}

impl StreamGuard {
    pub(crate) fn new(id: StreamId, closed: Arc<ClosedStreams>) -> Self {
        StreamGuard { id, closed }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.closed.push(self.id);
    }
}

/// A response body: a whole one, or a push stream fed by the driver.
#[derive(Debug)]
pub(crate) enum OutBody {
    Full(Option<Bytes>),
    Stream {
        frames: mpsc::Receiver<Bytes>,
        _guard: StreamGuard,
    },
}

impl OutBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        OutBody::Full((!bytes.is_empty()).then_some(bytes))
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            OutBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream { frames, .. } => frames
                .poll_recv(cx)
                .map(|frame| frame.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            OutBody::Stream { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A body that arrives in the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(sizes: &[usize]) -> Chunks {
        Chunks(sizes.iter().map(|n| Bytes::from(vec![b'x'; *n])).collect())
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        match read_limited(chunks(&[3, 0, 2]), 5).await.unwrap() {
            Limited::Complete(b) => assert_eq!(&b[..], b"xxxxx"),
            Limited::Overflow(..) => panic!("within the limit"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_stops_one_byte_past_it_and_leaves_the_rest() {
        match read_limited(chunks(&[1000, 1000, 5000, 9]), 1024)
            .await
            .unwrap()
        {
            Limited::Overflow(b, rest) => {
                assert_eq!(b.len(), 1025);
                assert_eq!(rest.0.len(), 2, "later chunks stay unread");
            }
            Limited::Complete(_) => panic!("over the limit"),
        }
    }

    #[tokio::test]
    async fn a_dropped_stream_body_reports_its_stream_closed() {
        let closed = Arc::new(ClosedStreams::default());
        let (tx, rx) = mpsc::channel(1);
        let body = OutBody::Stream {
            frames: rx,
            _guard: StreamGuard::new(StreamId(7), closed.clone()),
        };
        drop(tx);
        drop(body);
        assert_eq!(closed.take(), vec![StreamId(7)]);
        assert!(closed.take().is_empty());
    }
}
