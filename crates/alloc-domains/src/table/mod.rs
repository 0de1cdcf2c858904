//! The domain table: which allocator each domain uses now, the chain of those it used before, the
//! change callbacks, and the start-up configuration.
//!
//! # Reading: one atomic load inside a section
//!
//! Each domain's slot holds an `AtomicPtr` to an [`Installed`] record (the allocator, the record it
//! replaced, whether it can tell its own blocks). Allocation loads the record (Acquire, paired with
//! the Release that published it) and calls the allocator through its vtable: one atomic load and
//! one indirect call, plus, on the allocating side, a relaxed read of the slot's `used` flag (set
//! once, at the domain's first allocation; the replacement rule below needs it), and, for user
//! domains only, a count of live blocks in the thread's own slot (a load and a store;
//! [`remove_domain`] sums them). The record is read
//! inside a **section** of the table's readers (`crate::reclaim`): a thread-local read, a store
//! to the thread's announcement slot and a compiler fence on entry, a Release store on exit;
//! nothing allocates, locks or waits. The record's fields are read inside the section, the
//! allocator (`'static`) is called after it ends (a free's walk down the chain calls `owns` and
//! `starts_block` inside it).
//!
//! # Records are freed after a grace period (the invariant)
//!
//! **A record is freed only after it is unreachable from the table and every section that was
//! running when it became unreachable has ended.** Records leave the table two ways, both under
//! the writer lock: a set-back ([`set`] with the allocator forwarding hooks were installed over)
//! takes the hooks' records off the top of the chain, and [`remove_domain`] takes the whole chain.
//! Nothing else links to them (a record belongs to one chain; a record's predecessor leaves no
//! earlier than the record), so after the store that unlinks them only a section already running
//! can reach them. They wait in a pending list; the writer, after it releases the writer lock and
//! if it is not itself inside a section, waits for a grace period (`Readers::synchronize`: a
//! `membarrier` on Linux, a `SeqCst` fence elsewhere, then each active announcement slot until it
//! changes) and frees them. A writer that cannot have one (inside a section, or a reader beyond
//! the slots that stays busy) leaves them for the next writer: never freed early, only late.
//! While the writer lock is held nothing reachable from the table is freed, so writers and the
//! fork handlers read chains under the lock without a section. Other records stay for as long as
//! their domain does: their allocators may own blocks still to be freed. The protocol is checked
//! by loom models running this code (`loom_models`: a free mid-route while a set-back or a
//! removal reclaims; test builds also assert, on every record read, that it was not reclaimed).
//!
//! # Replacing is safe (the rule)
//!
//! A free must reach the allocator that made the block. Each record keeps the one it replaced, so a
//! domain has a chain of allocators, newest first. A free goes to the newest allocator that claims
//! the block: `owns == Owned`, and, since an allocator's memory may also hold the blocks of a
//! header decorator stacked on it (a debug hook's blocks start inside the allocator's), one of its
//! own blocks starts there (`DomainAllocator::starts_block`). Once the walk passes a debug hook
//! installed before the domain's first allocation, the hook made every block, so the block is
//! its (to free or to report). A pointer in some allocator's memory where no block of anyone's
//! starts (a hook's block freed already, a pointer inside a block) goes to the newest debug hook,
//! which reports it, or else to that allocator, whose own checks do. A block no allocator claims
//! goes to the newest allocator that cannot tell its blocks from others', or else to the newest
//! debug hook, or else to the oldest (the one the domain started with).
//!
//! **Forwarding hooks** ([`hook_forwarding`], PEP 445's hook pattern: a counting, tracing or
//! fault-injecting wrapper) make no blocks: they hand out those of the allocator below them. They
//! claim nothing, are accepted at any time, and a block of the allocator below them is freed
//! through the newest of them, so the hook sees every free while it is installed. [`set`] with the
//! allocator they were installed over takes them out of the chain again (the pattern's restore),
//! so hooking and unhooking does not lengthen the chain. A chain whose records all forward down to
//! the oldest routes every free to the current allocator with no lookup.
//!
//! For that to be right, an allocator that cannot claim its own blocks (it answers `Unknown`, like
//! the C library) may only become current in a domain that has not served an allocation yet, or
//! one whose chain holds it already (set back). And blocks nobody claims must mean the same to
//! every allocator they may reach: here they are the C library's (its own blocks, and the large
//! blocks a pool over it passes to it), and the C library, the pool and the decorators over them
//! all hand such a block to the C library's `free`. A pool built over another large-block
//! allocator, in a domain that also used the C library, would break that; do not mix them in one
//! domain.
//! [`set`] and [`hook`] check it: on a domain that has allocated, the new allocator must claim
//! its blocks, or the call is refused with [`DomainError::AmbiguousOwnership`]. Whether it does is
//! asked without calling any of its allocation functions (installing calls none): it answers
//! `NotOwned` for an address no allocator made, or, where it cannot tell there (`Unknown`: a pool
//! whose large blocks are the C library's), it declares that it claims its own blocks
//! (`DomainAllocator::declares_ownership`; the safe default is no). The pool allocators claim
//! their blocks; so do the debug
//! decorators over anything (each remembers the blocks it made, once asked: every allocator is
//! asked, with `DomainAllocator::track_ownership`, before it is installed, and one that made
//! blocks before it was asked counts as not claiming them); a decorator that returns its inner
//! blocks unchanged claims what its inner allocator claims. With a single allocator in the chain
//! (the usual case) a free is one atomic load and one indirect call, like an allocation.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use alloc_arena::{
    DynArenaProvider, NO_KEY, OsArenas, PoolAllocator, PoolConfig, ReservedArenas, Spans,
    SwapError, SwappableArenas,
};
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::{GuardPages, Guarded};
use thiserror::Error;

use crate::config::{EnvValue, Preset, parse_guard_sample, read_env};
use crate::reclaim::{READERS, Section};
pub use crate::record::DynAllocator;
use crate::record::{Installed, LIVE, Retired, retire};

mod arenas;
mod fork;
mod handle;
mod route;
mod standard;
mod stats;
mod write;

pub use arenas::*;
pub use fork::*;
pub use handle::*;
pub use route::*;
pub use standard::*;
use stats::*;
pub use stats::{DomainStats, STATS_VAR, StatsError};
pub use write::*;

/// A change callback: called with the domain and its allocator at registration and after each
/// change.
pub type ChangeCallback = dyn Fn(DomainId, &'static DynAllocator) + Send + Sync;

/// The most domains a program can have (the three standard ones included).
pub const MAX_DOMAINS: usize = crate::reclaim::DOMAINS;
/// The most change callbacks registered at once.
pub const MAX_CALLBACKS: usize = 32;
/// How many standard domains there are (raw, mem, object): ids below it are theirs.
pub const STANDARD_DOMAINS: usize = 3;

/// The generation no domain has: the mark of a removed domain's slot ([`remove_domain`]).
pub(super) const NO_GENERATION: u16 = u16::MAX;

/// A domain: an index into the table, and the generation of the slot it names. A slot's
/// generation grows each time its domain is removed ([`remove_domain`]), so an id kept from
/// before is told apart from the id of a domain added there later
/// ([`DomainError::Removed`]); the standard domains are of generation 0, never removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId {
    index: u8,
    generation: u16,
}

impl DomainId {
    /// The raw domain (`PyMem_RawMalloc`): usable from any thread at any time; the C library by
    /// default.
    pub const RAW: DomainId = DomainId::from_index(0);
    /// The mem domain (`PyMem_Malloc`): the pool allocator by default.
    pub const MEM: DomainId = DomainId::from_index(1);
    /// The object domain (`PyObject_Malloc`): the pool allocator by default.
    pub const OBJECT: DomainId = DomainId::from_index(2);

    /// The domain's index in the table.
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// The generation of the domain's slot this id names.
    pub const fn generation(self) -> u16 {
        self.generation
    }

    /// The id with index `i` and generation 0 (the standard domains, and the first domain added
    /// at each index); whether a domain has it is checked where it is used
    /// ([`DomainError::UnknownDomain`]).
    pub const fn from_index(i: u8) -> DomainId {
        DomainId {
            index: i,
            generation: 0,
        }
    }

    /// The id as one number, for C callers: the index in the low 8 bits, the generation above
    /// (so the first domain at each index has the number of its index).
    pub const fn to_raw(self) -> u32 {
        self.index as u32 | (self.generation as u32) << 8
    }

    /// The id [`to_raw`](Self::to_raw) made the number of; `None` for a number no id has.
    pub const fn from_raw(raw: u32) -> Option<DomainId> {
        if raw >> 24 != 0 {
            return None;
        }
        Some(DomainId {
            index: raw as u8,
            generation: (raw >> 8) as u16,
        })
    }

    /// The API id byte the debug hooks write for this domain: `'r'`, `'m'`, `'o'` for the standard
    /// domains (as CPython), then `'A'`, `'B'`, ... for user domains.
    pub const fn api_id(self) -> u8 {
        match self.index {
            0 => b'r',
            1 => b'm',
            2 => b'o',
            n => b'A' + (n - 3),
        }
    }
}

/// What can go wrong with the table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DomainError {
    /// A domain needs a name.
    #[error("a domain name must not be empty")]
    EmptyName,
    /// Names are unique.
    #[error("a domain named {0:?} already exists")]
    DuplicateName(&'static str),
    /// The table is full.
    #[error("no room for another domain: the table holds {max}")]
    TableFull {
        /// [`MAX_DOMAINS`].
        max: usize,
    },
    /// No domain has this id.
    #[error("no domain has id {0}")]
    UnknownDomain(u8),
    /// The id names a domain that was removed ([`remove_domain`]); another domain may have its
    /// index now, under another generation.
    #[error("domain {index} (generation {generation}) was removed")]
    Removed {
        /// The id's index.
        index: u8,
        /// The id's generation.
        generation: u16,
    },
    /// The standard domains (raw, mem, object) are never removed.
    #[error("domain {0:?} is a standard domain, which cannot be removed")]
    StandardDomain(&'static str),
    /// A domain is removed only once it owns no live block.
    #[error("domain {domain:?} still has {live} live blocks")]
    LiveBlocks {
        /// The domain's name.
        domain: &'static str,
        /// How many blocks made through the domain are not freed yet.
        live: isize,
    },
    /// The replacement could capture blocks of the allocators before it; see the module
    /// documentation of the rule.
    #[error(
        "domain {domain:?} has served allocations, and allocator {allocator:?} cannot tell its \
         blocks from those of the allocators before it; install it before the domain's first \
         allocation, or wrap an allocator that can"
    )]
    AmbiguousOwnership {
        /// The domain's name.
        domain: &'static str,
        /// The refused allocator's name.
        allocator: String,
    },
    /// The arena allocator could not be installed.
    #[error(transparent)]
    ArenaAllocator(#[from] SwapError),
    /// The callback table is full.
    #[error("no room for another change callback: at most {max}")]
    TooManyCallbacks {
        /// [`MAX_CALLBACKS`].
        max: usize,
    },
}

struct Slot {
    /// The current record: null for a slot never used, `REC_VACANT` for a removed domain's.
    current: AtomicPtr<Installed>,
    used: AtomicBool,
    name: AtomicPtr<u8>,
    name_len: AtomicU64,
    /// The name's version: odd while it is written.
    name_seq: AtomicU32,
    /// The generation of the domain in the slot, or of the next one added there.
    generation: AtomicU16,
    /// The sum of the per-thread live-block counts of the slot's index when the domain was
    /// added (`Readers::live_sum`): the counts of user domains (the standard ones are never
    /// removed) minus it are the domain's blocks made and not freed yet, which
    /// [`remove_domain`] reads.
    live_base: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            current: AtomicPtr::new(ptr::null_mut()),
            used: AtomicBool::new(false),
            name: AtomicPtr::new(ptr::null_mut()),
            name_len: AtomicU64::new(0),
            name_seq: AtomicU32::new(0),
            generation: AtomicU16::new(0),
            live_base: AtomicU64::new(0),
        }
    }

    /// The name (a seqlock over the pointer and the length: a slot's name changes when a domain
    /// is added where one was removed).
    fn name(&self) -> &'static str {
        loop {
            // Acquire: the name's words read below are at least those of this version.
            let before = self.name_seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let p = self.name.load(Ordering::Relaxed);
            let len = self.name_len.load(Ordering::Relaxed) as usize;
            // Acquire: the words above are read before the version is read again.
            core::sync::atomic::fence(Ordering::Acquire);
            if self.name_seq.load(Ordering::Relaxed) != before {
                continue;
            }
            if p.is_null() {
                return "";
            }
            // SAFETY: pointer and length were stored together from one `&'static str` (the
            // version did not change while they were read, and is even: no writer was between
            // them).
            return unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(p, len)) };
        }
    }

    /// Sets the name (under the writer lock).
    fn set_name(&self, name: &'static str) {
        let v = self.name_seq.load(Ordering::Relaxed);
        self.name_seq.store(v + 1, Ordering::Relaxed);
        // Release: a reader that sees a word below sees the odd version first.
        core::sync::atomic::fence(Ordering::Release);
        self.name_len.store(name.len() as u64, Ordering::Relaxed);
        self.name.store(name.as_ptr().cast_mut(), Ordering::Relaxed);
        // Release: publishes the words with the even version.
        self.name_seq.store(v + 2, Ordering::Release);
    }

    /// Whether a domain is in the slot now.
    fn occupied(&self) -> bool {
        let p = self.current.load(Ordering::Acquire);
        !p.is_null() && !ptr::eq(p, &REC_VACANT)
    }
}

const fn rec_ptr(r: &'static Installed) -> *mut Installed {
    ptr::from_ref(r).cast_mut()
}

static TABLE: [Slot; MAX_DOMAINS] = {
    let mut t = [const { Slot::new() }; MAX_DOMAINS];
    t[0].current = AtomicPtr::new(rec_ptr(&REC_BOOT_RAW));
    t[1].current = AtomicPtr::new(rec_ptr(&REC_BOOT_MEM));
    t[2].current = AtomicPtr::new(rec_ptr(&REC_BOOT_OBJECT));
    t
};

const START_UNDONE: u8 = 0;
const START_RUNNING: u8 = 1;
const START_DONE: u8 = 2;
static START: AtomicU8 = AtomicU8::new(START_UNDONE);

/// The standard pool's fast-path key (`PoolAllocator::fast_key`) while the mem domain's allocator
/// is that pool (`REC_POOL`, with nothing before it) and the domain has served an allocation;
/// `NO_KEY` otherwise. While it holds the key, every call on the mem domain goes to `POOL`
/// directly, with no indirect call, and the C library's `malloc` and `free` take the pool's
/// fast paths with it.
///
/// It is set only under the writer lock, after checking both facts, and cleared under the same
/// lock before any other record is stored in the slot, so it never holds the key while another
/// record is current. A thread that read the key just before a replacement calls `POOL`, which is
/// what a thread that loaded the old record just before the replacement does too.
static FAST_MEM: AtomicU32 = AtomicU32::new(NO_KEY);
/// `FAST_MEM`'s counterpart for the object domain: true while its allocator is the standard
/// object pool (`REC_OBJECT_POOL`, with nothing before it), the domain has served an allocation
/// and does not count its statistics. While it holds, the handle's `malloc`, `calloc`, `realloc`
/// and `free` of the object domain call `OBJECT_POOL` directly, with no section, no record and
/// no indirect call (PEP 445's `PyObject_Malloc` family, at the pool's own cost). Set and
/// cleared as `FAST_MEM` is, under the writer lock (cleared by `publish` before any other record
/// is current); a thread that read it just before a replacement calls `OBJECT_POOL`, as a thread
/// that loaded the old record does.
static FAST_OBJECT: AtomicBool = AtomicBool::new(false);
/// `FAST_MEM`'s twin while the mem domain counts its statistics: the standard pool's fast key
/// under the same two facts (set and cleared with `FAST_MEM`, under the same lock), for the
/// handle's counting path into the pool (`Domain::counted_key`), which calls `POOL` directly and
/// counts. At most one of the two holds a key: counting is on for good before the domain's
/// first allocation, or never.
static COUNTED_MEM: AtomicU32 = AtomicU32::new(NO_KEY);
/// The C library's `free` starts here: the standard pool's free word
/// ([`alloc_arena::free_word`]: its reservation of arenas, `RESERVED`, with the pool's fast key
/// in bits 48 to 61) while `FAST_MEM` holds the key and the reservation exists,
/// [`FAST_FREE_OFF`] otherwise. With the tag of way 0 of the calling thread's cache, `(ptr ^
/// word ^ tag) >> RESERVED_SHIFT == 0` says at once that `ptr` lies in the pool's own
/// reservation, that the fast path is on, and that the thread holds a heap of the pool
/// (`PoolAllocator::free_fast_word`). Stored with `FAST_MEM`, under the same lock and the same
/// rules.
static FAST_FREE: AtomicU64 = AtomicU64::new(FAST_FREE_OFF);
/// [`FAST_FREE`] while the fast path is off: it passes no test.
const FAST_FREE_OFF: u64 = alloc_arena::FREE_WORD_OFF;

/// The word [`FAST_FREE`] holds while `FAST_MEM` holds `key`.
fn fast_free_word(key: u32) -> u64 {
    match RESERVED.range_base() {
        Some(base) if key != NO_KEY => alloc_arena::free_word(base, key),
        _ => FAST_FREE_OFF,
    }
}
static PRESET: AtomicU8 = AtomicU8::new(0);
