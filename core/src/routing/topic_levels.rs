//! The topic being matched, split into levels whose labels are looked up
//! only when the walk needs them.

use super::interner::Interner;
use super::trie::NO_LABEL;

/// What the trie walk asks about the topic's levels.
pub(super) trait TopicLevels {
    /// How many levels the topic has.
    fn count(&self) -> usize;
    /// Whether level `depth` is the string labelled `label`.
    fn is(&mut self, depth: usize, label: u32) -> bool;
    /// The label of level `depth`; `NO_LABEL` if no filter mentions it.
    fn label(&mut self, depth: usize) -> u32;
}

/// Byte range of each level in the topic, and its label once looked up.
pub(super) type LevelSpans = Vec<(usize, usize, Option<u32>)>;

/// A topic's levels, over buffers the route table reuses between lookups.
///
/// Looking a label up hashes the level; comparing it with the one label a
/// node's single child has costs a string comparison, which is cheaper.
/// Most trie nodes of a large table have a single exact child, and only a
/// level some node has exact children at is looked at, so a miss near the
/// root costs one lookup, not one per level.
pub(super) struct LazyLevels<'a> {
    text: &'a str,
    spans: &'a mut LevelSpans,
    labels: &'a Interner,
}

impl<'a> LazyLevels<'a> {
    pub(super) fn split(text: &'a str, spans: &'a mut LevelSpans, labels: &'a Interner) -> Self {
        spans.clear();
        // A byte scan: '/' is ASCII, so it never splits a UTF-8 character.
        let mut start = 0;
        for (at, byte) in text.bytes().enumerate() {
            if byte == b'/' {
                spans.push((start, at, None));
                start = at + 1;
            }
        }
        spans.push((start, text.len(), None));
        LazyLevels {
            text,
            spans,
            labels,
        }
    }
}

impl TopicLevels for LazyLevels<'_> {
    #[inline]
    fn count(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    fn is(&mut self, depth: usize, label: u32) -> bool {
        let Some(&(start, end, known)) = self.spans.get(depth) else {
            return false;
        };
        match known {
            Some(known) => known == label,
            None => self.labels.resolve(label) == self.text.get(start..end),
        }
    }

    #[inline]
    fn label(&mut self, depth: usize) -> u32 {
        let Some((start, end, known)) = self.spans.get_mut(depth) else {
            return NO_LABEL;
        };
        *known.get_or_insert_with(|| {
            self.text
                .get(*start..*end)
                .and_then(|level| self.labels.lookup(level))
                .unwrap_or(NO_LABEL)
        })
    }
}
