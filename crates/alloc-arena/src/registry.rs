//! The arena registry: which pool allocator, if any, owns the arena around an address.
//!
//! pymalloc's `address_in_range` answers "is this block mine?" with a radix tree over the address
//! space (CPython 3.10+); so does this module, shared by every pool allocator of the process. The
//! tree is the workspace's [`ChunkMap`] (a value per 1 MiB chunk), in a static:
//!
//! ```text
//!   address bits:  47 ........ 34 | 33 ........ 20 | 19 ........ 0
//!                  root index     | leaf index     | offset in a 1 MiB chunk
//!
//!   OWNERS: ChunkMap<AtomicU32>: root [AtomicPtr<Leaf>; 2^14] (static, 128 KiB of zero pages)
//!   Leaf:   [AtomicU32; 2^14]    (64 KiB, mapped on first use, never freed; covers 16 GiB)
//! ```
//!
//! A leaf slot holds the owner id (non-zero) of the allocator whose arena covers that 1 MiB chunk,
//! or 0. Arenas are at least 1 MiB and aligned to their size, so every chunk belongs to at most one
//! arena. A lookup is two dependent loads (the root slot, the owner) and never touches arena
//! memory, so it is safe for any pointer, live or not.
//!
//! On 64-bit unix the chunks below 2^47 (every address the kernel hands out by default) are
//! recorded instead in a flat table (`flat`): one `u32` per chunk in 512 MiB of reserved,
//! read-only zero pages, opened for writing a page at a time as arenas register. A lookup there
//! is one compare and one load, which is what every `free` pays first; the tree keeps the rest
//! (and everything, where the OS refuses the reservation).
//!
//! Concurrency: the flat table is mapped once, under a lock, at the first registration, and
//! published by its bound (`LIMIT`, Release after the base); a leaf is installed once by the map (compare-exchange, Release; a lookup's Acquire
//! load of the root slot sees the zeroed leaf) and never freed; slots are written only by the owner
//! of the arena while it maps or unmaps it: set (Release) after the arena is mapped, cleared before
//! it is unmapped. A lookup of a block that is live is therefore exact; a lookup of a dangling
//! pointer may answer either way, which callers only use for "unknown" pointers anyway.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use alloc_core::ArenaError;
use alloc_core::chunk_map::{ChunkMap, ChunkMapError, LEAF_LEN, Leaf, LeafSource, ROOT_LEN};

use crate::sync::{AtomicU32, Ordering};

pub(crate) use alloc_core::chunk_map::CHUNK_SHIFT;

/// Chunk -> owner id.
static OWNERS: ChunkMap<AtomicU32> = ChunkMap::new();

/// Leaves kept in the program's zeroed data, used before any is mapped: a pool over a region
/// handed over by the caller (`RegionArenas`) then registers its arenas with no OS call, as long
/// as they lie within two 16 GiB ranges. With 32-bit addresses one leaf covers them all.
const RESERVED_LEAVES: usize = if ROOT_LEN == 1 { 1 } else { 2 };
static RESERVED: [Leaf<AtomicU32>; RESERVED_LEAVES] = [const {
    Leaf {
        slots: [const { AtomicU32::new(0) }; LEAF_LEN],
    }
}; RESERVED_LEAVES];
/// Which reserved leaves are taken (bit i: `RESERVED[i]`).
static RESERVED_TAKEN: AtomicU32 = AtomicU32::new(0);

/// Leaves mapped from the OS for the rest of the process (the registry's maps and
/// `SwappableArenas`' record of makers): an anonymous mapping is zero-filled.
pub(crate) struct OsLeaves<V>(PhantomData<fn() -> V>);

impl<V> OsLeaves<V> {
    pub(crate) const NEW: Self = OsLeaves(PhantomData);
}

// SAFETY: `map_forever` gives fresh zero-filled pages (page-aligned, so aligned for any leaf),
// used by nobody else; `free_leaf` unmaps exactly what it gave.
unsafe impl<V> LeafSource<V> for OsLeaves<V> {
    fn alloc_leaf(&self) -> *mut Leaf<V> {
        crate::os::map_forever(core::mem::size_of::<Leaf<V>>())
            .map_or(ptr::null_mut(), |p| p.cast::<Leaf<V>>().as_ptr())
    }

    unsafe fn free_leaf(&self, leaf: *mut Leaf<V>) {
        // SAFETY: the caller's guarantee: a mapping of exactly one leaf, referred to by nothing.
        unsafe {
            crate::os::unmap_forever(
                NonNull::new_unchecked(leaf.cast()),
                core::mem::size_of::<Leaf<V>>(),
            )
        };
    }
}

/// The registry's leaves: a reserved one while any is left, then the OS's.
struct RegistryLeaves;

// SAFETY: a reserved leaf is static zeroed memory handed out once (its bit), and comes back only
// when it lost the race to be installed (so it is still zero); the rest is `OsLeaves`.
unsafe impl LeafSource<AtomicU32> for RegistryLeaves {
    fn alloc_leaf(&self) -> *mut Leaf<AtomicU32> {
        for (i, leaf) in RESERVED.iter().enumerate() {
            let bit = 1 << i;
            // Relaxed: the leaf's contents are published by the root's compare-exchange.
            if RESERVED_TAKEN.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                return ptr::from_ref(leaf).cast_mut();
            }
        }
        OsLeaves::NEW.alloc_leaf()
    }

    unsafe fn free_leaf(&self, leaf: *mut Leaf<AtomicU32>) {
        if let Some(i) = RESERVED.iter().position(|l| ptr::eq(l, leaf)) {
            RESERVED_TAKEN.fetch_and(!(1 << i), Ordering::Relaxed);
        } else {
            // SAFETY: the caller's guarantee; not a reserved leaf, so one of the OS's.
            unsafe { OsLeaves::NEW.free_leaf(leaf) };
        }
    }
}

/// Source of owner ids: 0 means "nobody".
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The prefixes of this crate's functions, for tracers to skip (`alloc_core::plumbing`).
static FRAMES: alloc_core::plumbing::Prefixes = &["alloc_arena::"];

/// A fresh owner id (non-zero). Every pool and span allocator takes one before its first block,
/// so this is where the crate registers its frames for tracers.
pub(crate) fn new_owner_id() -> u32 {
    #[cfg(not(loom))]
    alloc_core::plumbing::register(&FRAMES);
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // 0 means "no owner"; `u32::MAX` is `NO_KEY`, the fast paths' key that matches nothing.
        if id != 0 && id != u32::MAX {
            return id;
        }
    }
}

/// Makes `fresh` the id in `slot` unless another thread put one there first; returns the id.
/// Relaxed: an id is only compared with itself (thread caches, the registry's slots, which carry
/// their own ordering).
pub(crate) fn install_id(slot: &AtomicU32, fresh: u32) -> u32 {
    match slot.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => fresh,
        Err(winner) => winner,
    }
}

/// The registry id of the allocator whose arena (or span) holds `ptr`, 0 if none: compare it with
/// `PoolAllocator::registry_id` to route a pointer among several allocators with one lookup.
/// Any pointer may be asked: nothing but the registry is read.
pub fn arena_owner(ptr: *const u8) -> u32 {
    owner_of(ptr as usize)
}

/// Whether `ptr` lies in an arena of any pool allocator of the process (any pointer may be asked:
/// nothing but the registry is read). Where this says yes, a pointer that no allocator claims as a
/// live block is a bad free (freed before, or inside a block), never a block of the C library's.
pub fn in_pool_arena(ptr: *const u8) -> bool {
    owner_of(ptr as usize) != 0
}

/// The owner id of the arena covering `addr`, or 0: one load from the flat table where there is
/// one (unix, 64-bit, an address below 2^47), else two dependent loads in the tree.
#[inline]
pub(crate) fn owner_of(addr: usize) -> u32 {
    if let Some(owner) = flat::lookup(addr >> CHUNK_SHIFT) {
        return owner;
    }
    owner_in_tree(addr)
}

/// Whether the owner of `addr` is `id`, for a fast path, with no call: false where the flat table
/// does not cover `addr` (the caller then takes its long way, which asks [`owner_of`]). Without a
/// flat table, the tree answers.
// Used by the fast paths (an OS is needed) alone.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) fn owned_by_fast(addr: usize, id: u32) -> bool {
    owner_fast(addr) == Some(id)
}

/// The owner id of the arena covering `addr` (0 if none) for the fast frees: where the flat
/// table does not cover `addr`, `None` (the caller then takes its long way, which asks
/// [`owner_of`]). Without a flat table, the tree answers.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) fn owner_fast(addr: usize) -> Option<u32> {
    match flat::lookup(addr >> CHUNK_SHIFT) {
        Some(owner) => Some(owner),
        None if flat::PRESENT => None,
        None => Some(owner_in_tree(addr)),
    }
}

/// [`owner_of`] in the tree: where there is a flat table, only for the addresses it does not cover
/// (out of line: off the fast paths).
#[cfg_attr(all(unix, target_pointer_width = "64", not(loom)), cold, inline(never))]
fn owner_in_tree(addr: usize) -> u32 {
    let Some((root, slot)) = ChunkMap::<AtomicU32>::split(addr) else {
        return 0;
    };
    match OWNERS.leaf(root) {
        // Acquire: pairs with `register`'s Release (the arena's header is written before).
        Some(leaf) => leaf.slots[slot].load(Ordering::Acquire),
        None => 0,
    }
}

/// The slot that holds the owner of the chunk at `addr`, made (a leaf mapped, a page of the flat
/// table opened) if need be.
fn slot_to_write(addr: usize) -> Result<&'static AtomicU32, ArenaError> {
    match flat::entry(addr >> CHUNK_SHIFT) {
        Ok(Some(entry)) => return Ok(entry),
        Ok(None) => {}
        Err(size) => {
            return Err(ArenaError::Os {
                operation: "protect",
                size,
                code: 0,
            });
        }
    }
    OWNERS
        .get_or_insert(addr, &RegistryLeaves)
        .map_err(|e| match e {
            ChunkMapError::NoMemory { size } => ArenaError::Os {
                operation: "map",
                size,
                code: 0,
            },
            _ => ArenaError::Unsupported {
                size: 1 << CHUNK_SHIFT,
                align: 1 << CHUNK_SHIFT,
                reason: "the arena lies above the registry's address range",
            },
        })
}

/// The slot that holds the owner of the chunk at `addr`, if one was ever made.
fn slot_written(addr: usize) -> Option<&'static AtomicU32> {
    if let Some(entry) = flat::entry_if_covered(addr >> CHUNK_SHIFT) {
        return Some(entry);
    }
    OWNERS.get(addr)
}

/// Takes the registry's one lock (the flat table's, held only while the table is mapped, once)
/// for a fork: the pools' fork handler calls this before `fork`.
pub(crate) fn lock_for_fork() {
    flat::lock_for_fork();
}

/// Releases what [`lock_for_fork`] took, in the parent or the child.
///
/// # Safety
/// On the thread that called [`lock_for_fork`] (in the child: the thread the fork returned in).
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: the caller's guarantee.
    unsafe { flat::unlock_after_fork() }
}

/// Marks every 1 MiB chunk of `[base, base + size)` as owned by `id`.
///
/// Fails (leaving nothing registered) if the range lies outside the registry's address space or
/// the OS refuses the memory to record it in.
pub(crate) fn register(base: usize, size: usize, id: u32) -> Result<(), ArenaError> {
    debug_assert!(id != 0 && base.is_multiple_of(1 << CHUNK_SHIFT));
    let chunks = size >> CHUNK_SHIFT;
    for i in 0..chunks {
        match slot_to_write(base + (i << CHUNK_SHIFT)) {
            Ok(owner) => owner.store(id, Ordering::Release),
            Err(e) => {
                unregister(base, i << CHUNK_SHIFT);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Clears the chunks of `[base, base + size)`; called before the arena is unmapped.
pub(crate) fn unregister(base: usize, size: usize) {
    for i in 0..size >> CHUNK_SHIFT {
        // A slot that holds 0 is left alone: in the flat table its page may not be open for
        // writing (a chunk never registered).
        if let Some(owner) = slot_written(base + (i << CHUNK_SHIFT))
            && owner.load(Ordering::Relaxed) != 0
        {
            owner.store(0, Ordering::Release);
        }
    }
}

/// The flat table: on 64-bit unix, the owner of every 1 MiB chunk below 2^47 (the user address
/// space of x86-64 and aarch64 Linux with four-level page tables) in one array of 2^27 `u32`s,
/// so that a lookup is one load after one compare, against the tree's two dependent loads and
/// its checks.
///
/// The array is 512 MiB of address space reserved read-only at the first registration, which
/// costs no memory and no commit charge: its pages read as zeros (the kernel's shared zero page)
/// until a registration opens one for writing (`mprotect`), once per page; one page of entries
/// covers 1 GiB of addresses, and arenas cluster, so a process opens a handful. If the OS refuses
/// the reservation (an address-space limit), the refusal is for good: the tree then records every
/// chunk, and lookups go to it (`LIMIT` stays 0), so no chunk is ever recorded in one structure
/// and looked up in the other. Chunks at or above 2^47 are always the tree's.
#[cfg(all(unix, target_pointer_width = "64", not(loom)))]
mod flat {
    use core::ptr::{self, NonNull};
    use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

    use alloc_core::lock::Lock;

    use super::CHUNK_SHIFT;

    /// There is a flat table on this target.
    pub(super) const PRESENT: bool = true;

    /// Address bits the table covers.
    const BITS: u32 = 47;
    /// Entries of the table: one per chunk below 2^47.
    const CHUNKS: usize = 1 << (BITS - CHUNK_SHIFT);
    /// Bytes of the table.
    const BYTES: usize = CHUNKS * core::mem::size_of::<AtomicU32>();
    /// The unit `OPENED` counts in (the smallest page size).
    const UNIT: usize = 4096;

    /// Entries a lookup may read: 0 until the table is mapped, then `CHUNKS`.
    static LIMIT: AtomicUsize = AtomicUsize::new(0);
    /// The table (null until mapped; never unmapped).
    static BASE: AtomicPtr<AtomicU32> = AtomicPtr::new(ptr::null_mut());
    /// Whether the table was asked of the OS (made or refused), under a lock so that one thread
    /// asks. A fork waits for it (`lock_for_fork`), so that a child never inherits it held.
    static TRIED: Lock<bool> = Lock::new(false);

    /// Takes the table's lock for a fork (the pools' fork handler calls this).
    pub(crate) fn lock_for_fork() {
        TRIED.acquire_for_fork();
    }

    /// Releases the table's lock after a fork, in the parent or the child.
    ///
    /// # Safety
    /// As for `Lock::release_after_fork`: on the thread that called [`lock_for_fork`].
    pub(crate) unsafe fn unlock_after_fork() {
        // SAFETY: the caller's guarantee.
        unsafe { TRIED.release_after_fork() }
    }
    /// Which units of the table are writable (bit i: bytes `[i * UNIT, (i + 1) * UNIT)`).
    static OPENED: [AtomicU64; BYTES / UNIT / 64] =
        [const { AtomicU64::new(0) }; BYTES / UNIT / 64];

    /// The owner of chunk `index` if the table covers it (it is mapped and `index` is below
    /// 2^27); `None` sends the caller to the tree.
    #[inline(always)]
    pub(super) fn lookup(index: usize) -> Option<u32> {
        // Acquire: pairs with the Release store of `LIMIT`, made after `BASE`'s.
        if index < LIMIT.load(Ordering::Acquire) {
            // SAFETY: `LIMIT` is non-zero only once `BASE` holds the table, whose `CHUNKS` entries
            // (zero pages or written ones) stay mapped and readable for the process.
            let entry = unsafe { &*BASE.load(Ordering::Relaxed).add(index) };
            // Acquire: pairs with `register`'s Release (the arena's header is written before).
            Some(entry.load(Ordering::Acquire))
        } else {
            None
        }
    }

    /// The table, mapped at the first call; `None` if the OS refused it (then, for good).
    fn table() -> Option<NonNull<AtomicU32>> {
        if let Some(base) = NonNull::new(BASE.load(Ordering::Acquire)) {
            return Some(base);
        }
        let mut tried = TRIED.lock();
        if !*tried {
            *tried = true;
            if let Some(p) = crate::os::reserve_zeroed(BYTES) {
                BASE.store(p.as_ptr().cast(), Ordering::Release);
                LIMIT.store(CHUNKS, Ordering::Release);
            }
        }
        NonNull::new(BASE.load(Ordering::Acquire))
    }

    /// The entry of chunk `index`, writable, if the table records it: `Ok(None)` when the tree
    /// does (beyond 2^47, or no table), `Err(bytes)` when the OS refused to open its page.
    pub(super) fn entry(index: usize) -> Result<Option<&'static AtomicU32>, usize> {
        if index >= CHUNKS {
            return Ok(None);
        }
        let Some(base) = table() else { return Ok(None) };
        // SAFETY: `index < CHUNKS`: within the table.
        let entry = unsafe { base.as_ptr().add(index) };
        let page = crate::os::page_size();
        let start = entry as usize & !(page - 1);
        let unit = (entry as usize - base.as_ptr() as usize) / UNIT;
        let (word, bit) = (&OPENED[unit / 64], 1u64 << (unit % 64));
        // Acquire: a unit marked open was opened (the `mprotect` returned) before it was marked.
        if word.load(Ordering::Acquire) & bit == 0 {
            // SAFETY: a page-aligned page of the table, our own reservation (the table starts on
            // a page, so the page of an entry lies in it).
            let opened =
                unsafe { crate::os::make_writable(NonNull::new_unchecked(start as *mut u8), page) };
            if !opened {
                return Err(page);
            }
            word.fetch_or(bit, Ordering::Release);
        }
        // SAFETY: within the table, now writable; entries are atomics, never moved.
        Ok(Some(unsafe { &*entry }))
    }

    /// The entry of chunk `index` if the table records it, for reading (its page may be closed
    /// to writes: only a chunk that was registered, so holds an owner, has an open page).
    pub(super) fn entry_if_covered(index: usize) -> Option<&'static AtomicU32> {
        if index < LIMIT.load(Ordering::Acquire) {
            // SAFETY: as in `lookup`.
            Some(unsafe { &*BASE.load(Ordering::Relaxed).add(index) })
        } else {
            None
        }
    }
}

/// No flat table on this target (not 64-bit unix, or a loom build): the tree records and answers
/// everything, and these answer "not covered".
#[cfg(not(all(unix, target_pointer_width = "64", not(loom))))]
mod flat {
    use core::sync::atomic::AtomicU32;

    /// There is no flat table on this target.
    pub(super) const PRESENT: bool = false;

    #[inline(always)]
    pub(super) fn lookup(_index: usize) -> Option<u32> {
        None
    }

    pub(super) fn entry(_index: usize) -> Result<Option<&'static AtomicU32>, usize> {
        Ok(None)
    }

    pub(super) fn entry_if_covered(_index: usize) -> Option<&'static AtomicU32> {
        None
    }

    pub(super) fn lock_for_fork() {}

    /// # Safety
    /// None needed: there is no lock.
    pub(super) unsafe fn unlock_after_fork() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_chunks_answer_their_owner_and_others_answer_zero() {
        let id = new_owner_id();
        let base = 0x7ab0_0000_0000usize;
        register(base, 2 << CHUNK_SHIFT, id).unwrap();
        assert_eq!(owner_of(base), id);
        assert_eq!(owner_of(base + (1 << CHUNK_SHIFT) + 12345), id);
        assert_eq!(owner_of(base + (2 << CHUNK_SHIFT)), 0);
        assert_eq!(owner_of(base - 1), 0);
        unregister(base, 2 << CHUNK_SHIFT);
        assert_eq!(owner_of(base + 5), 0);
    }

    #[test]
    fn chunks_on_both_sides_of_the_flat_table_answer_their_owner() {
        let id = new_owner_id();
        // Below 2^47 (the flat table where there is one) and above (the tree always).
        for base in [0x10_0000_0000usize, (1usize << 47) + (3 << CHUNK_SHIFT)] {
            if base >> alloc_core::chunk_map::ADDRESS_BITS != 0 {
                continue;
            }
            register(base, 3 << CHUNK_SHIFT, id).unwrap();
            assert_eq!(owner_of(base + (2 << CHUNK_SHIFT) + 7), id);
            assert_eq!(owner_of(base - 1), 0);
            assert_eq!(owner_of(base + (3 << CHUNK_SHIFT)), 0);
            unregister(base, 3 << CHUNK_SHIFT);
            assert_eq!(owner_of(base), 0);
        }
    }

    #[test]
    fn clearing_chunks_never_registered_is_harmless() {
        // Registers something first, so that the flat table exists; then clears a range whose
        // page of the table was never opened (a write there would fault).
        let id = new_owner_id();
        let base = 0x20_0000_0000usize;
        register(base, 1 << CHUNK_SHIFT, id).unwrap();
        unregister(0x5000_0000_0000, 4 << CHUNK_SHIFT);
        assert_eq!(owner_of(0x5000_0000_0000), 0);
        assert_eq!(owner_of(base), id);
        unregister(base, 1 << CHUNK_SHIFT);
    }

    #[test]
    fn addresses_beyond_the_registry_are_refused() {
        use alloc_core::chunk_map::ADDRESS_BITS;
        if ADDRESS_BITS < usize::BITS {
            let high = 1usize << ADDRESS_BITS;
            assert_eq!(owner_of(high), 0);
            assert!(register(high, 1 << CHUNK_SHIFT, new_owner_id()).is_err());
        }
    }
}
