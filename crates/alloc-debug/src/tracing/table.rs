//! Tracing's tables: the live blocks and the interned tracebacks, sharded, in the C library's
//! memory.
//!
//! ```text
//!   blocks:     16 shards by address ──► (domain, address) → (size, traceback id), for what
//!               the lock-free records (`records`) do not hold: other domains, unaligned addresses,
//!               blocks of 4 GiB or more
//!   tracebacks: 16 shards by hash    ──► frames (one flat vector) + entries + an index by hash
//! ```
//!
//! Every table allocates through [`AsAllocator<System>`], never through the traced allocator, so a
//! `Tracing` under `#[global_allocator]` cannot recurse into itself. Each shard sits behind an
//! `alloc_core::lock::Lock` (a spin lock that never allocates), whose fork pair lets a fork
//! handler take every shard's lock in one call and release them in another. Contention stays low because two
//! threads meet only when their blocks (or their tracebacks) hash to the same shard.
//!
//! A traceback is interned once and named by a [`TraceId`]; a block's record holds the id, not
//! the frames. Clearing a traceback shard bumps its epoch, so an id handed out before the clear
//! (by an allocation racing the clear) is recognised as stale instead of naming another traceback.

use alloc_core::allocator_api2::vec::Vec as ApiVec;
use alloc_core::{AsAllocator, System};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

/// The allocator of every table: the C library, never the traced allocator.
pub(crate) type TableAlloc = AsAllocator<System>;

/// A vector in the tables' allocator.
pub(crate) type TableVec<T> = ApiVec<T, TableAlloc>;

pub(crate) fn table_alloc() -> TableAlloc {
    AsAllocator::new(System)
}

/// A copy of `words` in the tables' allocator; `None` if memory ran out.
pub(crate) fn table_copy(words: &[usize]) -> Option<TableVec<usize>> {
    let mut v = TableVec::new_in(table_alloc());
    v.try_reserve(words.len()).ok()?;
    v.extend_from_slice(words);
    Some(v)
}

/// Shards per table (a power of two).
pub(crate) const SHARDS: usize = 16;

/// The shard of an address (blocks are at least 16-aligned: the low bits carry nothing).
#[inline]
pub(crate) fn shard_of(addr: usize) -> usize {
    ((addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 4))
        & (SHARDS - 1)
}

/// Names an interned traceback in 32 bits (so that a block's record fits a word with its size):
/// the low 4 bits of its shard's epoch, its shard (4 bits), its index there (24 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TraceId(u64);

/// The most tracebacks a shard interns (an index fits 24 bits).
const MAX_INDEX: u32 = 1 << 24;
const _: () = assert!(SHARDS <= 16, "a shard fits 4 bits");

impl TraceId {
    /// Names nothing (an empty cache entry); never handed out for a traceback.
    pub(crate) const NONE: TraceId = TraceId(u64::MAX);

    fn new(epoch: u32, shard: usize, index: u32) -> Self {
        TraceId((u64::from(epoch & 0xF) << 28) | ((shard as u64) << 24) | u64::from(index))
    }
    fn epoch(self) -> u32 {
        (self.0 >> 28) as u32 & 0xF
    }
    pub(crate) fn shard(self) -> usize {
        ((self.0 >> 24) & 0xF) as usize
    }
    fn index(self) -> u32 {
        self.0 as u32 & (MAX_INDEX - 1)
    }
    /// The id as 32 bits.
    pub(crate) fn bits(self) -> u32 {
        self.0 as u32
    }
    /// The id of [`bits`](Self::bits).
    pub(crate) fn from_bits(bits: u32) -> Self {
        TraceId(u64::from(bits))
    }
}

/// What a block's record holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) size: usize,
    pub(crate) trace: TraceId,
}

/// One shard of the live blocks, keyed by (domain, address).
pub(crate) type Blocks = HashMap<(u32, usize), Record, DefaultHashBuilder, TableAlloc>;

pub(crate) fn new_blocks() -> Blocks {
    HashMap::with_hasher_in(DefaultHashBuilder::default(), AsAllocator::new(System))
}

/// How an interned traceback's words are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Return addresses, most recent first.
    Stack,
    /// A caller-given tag: the file's pointer and length, then the line.
    Tag,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    kind: Kind,
}

/// One shard of the interned tracebacks.
pub(crate) struct Tracebacks {
    epoch: u32,
    words: TableVec<usize>,
    entries: TableVec<Entry>,
    index: HashTable<u32, TableAlloc>,
}

impl Tracebacks {
    pub(crate) fn new(epoch: u32) -> Self {
        Tracebacks {
            epoch,
            words: TableVec::new_in(table_alloc()),
            entries: TableVec::new_in(table_alloc()),
            index: HashTable::new_in(AsAllocator::new(System)),
        }
    }

    /// The hash that picks a traceback's shard and finds it there: the same for the same
    /// traceback in every call (a fixed function, not a randomly seeded hasher), with good high
    /// bits (the shard and hashbrown's control bytes come from them).
    pub(crate) fn hash(kind: Kind, words: &[usize]) -> u64 {
        let mut h = match kind {
            Kind::Stack => 0x243F_6A88_85A3_08D3_u64,
            Kind::Tag => 0x1319_8A2E_0370_7344_u64,
        };
        for &w in words {
            h = (h.rotate_left(23) ^ w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        // murmur3's finaliser: every input bit reaches the high bits.
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }

    /// The id of the traceback `(kind, words)`, interned if new; `None` if memory ran out.
    pub(crate) fn intern(
        &mut self,
        shard: usize,
        hash: u64,
        kind: Kind,
        words: &[usize],
    ) -> Option<TraceId> {
        let Tracebacks {
            epoch,
            words: all,
            entries,
            index,
        } = self;
        let same = |&i: &u32| {
            let e = entries[i as usize];
            e.kind == kind && &all[e.start as usize..(e.start + e.len) as usize] == words
        };
        if let Some(&i) = index.find(hash, same) {
            return Some(TraceId::new(*epoch, shard, i));
        }
        let start = u32::try_from(all.len()).ok()?;
        let n = u32::try_from(entries.len())
            .ok()
            .filter(|&n| n < MAX_INDEX)?;
        all.try_reserve(words.len()).ok()?;
        entries.try_reserve(1).ok()?;
        index
            .try_reserve(1, |&i| {
                let e = entries[i as usize];
                Self::hash(e.kind, &all[e.start as usize..(e.start + e.len) as usize])
            })
            .ok()?;
        all.extend_from_slice(words);
        entries.push(Entry {
            start,
            len: words.len() as u32,
            kind,
        });
        let entries = &*entries;
        let all = &*all;
        index.insert_unique(hash, n, |&i| {
            let e = entries[i as usize];
            Self::hash(e.kind, &all[e.start as usize..(e.start + e.len) as usize])
        });
        Some(TraceId::new(*epoch, shard, n))
    }

    /// The traceback named by `id`, if it is of this shard's epoch.
    pub(crate) fn get(&self, id: TraceId) -> Option<(Kind, &[usize])> {
        if id.epoch() != self.epoch & 0xF {
            return None;
        }
        let e = self.entries.get(id.index() as usize)?;
        Some((
            e.kind,
            &self.words[e.start as usize..(e.start + e.len) as usize],
        ))
    }

    /// Forgets every traceback and starts a new epoch.
    pub(crate) fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.words.clear();
        self.entries.clear();
        self.index.clear();
    }

    /// Bytes these tables hold.
    pub(crate) fn footprint(&self) -> usize {
        self.words.capacity() * size_of::<usize>()
            + self.entries.capacity() * size_of::<Entry>()
            + self.index.capacity() * (size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_twice_gives_one_id_and_a_clear_makes_old_ids_stale() {
        let mut t = Tracebacks::new(0);
        let w = [1usize, 2, 3];
        let h = Tracebacks::hash(Kind::Stack, &w);
        let a = t.intern(3, h, Kind::Stack, &w).unwrap();
        let b = t.intern(3, h, Kind::Stack, &w).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.shard(), 3);
        let h2 = Tracebacks::hash(Kind::Tag, &w);
        let c = t.intern(3, h2, Kind::Tag, &w).unwrap();
        assert_ne!(a, c, "the kind is part of the traceback");
        assert_eq!(t.get(a), Some((Kind::Stack, &w[..])));
        t.clear();
        assert_eq!(t.get(a), None, "an id from before the clear is stale");
    }

    #[test]
    fn a_traceback_hashes_the_same_every_time_and_its_kind_counts() {
        let w = [0x5555_1234usize, 0x5555_5678];
        assert_eq!(
            Tracebacks::hash(Kind::Stack, &w),
            Tracebacks::hash(Kind::Stack, &w)
        );
        assert_ne!(
            Tracebacks::hash(Kind::Stack, &w),
            Tracebacks::hash(Kind::Tag, &w)
        );
        assert_ne!(
            Tracebacks::hash(Kind::Stack, &w),
            Tracebacks::hash(Kind::Stack, &w[..1])
        );
    }

    #[test]
    fn addresses_spread_over_the_shards() {
        let mut seen = [false; SHARDS];
        for i in 0..1024usize {
            seen[shard_of(0x7f00_0000_0000 + i * 16)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
