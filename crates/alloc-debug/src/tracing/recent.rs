//! The tracebacks this thread interned last, so that the common allocation (a site this thread
//! has allocated from before) finds its traceback's id without taking a table's lock.
//!
//! A small direct-mapped cache per thread, in a `const` thread-local (no allocation, no
//! destructor): an entry holds the words of a traceback, the decorator, generation and kind it was
//! interned under (one word, from the decorator's [`base`]), and its id. A hit compares every word, so two tracebacks never share an entry's
//! id. [`Tracing::clear_traces`](super::Tracing::clear_traces) bumps the decorator's generation,
//! which makes every cached id of it stale at once. In front of the entries, the last one-frame
//! traceback found or cached is kept on its own, under the same stamp: one compare of two words
//! for a thread that allocates from one site again and again.

use core::cell::{Cell, UnsafeCell};

use super::table::{Kind, TraceId};

/// Entries per thread.
const ENTRIES: usize = 8;
/// The longest traceback cached (a depth of 8 plus the allocation machinery's frames).
pub(crate) const WORDS: usize = 24;

#[derive(Clone, Copy)]
struct Entry {
    /// The decorator, its generation and the kind, in one word ([`stamp`]; 0: empty).
    stamp: u64,
    len: usize,
    words: [usize; WORDS],
    id: TraceId,
}

const EMPTY: Entry = Entry {
    stamp: 0,
    len: 0,
    words: [0; WORDS],
    id: TraceId::NONE,
};

std::thread_local! {
    static RECENT: UnsafeCell<[Entry; ENTRIES]> = const { UnsafeCell::new([EMPTY; ENTRIES]) };
    /// The last one-word traceback this thread found or cached: `(stamp, word, id)`, looked at
    /// before the entries (a thread allocating from one site again and again finds it here).
    static LAST: Cell<(u64, usize, TraceId)> = const { Cell::new((0, 0, TraceId::NONE)) };
}

/// Decorator `owner` (nonzero) at `generation` as one word that names them exactly (bit 0 left
/// for the kind), or `None` past the numbers that fit (more than 2^39 decorators, or 2^24 clears
/// of one): those are not cached. A decorator keeps its base, and makes it anew when it clears.
pub(crate) fn base(owner: u64, generation: u64) -> Option<u64> {
    (owner < 1 << 39 && generation < 1 << 24).then_some(owner << 25 | generation << 1)
}

/// An entry's stamp: its decorator's [`base`] and the kind (never 0: the owner is not).
#[inline]
fn stamp(base: u64, kind: Kind) -> u64 {
    base | kind as u64
}

/// The entry `words` maps to under `stamp`.
#[inline]
fn slot(stamp: u64, words: &[usize]) -> usize {
    let h = match *words {
        // The common traceback: one frame.
        [w] => stamp.rotate_left(7) ^ w as u64,
        _ => words
            .iter()
            .fold(stamp, |h, &w| h.rotate_left(7) ^ w as u64),
    };
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize & (ENTRIES - 1)
}

/// Whether two short tracebacks are the same, compared word by word in place (a call to
/// `memcmp` costs more than the comparison for the usual one to eight words).
#[inline]
fn same(a: &[usize], b: &[usize]) -> bool {
    match (a, b) {
        ([x], [y]) => x == y,
        _ => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y),
    }
}

/// The id of the one-frame traceback `w` of kind `kind`, if it is the thread's last one, kept
/// under `base` (no other entry is looked at). `base` may be read as the decorator keeps it: 0
/// (not given yet) and the base of a decorator whose tracebacks are not cached never match,
/// since the last one is kept only under a base that was given, and a traceback's word is
/// never 0.
#[inline(always)]
pub(crate) fn find_last(base: u64, kind: Kind, w: usize) -> Option<TraceId> {
    let (s, last, id) = LAST.with(Cell::get);
    (s == stamp(base, kind) && last == w).then_some(id)
}

/// The id this thread cached for `(kind, words)` of the decorator and generation `base` names.
#[inline]
pub(crate) fn find(base: u64, kind: Kind, words: &[usize]) -> Option<TraceId> {
    if let [w] = *words
        && let Some(id) = find_last(base, kind, w)
    {
        return Some(id);
    }
    let stamp = stamp(base, kind);
    if words.len() > WORDS {
        return None;
    }
    let i = slot(stamp, words);
    let found = RECENT
        .try_with(|r| {
            // SAFETY: this thread's cache; the reference lives only within this closure, which
            // calls nothing that could reach the cache again.
            let e = unsafe { &(*r.get())[i] };
            (e.stamp == stamp && same(&e.words[..e.len.min(WORDS)], words)).then_some(e.id)
        })
        .ok()
        .flatten();
    if let (Some(id), [w]) = (found, words) {
        LAST.with(|l| l.set((stamp, *w, id)));
    }
    found
}

/// Caches `id` for `(kind, words)` of the decorator and generation `base` names.
pub(crate) fn remember(base: u64, kind: Kind, words: &[usize], id: TraceId) {
    let stamp = stamp(base, kind);
    if words.len() > WORDS {
        return;
    }
    let i = slot(stamp, words);
    let _ = RECENT.try_with(|r| {
        // SAFETY: as in `find`.
        let e = unsafe { &mut (*r.get())[i] };
        e.stamp = stamp;
        e.len = words.len();
        e.words[..words.len()].copy_from_slice(words);
        e.id = id;
    });
    if let [w] = *words {
        LAST.with(|l| l.set((stamp, w, id)));
    }
}
