//! The tracebacks this thread interned last, so that the common allocation (a site this thread
//! has allocated from before) finds its traceback's id without taking a table's lock.
//!
//! A small direct-mapped cache per thread, in a `const` thread-local (no allocation, no
//! destructor): an entry holds the words of a traceback, the decorator and the generation it was
//! interned under, and its id. A hit compares every word, so two tracebacks never share an entry's
//! id. [`Tracing::clear_traces`](super::Tracing::clear_traces) bumps the decorator's generation,
//! which makes every cached id of it stale at once.

use core::cell::UnsafeCell;

use super::table::{Kind, TraceId};

/// Entries per thread.
const ENTRIES: usize = 8;
/// The longest traceback cached (a depth of 8 plus the allocation machinery's frames).
pub(crate) const WORDS: usize = 24;

#[derive(Clone, Copy)]
struct Entry {
    /// The decorator's number (0: empty).
    owner: u64,
    generation: u64,
    kind: Kind,
    len: usize,
    words: [usize; WORDS],
    id: TraceId,
}

const EMPTY: Entry = Entry {
    owner: 0,
    generation: 0,
    kind: Kind::Stack,
    len: 0,
    words: [0; WORDS],
    id: TraceId::NONE,
};

std::thread_local! {
    static RECENT: UnsafeCell<[Entry; ENTRIES]> = const { UnsafeCell::new([EMPTY; ENTRIES]) };
}

/// The entry `words` maps to.
#[inline]
fn slot(kind: Kind, words: &[usize]) -> usize {
    let mut h = kind as u64;
    for &w in words {
        h = h.rotate_left(7) ^ w as u64;
    }
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize & (ENTRIES - 1)
}

/// Whether two short tracebacks are the same, compared word by word in place (a call to
/// `memcmp` costs more than the comparison for the usual one to eight words).
#[inline]
fn same(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The id this thread cached for `(kind, words)` of decorator `owner` at `generation`.
#[inline]
pub(crate) fn find(owner: u64, generation: u64, kind: Kind, words: &[usize]) -> Option<TraceId> {
    if words.len() > WORDS {
        return None;
    }
    let i = slot(kind, words);
    RECENT
        .try_with(|r| {
            // SAFETY: this thread's cache; the reference lives only within this closure, which
            // calls nothing that could reach the cache again.
            let e = unsafe { &(*r.get())[i] };
            (e.owner == owner
                && e.generation == generation
                && e.kind == kind
                && same(&e.words[..e.len], words))
            .then_some(e.id)
        })
        .ok()
        .flatten()
}

/// Caches `id` for `(kind, words)` of decorator `owner` at `generation`.
pub(crate) fn remember(owner: u64, generation: u64, kind: Kind, words: &[usize], id: TraceId) {
    if words.len() > WORDS {
        return;
    }
    let i = slot(kind, words);
    let _ = RECENT.try_with(|r| {
        // SAFETY: as in `find`.
        let e = unsafe { &mut (*r.get())[i] };
        e.owner = owner;
        e.generation = generation;
        e.kind = kind;
        e.len = words.len();
        e.words[..words.len()].copy_from_slice(words);
        e.id = id;
    });
}
