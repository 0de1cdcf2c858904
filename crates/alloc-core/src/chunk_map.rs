//! [`ChunkMap`]: a value per 1 MiB chunk of the address space, in a two-level radix tree that a
//! lookup walks in two dependent loads, without a lock, from any thread.
//!
//! ```text
//!   address bits:  47 ........ 34 | 33 ........ 20 | 19 ........ 0
//!                  root index     | leaf index     | offset in the 1 MiB chunk
//!
//!   ChunkMap<V>: [AtomicPtr<Leaf<V>>; ROOT_LEN]     (the root: in the map itself)
//!   Leaf<V>:     [V; LEAF_LEN]                       (from the caller's LeafSource; covers 16 GiB)
//! ```
//!
//! The allocator crates keep per-chunk facts here: which pool allocator owns an arena (a
//! `ChunkMap<AtomicU32>` in a static, looked up by every free), which arena provider made it,
//! and where a debug decorator's per-block words for the chunk live (`V` an `AtomicPtr` to them).
//!
//! # Invariants
//!
//! * **Leaves are published once and kept.** A leaf is made by the caller's [`LeafSource`]
//!   (zero-filled), installed into its empty root slot by one compare-exchange (Release; a loser
//!   gives its own leaf back to the source and uses the winner's), and stays there until
//!   [`ChunkMap::free_leaves`], which needs `&mut`. A lookup's Acquire load of the root slot
//!   therefore sees the leaf zeroed or later, and a `&V` it returns is valid for as long as the
//!   map is borrowed.
//! * **Values are the caller's.** The map never writes a `V`: it hands out `&V` (atomics), and
//!   the caller picks the orderings of its own reads and writes. An all-zero `V` is the empty
//!   value ([`ZeroIsEmpty`]), which is what a chunk holds until it is written.
//! * **Any address may be asked.** A lookup reads only the map, never the memory at the
//!   address; above [`ADDRESS_BITS`] it answers `None`.
//! * **No allocation of its own.** Nodes come only from the `LeafSource`, so the map can serve an
//!   allocator from its first call (a static map with leaves from the OS or from static memory).

use core::ptr;
#[cfg(target_has_atomic = "64")]
use core::sync::atomic::AtomicU64;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering};

use thiserror::Error;

/// A chunk is 1 MiB of addresses: the smallest arena of a pool allocator.
pub const CHUNK_SHIFT: u32 = 20;

/// Bits of address the map covers (user-space addresses of the 64-bit targets: 48 bits).
#[cfg(target_pointer_width = "64")]
pub const ADDRESS_BITS: u32 = 48;
/// Bits of address the map covers (every bit on narrower targets).
#[cfg(not(target_pointer_width = "64"))]
pub const ADDRESS_BITS: u32 = usize::BITS;

const INDEX_BITS: u32 = ADDRESS_BITS - CHUNK_SHIFT;
/// Bits of the chunk index a leaf covers.
pub const LEAF_BITS: u32 = if INDEX_BITS > 14 { 14 } else { INDEX_BITS };
/// Bits of the chunk index the root covers.
pub const ROOT_BITS: u32 = INDEX_BITS - LEAF_BITS;
/// Values per leaf.
pub const LEAF_LEN: usize = 1 << LEAF_BITS;
/// Leaf pointers in the root.
pub const ROOT_LEN: usize = 1 << ROOT_BITS;

/// A type whose all-zero bytes are a valid value: the "nothing recorded" of a chunk.
///
/// # Safety
/// Memory of `size_of::<Self>()` zero bytes, suitably aligned, is a valid `Self`.
pub unsafe trait ZeroIsEmpty {}

// SAFETY: zero is a valid integer.
unsafe impl ZeroIsEmpty for AtomicU8 {}
// SAFETY: zero is a valid integer.
unsafe impl ZeroIsEmpty for AtomicU32 {}
// SAFETY: zero is a valid integer.
#[cfg(target_has_atomic = "64")]
unsafe impl ZeroIsEmpty for AtomicU64 {}
// SAFETY: zero is a valid integer.
unsafe impl ZeroIsEmpty for AtomicUsize {}
// SAFETY: all-zero bytes are the null pointer.
unsafe impl<T> ZeroIsEmpty for AtomicPtr<T> {}
// SAFETY: a map is its root, an array of atomic pointers: all-zero is an empty map.
unsafe impl<V> ZeroIsEmpty for ChunkMap<V> {}

/// The values of the `LEAF_LEN` chunks of one 16 GiB range.
pub struct Leaf<V> {
    /// One value per chunk, in address order.
    pub slots: [V; LEAF_LEN],
}

/// Where a map's leaves come from and go back to.
///
/// # Safety
/// `alloc_leaf` returns null (no memory) or a pointer to memory of `size_of::<Leaf<V>>()` bytes,
/// aligned for `Leaf<V>`, every byte zero, that nothing else uses until it is passed to
/// `free_leaf` of the same source.
pub unsafe trait LeafSource<V> {
    /// A zero-filled leaf, or null.
    fn alloc_leaf(&self) -> *mut Leaf<V>;

    /// Takes back a leaf that nothing refers to any more (one that lost the race to be
    /// installed, or one [`ChunkMap::free_leaves`] removed).
    ///
    /// # Safety
    /// `leaf` came from `alloc_leaf` of this source and is referred to by nothing.
    unsafe fn free_leaf(&self, leaf: *mut Leaf<V>);
}

/// Why [`ChunkMap::get_or_insert`] found no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChunkMapError {
    /// The address lies above the [`ADDRESS_BITS`] the map covers.
    #[error("address {addr:#x} lies above the {ADDRESS_BITS}-bit range a chunk map covers")]
    OutOfRange {
        /// The address asked about.
        addr: usize,
    },
    /// The leaf source had no memory for the leaf the address needs.
    #[error("no memory for a chunk map leaf of {size} bytes")]
    NoMemory {
        /// The size of the leaf.
        size: usize,
    },
}

/// A value of type `V` per 1 MiB chunk of the address space (see the [module](self)).
///
/// ```
/// use alloc_core::chunk_map::{ChunkMap, Leaf, LeafSource};
/// use core::sync::atomic::{AtomicU32, Ordering};
///
/// /// Leaves from the test's heap, kept for the life of the program.
/// struct Boxed;
/// // SAFETY: each leaf is a fresh zeroed allocation of the leaf's layout, freed once.
/// unsafe impl LeafSource<AtomicU32> for Boxed {
///     fn alloc_leaf(&self) -> *mut Leaf<AtomicU32> {
///         let layout = std::alloc::Layout::new::<Leaf<AtomicU32>>();
///         // SAFETY: the layout is not zero-sized.
///         unsafe { std::alloc::alloc_zeroed(layout).cast() }
///     }
///     unsafe fn free_leaf(&self, leaf: *mut Leaf<AtomicU32>) {
///         let layout = std::alloc::Layout::new::<Leaf<AtomicU32>>();
///         // SAFETY: the caller's guarantee: from `alloc_leaf`, unreferenced.
///         unsafe { std::alloc::dealloc(leaf.cast(), layout) }
///     }
/// }
///
/// static OWNERS: ChunkMap<AtomicU32> = ChunkMap::new();
/// let addr = 0x5555_0012_3456;
/// assert!(OWNERS.get(addr).is_none());
/// OWNERS.get_or_insert(addr, &Boxed).unwrap().store(7, Ordering::Release);
/// assert_eq!(OWNERS.get(addr + 1).unwrap().load(Ordering::Acquire), 7);
/// assert_eq!(OWNERS.get(addr + (1 << 20)).unwrap().load(Ordering::Acquire), 0);
/// ```
pub struct ChunkMap<V> {
    root: [AtomicPtr<Leaf<V>>; ROOT_LEN],
}

impl<V> Default for ChunkMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> ChunkMap<V> {
    /// An empty map (usable in a `static`: the root is zero bytes).
    pub const fn new() -> Self {
        ChunkMap {
            root: [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_LEN],
        }
    }

    /// The (root index, leaf index) of the chunk holding `addr`, or `None` above the map's range.
    #[inline]
    pub fn split(addr: usize) -> Option<(usize, usize)> {
        if ADDRESS_BITS < usize::BITS && addr >> ADDRESS_BITS != 0 {
            return None;
        }
        let chunk = addr >> CHUNK_SHIFT;
        Some((chunk >> LEAF_BITS, chunk & (LEAF_LEN - 1)))
    }

    /// The value of the chunk holding `addr`, if its leaf exists: one load (the root slot), and
    /// the caller's load of the value is the second.
    #[inline]
    pub fn get(&self, addr: usize) -> Option<&V> {
        let (root, slot) = Self::split(addr)?;
        self.leaf(root).map(|l| &l.slots[slot])
    }

    /// The leaf at `root` (the first index [`split`](Self::split) gives), if installed: one load.
    /// A lookup on a hot path may split first and index the leaf itself (`leaf.slots[slot]`),
    /// which keeps an out-of-range address on its own early exit.
    #[inline]
    pub fn leaf(&self, root: usize) -> Option<&Leaf<V>> {
        // Acquire: pairs with the Release that installed the leaf, so its zeroing is seen.
        let leaf = self.root[root].load(Ordering::Acquire);
        // SAFETY: an installed leaf is valid (zeroed by its source, then written only through
        // `&V`) until `free_leaves`, which `&self` excludes.
        unsafe { leaf.as_ref() }
    }

    /// Calls `f` with the first address of every installed leaf's range and the leaf, in address
    /// order.
    pub fn for_each_leaf(&self, mut f: impl FnMut(usize, &Leaf<V>)) {
        for (r, slot) in self.root.iter().enumerate() {
            // SAFETY: as in `get`.
            if let Some(leaf) = unsafe { slot.load(Ordering::Acquire).as_ref() } {
                // In 64 bits: with 32-bit addresses the root has one slot, and a shift by the
                // whole width would not compile.
                f(((r as u64) << (LEAF_BITS + CHUNK_SHIFT)) as usize, leaf);
            }
        }
    }

    /// Leaves installed so far.
    pub fn leaves(&self) -> usize {
        let mut n = 0;
        self.for_each_leaf(|_, _| n += 1);
        n
    }

    /// Removes every leaf and gives it back to `source`: the map is empty again.
    ///
    /// # Safety
    /// Every installed leaf came from `source` (a source of the same kind as the one passed to
    /// `get_or_insert`).
    pub unsafe fn free_leaves(&mut self, source: &impl LeafSource<V>) {
        for slot in self.root.iter_mut() {
            let leaf = core::mem::replace(slot.get_mut(), ptr::null_mut());
            if !leaf.is_null() {
                // SAFETY: `&mut self`: nothing else refers to the leaf; the caller's guarantee.
                unsafe { source.free_leaf(leaf) };
            }
        }
    }
}

impl<V: ZeroIsEmpty> ChunkMap<V> {
    /// The value of the chunk holding `addr`, its leaf made by `source` and installed if need be.
    ///
    /// # Errors
    /// [`ChunkMapError::OutOfRange`] above the map's range, [`ChunkMapError::NoMemory`] if the
    /// leaf was missing and `source` had none; the map is unchanged then.
    #[inline]
    pub fn get_or_insert(
        &self,
        addr: usize,
        source: &impl LeafSource<V>,
    ) -> Result<&V, ChunkMapError> {
        match self.get(addr) {
            Some(v) => Ok(v),
            None => self.insert_slow(addr, source),
        }
    }

    /// `get_or_insert` when the leaf was missing (or the address out of range).
    #[cold]
    #[inline(never)]
    fn insert_slow(&self, addr: usize, source: &impl LeafSource<V>) -> Result<&V, ChunkMapError> {
        let (root, slot) = Self::split(addr).ok_or(ChunkMapError::OutOfRange { addr })?;
        let leaf = publish_once(
            &self.root[root],
            || source.alloc_leaf(),
            // SAFETY: our leaf lost the race: it was never published.
            |mine| unsafe { source.free_leaf(mine) },
        );
        // SAFETY: an installed leaf is zeroed by its source (`LeafSource`'s contract) and all-zero
        // is a valid `V` (`ZeroIsEmpty`); it lives until `free_leaves`, which `&self` excludes.
        match unsafe { leaf.as_ref() } {
            Some(l) => Ok(&l.slots[slot]),
            None => Err(ChunkMapError::NoMemory {
                size: core::mem::size_of::<Leaf<V>>(),
            }),
        }
    }
}

/// The two operations of an atomic pointer that [`publish_once`] needs, so that the same code
/// runs on core's `AtomicPtr` and, in a model checker, on loom's (`cfg(loom)`).
pub trait AtomicSlot<T> {
    /// `AtomicPtr::load`.
    fn load(&self, order: Ordering) -> *mut T;
    /// `AtomicPtr::compare_exchange`.
    ///
    /// # Errors
    /// The value found, when it was not `current`.
    fn compare_exchange(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T>;
}

impl<T> AtomicSlot<T> for AtomicPtr<T> {
    #[inline(always)]
    fn load(&self, order: Ordering) -> *mut T {
        AtomicPtr::load(self, order)
    }
    #[inline(always)]
    fn compare_exchange(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        AtomicPtr::compare_exchange(self, current, new, success, failure)
    }
}

#[cfg(loom)]
impl<T> AtomicSlot<T> for loom::sync::atomic::AtomicPtr<T> {
    fn load(&self, order: Ordering) -> *mut T {
        loom::sync::atomic::AtomicPtr::load(self, order)
    }
    fn compare_exchange(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        loom::sync::atomic::AtomicPtr::compare_exchange(self, current, new, success, failure)
    }
}

/// Installs what `make` returns into `slot` if it is still empty and returns the installed
/// object: the caller's, or the one another thread installed first (then `discard` gets back the
/// caller's, never published). `make` returning null (out of memory) returns null and installs
/// nothing. This is how a [`ChunkMap`] publishes its leaves.
pub fn publish_once<T>(
    slot: &impl AtomicSlot<T>,
    make: impl FnOnce() -> *mut T,
    discard: impl FnOnce(*mut T),
) -> *mut T {
    // Acquire: sees the contents of an object another thread published.
    let cur = slot.load(Ordering::Acquire);
    if !cur.is_null() {
        return cur;
    }
    let mine = make();
    if mine.is_null() {
        return mine;
    }
    // AcqRel: Release publishes our object's contents; Acquire sees the winner's on failure.
    match slot.compare_exchange(ptr::null_mut(), mine, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => mine,
        Err(winner) => {
            discard(mine);
            winner
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// Leaves from the heap; counts what it gave and took back.
    #[derive(Default)]
    struct Counted {
        made: AtomicUsize,
        freed: AtomicUsize,
        refuse: bool,
    }

    // SAFETY: each leaf is a fresh zeroed allocation of the leaf's layout, freed once.
    unsafe impl LeafSource<AtomicU32> for Counted {
        fn alloc_leaf(&self) -> *mut Leaf<AtomicU32> {
            if self.refuse {
                return ptr::null_mut();
            }
            self.made.fetch_add(1, Ordering::Relaxed);
            let layout = std::alloc::Layout::new::<Leaf<AtomicU32>>();
            // SAFETY: not zero-sized.
            unsafe { std::alloc::alloc_zeroed(layout).cast() }
        }
        unsafe fn free_leaf(&self, leaf: *mut Leaf<AtomicU32>) {
            self.freed.fetch_add(1, Ordering::Relaxed);
            let layout = std::alloc::Layout::new::<Leaf<AtomicU32>>();
            // SAFETY: the caller's guarantee.
            unsafe { std::alloc::dealloc(leaf.cast(), layout) }
        }
    }

    #[test]
    fn values_are_per_chunk_and_leaves_are_made_once_per_range() {
        let mut map: Box<ChunkMap<AtomicU32>> = Box::default();
        let src = Counted::default();
        let base = if usize::BITS == 64 {
            0x7f00_0000_0000u64 as usize
        } else {
            0x7f00_0000
        };
        map.get_or_insert(base, &src)
            .unwrap()
            .store(1, Ordering::Relaxed);
        map.get_or_insert(base + (1 << CHUNK_SHIFT), &src)
            .unwrap()
            .store(2, Ordering::Relaxed);
        assert_eq!(src.made.load(Ordering::Relaxed), 1);
        assert_eq!(map.get(base + 5).unwrap().load(Ordering::Relaxed), 1);
        assert_eq!(
            map.get(base + (1 << CHUNK_SHIFT) + 5)
                .unwrap()
                .load(Ordering::Relaxed),
            2
        );
        assert_eq!(
            map.get(base + (2 << CHUNK_SHIFT))
                .unwrap()
                .load(Ordering::Relaxed),
            0
        );
        if LEAF_BITS + CHUNK_SHIFT < usize::BITS {
            // Another leaf's range: none made.
            assert!(map.get(0x1000).is_none());
        } else {
            // 32-bit: the one leaf covers every address.
            assert_eq!(map.get(0x1000).unwrap().load(Ordering::Relaxed), 0);
        }
        let mut starts = Vec::new();
        map.for_each_leaf(|start, _| starts.push(start));
        let span = (1u64 << (LEAF_BITS + CHUNK_SHIFT)) - 1;
        assert_eq!(starts, [(base as u64 & !span) as usize]);
        // SAFETY: every leaf came from `src`.
        unsafe { map.free_leaves(&src) };
        assert_eq!(src.freed.load(Ordering::Relaxed), 1);
        assert_eq!(map.leaves(), 0);
    }

    #[test]
    fn out_of_range_and_out_of_memory_are_typed_errors_that_change_nothing() {
        let map: Box<ChunkMap<AtomicU32>> = Box::default();
        let refusing = Counted {
            refuse: true,
            ..Counted::default()
        };
        assert_eq!(
            map.get_or_insert(0x1234_0000, &refusing).err(),
            Some(ChunkMapError::NoMemory {
                size: core::mem::size_of::<Leaf<AtomicU32>>()
            })
        );
        assert_eq!(map.leaves(), 0);
        if ADDRESS_BITS < usize::BITS {
            let high = 1usize << ADDRESS_BITS;
            assert!(map.get(high).is_none());
            assert_eq!(
                map.get_or_insert(high, &Counted::default()).err(),
                Some(ChunkMapError::OutOfRange { addr: high })
            );
        }
    }

    #[test]
    fn racing_inserts_install_one_leaf_and_give_the_other_back() {
        let mut map: Box<ChunkMap<AtomicU32>> = Box::default();
        let src = Counted::default();
        let addr = if usize::BITS == 64 {
            0x10_0000_0000u64 as usize
        } else {
            0x1000_0000
        };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    map.get_or_insert(addr, &src)
                        .unwrap()
                        .fetch_add(1, Ordering::Relaxed)
                });
            }
        });
        assert_eq!(map.get(addr).unwrap().load(Ordering::Relaxed), 4);
        assert_eq!(map.leaves(), 1);
        let made = src.made.load(Ordering::Relaxed);
        assert_eq!(src.freed.load(Ordering::Relaxed), made - 1);
        // SAFETY: every leaf came from `src`.
        unsafe { map.free_leaves(&src) };
        assert_eq!(src.freed.load(Ordering::Relaxed), made);
    }
}
