//! Reference-counted string interning, so that the trie compares and stores
//! small integers instead of level strings.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Ids at or above this are never handed out: the trie uses them to label
/// wildcard edges and to mark unknown levels and vacant slots.
pub(super) const FIRST_RESERVED_ID: u32 = u32::MAX - 3;

struct Entry {
    text: Arc<str>,
    /// How many trie edges and share groups use this string; at zero the
    /// string is forgotten and its id reused.
    users: u32,
}

/// Maps strings to dense `u32` ids and back.
///
/// The hash map only answers "which id has this string"; it is never
/// iterated, so its per-process random hash keys (which keep clients from
/// choosing colliding levels) cannot leak into any routing decision.
#[derive(Default)]
pub(super) struct Interner {
    ids: HashMap<Arc<str>, u32>,
    entries: Vec<Option<Entry>>,
    /// Reusing the lowest vacant id first keeps the live ids packed at the
    /// start, so the slots at the end empty out and can be returned.
    vacant: BTreeSet<u32>,
}

impl Interner {
    /// The id of `text`, if some user holds it.
    #[inline]
    pub(super) fn lookup(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The string behind `id`.
    pub(super) fn resolve(&self, id: u32) -> Option<&str> {
        let entry = self.entries.get(usize::try_from(id).ok()?)?.as_ref()?;
        Some(&entry.text)
    }

    /// Takes one more use of `text`, interning it if new. `None` only when
    /// every id is taken, which would need billions of distinct strings.
    pub(super) fn acquire(&mut self, text: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(text) {
            let entry = self.entry_mut(id)?;
            entry.users = entry.users.saturating_add(1);
            return Some(id);
        }
        let text: Arc<str> = Arc::from(text);
        let entry = Entry {
            text: Arc::clone(&text),
            users: 1,
        };
        let id = match self.vacant.pop_first() {
            Some(id) => {
                *self.entries.get_mut(usize::try_from(id).ok()?)? = Some(entry);
                id
            }
            None => {
                let id = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&id| id < FIRST_RESERVED_ID)?;
                self.entries.push(Some(entry));
                id
            }
        };
        self.ids.insert(text, id);
        Some(id)
    }

    /// Gives back one use of `id`; the last one forgets the string.
    pub(super) fn release(&mut self, id: u32) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        entry.users = entry.users.saturating_sub(1);
        if entry.users > 0 {
            return;
        }
        if let Some(slot) = usize::try_from(id)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        {
            if let Some(entry) = slot.take() {
                self.ids.remove(&entry.text);
            }
        }
        self.vacant.insert(id);
        self.trim();
    }

    /// How many distinct strings are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    fn entry_mut(&mut self, id: u32) -> Option<&mut Entry> {
        self.entries.get_mut(usize::try_from(id).ok()?)?.as_mut()
    }

    /// Returns the memory of vacant slots at the end of the table.
    fn trim(&mut self) {
        if self.ids.is_empty() {
            *self = Interner::default();
            return;
        }
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
            self.vacant.pop_last();
        }
        // Shrinking only to twice the length leaves room to grow again, so
        // that alternating inserts and removals do not reallocate each time.
        if self.entries.capacity() > 4 * self.entries.len() {
            self.entries.shrink_to(2 * self.entries.len());
        }
        if self.ids.capacity() > 4 * self.ids.len() {
            self.ids.shrink_to(2 * self.ids.len());
        }
    }
}
