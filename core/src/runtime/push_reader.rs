//! A worker's push stream, from the runtime's side: which one is current,
//! and what the node hears of one that was given up.

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::id::RequestId;
use crate::node::{Node, TransportError};
use crate::time::Now;

/// The push stream a worker's runtime is reading, if any, with the
/// runtime's handle `H` on its reader (a task to abort, a flag to set).
///
/// A worker reads one push stream at a time. When the node asks for a new
/// one (a [`Transmit`](crate::Transmit) with `streaming` set), the old one
/// is given up: its reader is stopped, the node is told it ended (or, had
/// its head not arrived, that it was cancelled), and whatever its reader
/// still reports is ignored, so the node hears of each stream exactly once.
///
/// ```
/// use mqtt_cluster_core::runtime::PushReader;
/// let reader: PushReader<std::sync::Arc<std::sync::atomic::AtomicBool>> = PushReader::new();
/// assert!(reader.current().is_none());
/// ```
#[derive(Debug)]
pub struct PushReader<H> {
    current: Option<Current<H>>,
}

#[derive(Debug)]
struct Current<H> {
    id: RequestId,
    handle: H,
    /// The head has been passed to the node.
    head_seen: bool,
}

impl<H> Default for PushReader<H> {
    fn default() -> Self {
        PushReader { current: None }
    }
}

impl<H> PushReader<H> {
    /// No stream yet.
    pub fn new() -> Self {
        PushReader::default()
    }

    /// The current stream's request id.
    pub fn current(&self) -> Option<RequestId> {
        self.current.as_ref().map(|c| c.id)
    }

    /// A new stream `id` is being read through `handle`. The one it
    /// replaces, if any, is reported to `node` as over; its handle comes
    /// back for the runtime to stop its reader.
    pub fn open(&mut self, node: &mut Node, now: Now, id: RequestId, handle: H) -> Option<H> {
        let old = self.current.replace(Current {
            id,
            handle,
            head_seen: false,
        })?;
        if old.head_seen {
            node.handle_stream_end(now, old.id);
        } else {
            node.handle_response(now, old.id, Err(TransportError::Cancelled));
        }
        Some(old.handle)
    }

    /// The head of stream `id` arrived (or why it did not): passed to
    /// `node` if `id` is current, ignored if it was given up. A stream
    /// that did not open (no `200`) is over.
    pub fn head(
        &mut self,
        node: &mut Node,
        now: Now,
        id: RequestId,
        head: Result<Response<Bytes>, TransportError>,
    ) {
        let Some(current) = self.current.as_mut().filter(|c| c.id == id) else {
            return;
        };
        current.head_seen = true;
        if !head.as_ref().is_ok_and(|r| r.status() == StatusCode::OK) {
            self.current = None;
        }
        node.handle_response(now, id, head);
    }

    /// Bytes of stream `id`: passed to `node` if it is current.
    pub fn data(&self, node: &mut Node, now: Now, id: RequestId, data: &[u8]) {
        if self.current() == Some(id) {
            node.handle_stream_data(now, id, data);
        }
    }

    /// Stream `id` ended: passed to `node` if it is current.
    pub fn end(&mut self, node: &mut Node, now: Now, id: RequestId) {
        if self.current() == Some(id) {
            self.current = None;
            node.handle_stream_end(now, id);
        }
    }

    /// Gives up the current stream without telling the node (it is
    /// stopping); its handle comes back for the runtime to stop its
    /// reader.
    pub fn abandon(&mut self) -> Option<H> {
        self.current.take().map(|c| c.handle)
    }
}
