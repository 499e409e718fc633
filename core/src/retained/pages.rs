//! Cutting a retained set into bodies that each fit `maxBodySize`.
//!
//! A page is the JSON of a [`RetainedRequest`](crate::wire::retained::RetainedRequest)
//! holding whole entries. An entry is accepted into the set only if it fits
//! a page alone ([`page_budget`]), so greedy packing always succeeds: every
//! page holds at least one entry and stays within the budget, both as a
//! `POST /retained` body and as the data of a `retained` stream frame.

use bytes::Bytes;

use crate::wire::retained::RetainedEntry;

/// Bytes of a body that are not entries, with room to spare: the JSON
/// around the entries (`{"entries":[` and `]}`) and the SSE framing of a
/// stream frame (`event: retained`, `data: `, line ends).
pub const PAGE_ENVELOPE: usize = 64;

/// The most bytes of entries (commas included) one page carries for a node
/// whose bodies are limited to `max_body_size`.
pub fn page_budget(max_body_size: usize) -> usize {
    max_body_size.saturating_sub(PAGE_ENVELOPE)
}

/// The length of an entry's JSON.
pub(super) fn entry_len(entry: &RetainedEntry) -> usize {
    serde_json::to_vec(entry).map_or(usize::MAX, |v| v.len())
}

/// Packs entries, in the order given, into pages of at most a budget.
///
/// ```
/// use mqtt_cluster_core::retained::{page_budget, Pager, RetainedSet};
/// # use mqtt_cluster_core::{node::Message, Instant, NodeId};
/// let mut set = RetainedSet::new(NodeId::new("c1").unwrap(), 1, 100, 100);
/// for i in 0..50 {
///     let m = Message::new(&format!("t/{i}"), vec![b'x'; 300]).unwrap().retained();
///     set.publish(&m, page_budget(2048), Instant::ZERO).unwrap();
/// }
/// let pages = Pager::pages(set.entries(), page_budget(2048));
/// assert!(pages.len() > 1);
/// assert!(pages.iter().all(|p| p.len() <= 2048));
/// ```
#[derive(Debug)]
pub struct Pager {
    budget: usize,
    current: Vec<u8>,
    entries: usize,
    done: Vec<Bytes>,
}

impl Pager {
    /// A pager filling pages up to `budget` bytes of entries.
    pub fn new(budget: usize) -> Self {
        Pager {
            budget,
            current: Vec::new(),
            entries: 0,
            done: Vec::new(),
        }
    }

    /// Every page of `entries`, each a complete JSON body.
    pub fn pages(entries: impl IntoIterator<Item = RetainedEntry>, budget: usize) -> Vec<Bytes> {
        let mut pager = Pager::new(budget);
        for entry in entries {
            pager.push(&entry);
        }
        pager.finish()
    }

    /// Adds one entry; an entry larger than the budget on its own is left
    /// out (the set never holds one).
    pub fn push(&mut self, entry: &RetainedEntry) {
        let Ok(json) = serde_json::to_vec(entry) else {
            return;
        };
        if json.len() > self.budget {
            return;
        }
        let comma = usize::from(self.entries > 0);
        if self.current.len() + comma + json.len() > self.budget {
            self.close_page();
        }
        if self.entries > 0 {
            self.current.push(b',');
        }
        self.current.extend_from_slice(&json);
        self.entries += 1;
    }

    fn close_page(&mut self) {
        if self.entries == 0 {
            return;
        }
        let mut body = Vec::with_capacity(self.current.len() + 14);
        body.extend_from_slice(b"{\"entries\":[");
        body.append(&mut self.current);
        body.extend_from_slice(b"]}");
        self.done.push(Bytes::from(body));
        self.entries = 0;
    }

    /// The pages, the last one closed.
    pub fn finish(mut self) -> Vec<Bytes> {
        self.close_page();
        self.done
    }
}
