//! Arenas and pools: the memory layout, and the two structures that describe it.
//!
//! An arena is `arena_size` bytes (1 MiB by default) aligned to its size. Its first pool(s) hold the
//! [`ArenaHeader`] followed by one [`PoolMeta`] per pool; the other pools hold blocks only, from
//! offset 0, so blocks of a size that is a multiple of 2^k are 2^k-aligned:
//!
//! ```text
//!  arena (1 MiB, aligned to 1 MiB)
//!  +-------------------+-----------------+-----------------+-----+-----------------+
//!  | pool 0: header    | pool 1 (16 KiB) | pool 2          | ... | pool 63         |
//!  | ArenaHeader       | blocks of one   | blocks of one   |     | never used yet  |
//!  | PoolMeta[64]      | size class      | size class      |     | (bump: next_unused)
//!  +-------------------+-----------------+-----------------+-----+-----------------+
//! ```
//!
//! The metadata of every block is found by masking: `arena = addr & !(arena_size - 1)`,
//! `pool index = (addr - arena) >> log2(pool_size)`, `meta = &arena.pools[index]`. Keeping pool
//! metadata out of the pool means an empty pool's pages can be decommitted whole.
//!
//! # The life of a pool
//!
//! A pool is in exactly one of three states (pymalloc's, told once here):
//!
//! * **used** — on its size class's `used` list in the heap. Allocation takes from its `free` list;
//!   when that is empty, the blocks freed meanwhile (`local_free`) become the free list, or else the
//!   next never-used block is carved (bump `next_offset`). A pool found with no block left is full.
//! * **full** — every block allocated. It is on no list; the first free moves it to the front of its
//!   class's `used` list (so it is the next pool to allocate from). The last pool of a class stays on
//!   the list even when it empties (see `heap`), so a class that swings between zero and a few
//!   blocks does not take and return a pool each time.
//! * **empty** — no block allocated. It is on its arena's `free_pools` stack, its class forgotten,
//!   ready for any class. Past the heap's budget of committed empty pools, a pool that stays empty
//!   for `purge_delay_ms` has its pages decommitted (see `PoolCore::purge`).
//!
//! Pools never used since the arena was mapped are neither: they sit past `next_unused` and are
//! initialised when first taken (lazy carving, like pymalloc).

use core::mem::{align_of, size_of};
use core::ptr;

use crate::remote::{RemoteList, RemotePool};
use crate::threads::SlotHeader;

/// A free block: its first word links to the next free block of the same pool.
#[repr(C)]
pub(crate) struct FreeBlock {
    pub(crate) next: *mut FreeBlock,
}

/// `PoolMeta::class` of an empty pool: one past the last class, so that it indexes the heap's
/// extra bin, which never has room (a free that reads it from a pool meta is refused by the bin,
/// with no separate test).
pub(crate) const NO_CLASS: u8 = crate::size_class::MAX_CLASSES as u8;

/// The description of one pool, kept in its arena's header: with 64-bit pointers two cache
/// lines, the first read by every free (whatever thread makes it) and written only when the pool
/// changes state, the second for the owning heap's blocks and the frees of other threads.
///
/// Freed blocks go onto `local_free`, allocations come from `free`; when `free` runs dry the two
/// lists are swapped (mimalloc's free-list sharding). A free then never writes the list head the
/// next allocation reads, which keeps an alloc-free-alloc sequence off a store-to-load chain.
/// A block that a thread which does not own the pool's heap frees goes into that thread's bin,
/// and from there, when the bin is flushed, onto `remote` (see `remote`); the owner takes those
/// blocks back on its slow path.
///
/// The first line holds what the free of a block reads before it knows whose the block is
/// (`start_magic`, `start_limit`, `bin_at`, `class`, `block_size`): were it on the line of
/// `free`, `local_free` and `used`, which the owner writes with every block, each free by another
/// thread would take that line from the owner's core and give it back. The owner writes it when
/// the pool changes state and, while the pool is being carved, at each carve (`start_limit`: in
/// a bin's refills, a batch at a time, or a block at a time), until the pool is carved whole.
#[repr(C, align(64))]
pub(crate) struct PoolMeta {
    /// `check::start_magic(block_size)` while the pool has a class, 0 when it is empty (or was
    /// never taken: arena memory starts zeroed): the fast free's test that a pointer starts a
    /// block, with no table to read (see `check::starts_block_below`).
    pub(crate) start_magic: u64,
    /// `start_magic` times minus the pool's first byte (wrapping), written with it: an address
    /// times the multiplier plus this is the pool offset times the multiplier, so that the fast
    /// free's test needs no mask (see `check::starts_block_below`). Not kept with 32-bit pointers,
    /// where the meta fills one line without it.
    #[cfg(target_pointer_width = "64")]
    pub(crate) start_bias: u64,
    /// The pool's first byte, as [`PoolMeta::store_base`] keeps it (read it with
    /// [`PoolMeta::base`]).
    pub(crate) base_stored: *mut u8,
    /// The previous pool on the class's `used` list.
    pub(crate) prev: *mut PoolMeta,
    /// Offset past the last whole block.
    pub(crate) end_offset: u32,
    /// Block size in bytes (valid while `class != NO_CLASS`).
    pub(crate) block_size: u32,
    /// When the pool last became empty (`os::now_ms`, wrapping): purges decommit pools that have
    /// stayed empty for `purge_delay_ms`.
    pub(crate) emptied_at: u32,
    /// Blocks the pool holds when all are carved.
    pub(crate) capacity: u16,
    /// Size class, or [`NO_CLASS`] when empty.
    pub(crate) class: u8,
    /// Whether the pool's pages are committed (false after a decommit, until it is taken again).
    pub(crate) committed: bool,
    /// While the pool has a class: where the bin of its class lies in a heap's slot, in bytes
    /// from the slot's header (the same in every heap of the allocator), so that the fast free
    /// finds the bin with one addition (no multiplication by the bin's size). Meaningless while
    /// the pool is empty (the fast free refuses such a pool first, by its `start_magic` of 0).
    /// Not kept with 32-bit pointers, where the meta fills one line without it: the fast free
    /// computes the place from `class`.
    #[cfg(target_pointer_width = "64")]
    pub(crate) bin_at: u32,
    /// Padding up to `start_limit`.
    #[cfg(target_pointer_width = "64")]
    pub(crate) _line: [u8; 4],
    /// `check::start_limit(block_size, n)` for the `n` blocks carved so far (`next_offset /
    /// block_size`) while the pool has a class, 0 when it is empty: the bound the block-start
    /// test's product is compared with, which refuses the blocks not yet carved and the pool's
    /// tail past its last block (see `check::start_limit`). Written by the owner when the pool is
    /// taken and as it carves (it only grows until the pool is empty again), read by a free from
    /// any thread, hence atomic (a relaxed access is a plain one on the targets that have it):
    /// a thread frees a block handed to it after the block was carved, so it reads a bound that
    /// covers the block. Not kept with 32-bit pointers, whose checks compare the offset with
    /// `end_offset` (the tail refused, a block not yet carved not).
    #[cfg(target_pointer_width = "64")]
    pub(crate) start_limit: crate::sync::AtomicU64,
    /// Carved blocks ready to be allocated.
    pub(crate) free: *mut FreeBlock,
    /// Blocks freed since `free` last ran dry.
    pub(crate) local_free: *mut FreeBlock,
    /// Links on the class's `used` list, or on the arena's `free_pools` stack.
    pub(crate) next: *mut PoolMeta,
    /// Offset of the next never-used block.
    pub(crate) next_offset: u32,
    /// Blocks allocated (blocks in a bin included).
    pub(crate) used: u16,
    /// Whether the pool is on its class's `used` list.
    pub(crate) in_list: bool,
    /// Blocks given back by other threads' bins: a list linked through the blocks, its head
    /// tagged with `remote::QUEUED` while the pool waits on its heap's notification stack.
    /// Written by any thread (compare-exchange), taken whole by the owner (swap).
    pub(crate) remote: RemoteList,
    /// The next pool on the heap's notification stack (written by the thread that queues the pool,
    /// published by the stack's compare-exchange).
    pub(crate) notify_next: *mut PoolMeta,
    /// The last block of the remote list, recorded by the thread that queues the pool (its block
    /// went onto an empty list), published with `notify_next`.
    pub(crate) remote_tail: *mut FreeBlock,
}

/// What `PoolMeta::base_stored` holds: the address itself, or with the `valgrind` feature its
/// complement, so that memcheck's leak check does not take it for a reference to the pool's first
/// block (which would keep that block reachable when the program leaks it).
const BASE_MASK: usize = if cfg!(feature = "valgrind") {
    usize::MAX
} else {
    0
};

impl PoolMeta {
    /// The pool's first byte.
    #[inline(always)]
    pub(crate) fn base(&self) -> *mut u8 {
        Self::load_base(self.base_stored)
    }

    /// The first byte of a pool whose `base_stored` is `stored`.
    #[inline(always)]
    pub(crate) fn load_base(stored: *mut u8) -> *mut u8 {
        stored.map_addr(|a| a ^ BASE_MASK)
    }

    /// What `base_stored` holds for a pool whose first byte is `base`.
    #[inline(always)]
    pub(crate) fn store_base(base: *mut u8) -> *mut u8 {
        base.map_addr(|a| a ^ BASE_MASK)
    }
}

// The remote-free protocol's view of a pool (see `remote`).
impl RemotePool for PoolMeta {
    #[inline(always)]
    unsafe fn remote<'a>(pool: *mut Self) -> &'a RemoteList {
        // SAFETY: the caller's guarantee: a live pool.
        unsafe { &(*pool).remote }
    }
    #[inline(always)]
    unsafe fn set_notify_next(pool: *mut Self, next: *mut Self) {
        // SAFETY: the caller's guarantee: the only writer now (see `RemotePool`).
        unsafe { (*pool).notify_next = next }
    }
    #[inline(always)]
    unsafe fn notify_next(pool: *mut Self) -> *mut Self {
        // SAFETY: the caller's guarantee: published by the notification stack.
        unsafe { (*pool).notify_next }
    }
    #[inline(always)]
    unsafe fn set_remote_tail(pool: *mut Self, tail: *mut u8) {
        // SAFETY: as for `set_notify_next`.
        unsafe { (*pool).remote_tail = tail.cast() }
    }
    #[inline(always)]
    unsafe fn remote_tail(pool: *mut Self) -> *mut u8 {
        // SAFETY: as for `notify_next`.
        unsafe { (*pool).remote_tail.cast() }
    }
}

/// The description of one arena, at its first byte.
#[repr(C)]
pub(crate) struct ArenaHeader {
    /// The heap of a `PoolAllocator` that owns the arena, null for a `Heap`'s. Written once
    /// before any block of the arena is handed out, read by frees from any thread; alone on its
    /// cache line, away from the fields the owner keeps changing.
    pub(crate) slot: *const SlotHeader,
    _pad: [u8; 56],
    /// Links on the heap's usable-arena list (sorted by `nfree`, fullest first).
    pub(crate) next: *mut ArenaHeader,
    pub(crate) prev: *mut ArenaHeader,
    /// Links on the heap's list of all arenas.
    pub(crate) all_next: *mut ArenaHeader,
    pub(crate) all_prev: *mut ArenaHeader,
    /// Pools that can be taken: empty ones plus never-used ones.
    pub(crate) nfree: usize,
    /// Pools that can hold blocks.
    pub(crate) ntotal: usize,
    /// Index of the first never-used pool.
    pub(crate) next_unused: usize,
    /// Stack of empty pools (linked through `PoolMeta::next`).
    pub(crate) free_pools: *mut PoolMeta,
    /// Empty pools of this arena whose pages are still committed.
    pub(crate) empty_committed: usize,
    /// Whether the arena is on the usable list.
    pub(crate) usable: bool,
}

// One pool's description fills exactly two cache lines: what every free reads on the first, the
// lists on the second.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<PoolMeta>() == 128);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(core::mem::offset_of!(PoolMeta, free) == 64);
// With 32-bit pointers it fits one line of 64 bytes (the remote list shares it: cores of such
// targets rarely free each other's blocks, and memory is scarcer there).
#[cfg(target_pointer_width = "32")]
const _: () = assert!(size_of::<PoolMeta>() == 64);

const fn metas_offset() -> usize {
    size_of::<ArenaHeader>().next_multiple_of(align_of::<PoolMeta>())
}

/// Bytes of header an arena of `pools` pools needs.
pub(crate) const fn header_bytes(pools: usize) -> usize {
    metas_offset() + pools * size_of::<PoolMeta>()
}

impl ArenaHeader {
    /// The meta of pool `index`.
    ///
    /// # Safety
    /// `arena` is a live arena header and `index` is below its pools per arena.
    #[inline]
    pub(crate) unsafe fn meta(arena: *mut ArenaHeader, index: usize) -> *mut PoolMeta {
        // SAFETY: the metas follow the header inside the arena's header pools (the caller's bound).
        unsafe {
            arena
                .cast::<u8>()
                .add(metas_offset())
                .cast::<PoolMeta>()
                .add(index)
        }
    }

    /// Writes a fresh header at `base` for an arena of `pools_per_arena` pools whose first
    /// `header_pools` hold the header.
    ///
    /// # Safety
    /// `base` is a fresh arena, aligned to its size, with room for `header_bytes(pools_per_arena)`.
    pub(crate) unsafe fn init(
        base: *mut u8,
        pools_per_arena: usize,
        header_pools: usize,
    ) -> *mut ArenaHeader {
        let a = base.cast::<ArenaHeader>();
        let usable = pools_per_arena - header_pools;
        // SAFETY: the caller guarantees the header fits at `base`, which is aligned to the arena
        // size (far more than the header's alignment).
        unsafe {
            a.write(ArenaHeader {
                slot: ptr::null(),
                _pad: [0; 56],
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                all_next: ptr::null_mut(),
                all_prev: ptr::null_mut(),
                nfree: usable,
                ntotal: usable,
                next_unused: header_pools,
                free_pools: ptr::null_mut(),
                empty_committed: 0,
                usable: false,
            });
        }
        a
    }
}
