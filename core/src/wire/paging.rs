//! Cutting lists into pages that fit the receiver's `maxBodySize`.
//!
//! Member lists and routing tables grow with the cluster; a body or stream
//! frame carrying all of them would, past some size, be refused by every
//! receiver, and the cluster could never converge. Every list a node sends
//! whole (register answers, stream hellos, `/sync` snapshots, heartbeat
//! answers, member and route frames) is therefore measured item by item and
//! cut into pages that each fit, or trimmed where a later round brings the
//! rest.

use serde::Serialize;

/// Bytes `value` takes as compact JSON, counted without building the text.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a value that cannot be serialised
    // counts as nothing, and is refused by the receiver as before.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes a JSON list of items of these sizes takes inside its brackets: the
/// items and the commas between them.
fn list_len(sizes: impl Iterator<Item = usize>) -> usize {
    let mut n = 0usize;
    let total = sizes.fold(0usize, |sum, size| {
        n = n.saturating_add(1);
        sum.saturating_add(size)
    });
    total.saturating_add(n.saturating_sub(1))
}

/// Cuts `items` into consecutive pages, in order, whose lists (items and
/// commas) take at most `budget` bytes each. An item larger than `budget`
/// on its own gets a page to itself: it is the receiver's to refuse, and
/// nothing else waits for it. An empty list gives no pages.
///
/// ```
/// use mqtt_cluster_core::wire::paging::pages;
/// // `"ab"` takes 4 bytes; two of them with a comma, 9.
/// let cut = pages(vec!["ab", "cd", "ef"], 9);
/// assert_eq!(cut, [vec!["ab", "cd"], vec!["ef"]]);
/// ```
pub fn pages<T: Serialize>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut page: Vec<T> = Vec::new();
    let mut used = 0usize;
    for item in items {
        let size = json_len(&item);
        let needed = if page.is_empty() {
            size
        } else {
            used.saturating_add(1).saturating_add(size)
        };
        if !page.is_empty() && needed > budget {
            out.push(std::mem::take(&mut page));
            used = size;
        } else {
            used = needed;
        }
        page.push(item);
    }
    if !page.is_empty() {
        out.push(page);
    }
    out
}

/// Keeps the longest prefix of `items` whose list takes at most `budget`
/// bytes; returns whether anything was left out.
pub fn truncate_to<T: Serialize>(items: &mut Vec<T>, budget: usize) -> bool {
    let mut used = 0usize;
    let mut keep = 0usize;
    for item in items.iter() {
        let size = json_len(item);
        let needed = if keep == 0 {
            size
        } else {
            used.saturating_add(1).saturating_add(size)
        };
        if needed > budget {
            break;
        }
        used = needed;
        keep += 1;
    }
    let cut = keep < items.len();
    items.truncate(keep);
    cut
}

/// Bytes the list of `items` takes inside its brackets.
pub fn items_len<T: Serialize>(items: &[T]) -> usize {
    list_len(items.iter().map(json_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pages_keep_order_and_fit(
            items in prop::collection::vec("[a-z\"\\\\]{0,12}", 0..40),
            budget in 0usize..60,
        ) {
            let cut = pages(items.clone(), budget);
            let joined: Vec<String> = cut.iter().flatten().cloned().collect();
            prop_assert_eq!(&joined, &items);
            for page in &cut {
                prop_assert!(!page.is_empty());
                let whole = serde_json::to_vec(page).unwrap().len() - 2;
                prop_assert_eq!(whole, items_len(page));
                prop_assert!(page.len() == 1 || whole <= budget, "{:?} over {}", page, budget);
            }
            // Greedy: no page could have taken the next page's first item.
            for pair in cut.windows(2) {
                let mut grown = pair[0].clone();
                grown.push(pair[1][0].clone());
                prop_assert!(items_len(&grown) > budget);
            }
        }

        #[test]
        fn truncation_keeps_the_longest_prefix_that_fits(
            items in prop::collection::vec("[a-z]{0,12}", 0..40),
            budget in 0usize..100,
        ) {
            let mut kept = items.clone();
            let cut = truncate_to(&mut kept, budget);
            prop_assert_eq!(cut, kept.len() < items.len());
            prop_assert!(kept.is_empty() || items_len(&kept) <= budget);
            prop_assert_eq!(&items[..kept.len()], &kept[..]);
            if cut {
                prop_assert!(items_len(&items[..=kept.len()]) > budget);
            }
        }
    }

    #[test]
    fn json_len_counts_what_serde_writes() {
        let value = serde_json::json!({"a": [1, "x\"y", null], "b": "é"});
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
    }
}
