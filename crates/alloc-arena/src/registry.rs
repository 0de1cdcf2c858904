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
//! Concurrency: a leaf is installed once by the map (compare-exchange, Release; a lookup's Acquire
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

/// The owner id of the arena covering `addr`, or 0: two dependent loads.
#[inline]
pub(crate) fn owner_of(addr: usize) -> u32 {
    let Some((root, slot)) = ChunkMap::<AtomicU32>::split(addr) else {
        return 0;
    };
    match OWNERS.leaf(root) {
        // Acquire: pairs with `register`'s Release (the arena's header is written before).
        Some(leaf) => leaf.slots[slot].load(Ordering::Acquire),
        None => 0,
    }
}

/// Marks every 1 MiB chunk of `[base, base + size)` as owned by `id`.
///
/// Fails (leaving nothing registered) if the range lies outside the registry's address space or a
/// leaf cannot be mapped.
pub(crate) fn register(base: usize, size: usize, id: u32) -> Result<(), ArenaError> {
    debug_assert!(id != 0 && base.is_multiple_of(1 << CHUNK_SHIFT));
    let chunks = size >> CHUNK_SHIFT;
    for i in 0..chunks {
        let addr = base + (i << CHUNK_SHIFT);
        match OWNERS.get_or_insert(addr, &RegistryLeaves) {
            Ok(owner) => owner.store(id, Ordering::Release),
            Err(e) => {
                unregister(base, i << CHUNK_SHIFT);
                return Err(match e {
                    ChunkMapError::NoMemory { size } => ArenaError::Os {
                        operation: "map",
                        size,
                        code: 0,
                    },
                    _ => ArenaError::Unsupported {
                        size,
                        align: size,
                        reason: "the arena lies above the registry's address range",
                    },
                });
            }
        }
    }
    Ok(())
}

/// Clears the chunks of `[base, base + size)`; called before the arena is unmapped.
pub(crate) fn unregister(base: usize, size: usize) {
    for i in 0..size >> CHUNK_SHIFT {
        if let Some(owner) = OWNERS.get(base + (i << CHUNK_SHIFT)) {
            owner.store(0, Ordering::Release);
        }
    }
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
    fn addresses_beyond_the_registry_are_refused() {
        use alloc_core::chunk_map::ADDRESS_BITS;
        if ADDRESS_BITS < usize::BITS {
            let high = 1usize << ADDRESS_BITS;
            assert_eq!(owner_of(high), 0);
            assert!(register(high, 1 << CHUNK_SHIFT, new_owner_id()).is_err());
        }
    }
}
