//! The arena registry: which pool allocator, if any, owns the arena around an address.
//!
//! pymalloc's `address_in_range` answers "is this block mine?" with a radix tree over the address
//! space (CPython 3.10+); so does this module, shared by every pool allocator of the process:
//!
//! ```text
//!   address bits:  47 ........ 34 | 33 ........ 20 | 19 ........ 0
//!                  root index     | leaf index     | offset in a 1 MiB chunk
//!
//!   ROOT: [AtomicPtr<Leaf>; 2^14]   (static, 128 KiB of zero pages)
//!   Leaf: [AtomicU32; 2^14]          (64 KiB, mapped on first use, never freed; covers 16 GiB)
//! ```
//!
//! A leaf slot holds the owner id (non-zero) of the allocator whose arena covers that 1 MiB chunk,
//! or 0. Arenas are at least 1 MiB and aligned to their size, so every chunk belongs to at most one
//! arena. A lookup never touches arena memory, so it is safe for any pointer, live or not.
//!
//! Concurrency: a leaf is installed once with a compare-exchange (Release; a lookup's Acquire load
//! of the pointer sees the zeroed leaf); slots are written only by the owner of the arena while it
//! maps or unmaps it: set (Release) after the arena is mapped, cleared before it is unmapped.
//! A lookup of a block that is live is therefore exact; a lookup of a dangling pointer may answer
//! either way, which callers only use for "unknown" pointers anyway.

use core::ptr::{self, NonNull};

use alloc_core::ArenaError;

use crate::sync::{AtomicPtr, AtomicU32, Ordering};

/// Registry granularity: 1 MiB, the smallest arena size allowed.
pub(crate) const CHUNK_SHIFT: u32 = 20;

#[cfg(target_pointer_width = "64")]
const ADDRESS_BITS: u32 = 48;
#[cfg(not(target_pointer_width = "64"))]
const ADDRESS_BITS: u32 = usize::BITS;

const INDEX_BITS: u32 = ADDRESS_BITS - CHUNK_SHIFT;
const LEAF_BITS: u32 = if INDEX_BITS > 14 { 14 } else { INDEX_BITS };
pub(crate) const ROOT_BITS: u32 = INDEX_BITS - LEAF_BITS;
pub(crate) const LEAF_LEN: usize = 1 << LEAF_BITS;

struct Leaf {
    owners: [AtomicU32; LEAF_LEN],
}

static ROOT: [AtomicPtr<Leaf>; 1 << ROOT_BITS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 1 << ROOT_BITS];

/// Leaves kept in the program's zeroed data, used before any is mapped: a pool over a region
/// handed over by the caller (`RegionArenas`) then registers its arenas with no OS call, as long
/// as they lie within two 16 GiB ranges.
static RESERVED: [Leaf; 2] = [const {
    Leaf {
        owners: [const { AtomicU32::new(0) }; LEAF_LEN],
    }
}; 2];
/// Which reserved leaves are taken (bit i: `RESERVED[i]`).
static RESERVED_TAKEN: AtomicU32 = AtomicU32::new(0);

/// A reserved leaf, if one is left.
fn take_reserved() -> *mut Leaf {
    for (i, leaf) in RESERVED.iter().enumerate() {
        let bit = 1 << i;
        // Relaxed: the leaf's contents are published by the root's compare-exchange, not by this.
        if RESERVED_TAKEN.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            return ptr::from_ref(leaf).cast_mut();
        }
    }
    ptr::null_mut()
}

/// Gives back a leaf that lost the race to be installed.
///
/// # Safety
/// `leaf` came from `take_reserved` or `map_forever` and was never published.
unsafe fn discard_leaf(leaf: *mut Leaf) {
    if let Some(i) = RESERVED.iter().position(|l| ptr::eq(l, leaf)) {
        RESERVED_TAKEN.fetch_and(!(1 << i), Ordering::Relaxed);
    } else {
        // SAFETY: the caller's guarantee: a mapping of exactly one leaf, never published.
        unsafe {
            crate::os::unmap_forever(
                NonNull::new_unchecked(leaf.cast()),
                core::mem::size_of::<Leaf>(),
            )
        };
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
        // 0 means "no owner"; `NO_KEY` is the fast paths' key that matches nothing.
        if id != 0 && id != crate::NO_KEY {
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

#[inline]
/// (root index, leaf slot) of the 1 MiB chunk holding `addr`, or `None` above the address range.
pub(crate) fn split(addr: usize) -> Option<(usize, usize)> {
    if ADDRESS_BITS < usize::BITS && addr >> ADDRESS_BITS != 0 {
        return None;
    }
    let chunk = addr >> CHUNK_SHIFT;
    Some((chunk >> LEAF_BITS, chunk & (LEAF_LEN - 1)))
}

/// The owner id of the arena covering `addr`, or 0.
#[inline]
pub(crate) fn owner_of(addr: usize) -> u32 {
    let Some((root, slot)) = split(addr) else {
        return 0;
    };
    // Acquire: pairs with the Release that installed the leaf.
    let leaf = ROOT[root].load(Ordering::Acquire);
    if leaf.is_null() {
        return 0;
    }
    // SAFETY: installed leaves are never freed, and `slot < LEAF_LEN`.
    unsafe { (*leaf).owners[slot].load(Ordering::Acquire) }
}

fn leaf_for(root: usize) -> Result<&'static Leaf, ArenaError> {
    let current = ROOT[root].load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: installed leaves live for the rest of the process.
        return Ok(unsafe { &*current });
    }
    let size = core::mem::size_of::<Leaf>();
    let leaf = crate::remote::publish_once(
        &ROOT[root],
        || {
            let reserved = take_reserved();
            if !reserved.is_null() {
                return reserved;
            }
            crate::os::map_forever(size).map_or(ptr::null_mut(), |p| p.cast::<Leaf>().as_ptr())
        },
        // SAFETY: our leaf was never published.
        |mine| unsafe { discard_leaf(mine) },
    );
    if leaf.is_null() {
        return Err(ArenaError::Os {
            operation: "map",
            size,
            code: 0,
        });
    }
    // SAFETY: zero-filled memory is a valid array of AtomicU32 zeros; installed leaves are never
    // freed.
    Ok(unsafe { &*leaf })
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
        let result = split(addr)
            .ok_or(ArenaError::Unsupported {
                size,
                align: size,
                reason: "the arena lies above the registry's address range",
            })
            .and_then(|(root, slot)| Ok((leaf_for(root)?, slot)));
        match result {
            Ok((leaf, slot)) => leaf.owners[slot].store(id, Ordering::Release),
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
        let addr = base + (i << CHUNK_SHIFT);
        if let Some((root, slot)) = split(addr) {
            let leaf = ROOT[root].load(Ordering::Acquire);
            if !leaf.is_null() {
                // SAFETY: installed leaves are never freed.
                unsafe { (*leaf).owners[slot].store(0, Ordering::Release) };
            }
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
        if ADDRESS_BITS < usize::BITS {
            let high = 1usize << ADDRESS_BITS;
            assert_eq!(owner_of(high), 0);
            assert!(register(high, 1 << CHUNK_SHIFT, new_owner_id()).is_err());
        }
    }
}
