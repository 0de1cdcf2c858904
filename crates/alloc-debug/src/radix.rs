//! A radix tree of words over the address space: a word (or a bit of one) per 16 bytes of
//! addresses, found in three dependent loads, without a lock, from any thread.
//!
//! ```text
//!   address: | root (ROOT_BITS) | middle (14 bits) | 1 MiB chunk offset (20 bits) |
//!   map ──► ChunkMap root slot ──► its leaf's value for the chunk ──► leaf of W words
//! ```
//!
//! The upper two levels are the workspace's [`ChunkMap`] (alloc-core), whose value per 1 MiB
//! chunk is a pointer to the chunk's words; the map itself is made on first use, so a tree that
//! is never written costs one null pointer.
//!
//! Nodes come zeroed from the OS (large ones, on unix) or the C library, never from a decorated
//! allocator (so the tree cannot recurse into one), are published with a compare-exchange and
//! kept until the tree is dropped.
//! [`Claims`](crate::claims) keeps a bit per 16 bytes (leaves of 8 KiB), Tracing's records a word
//! per 16 bytes (leaves of 512 KiB, whose untouched pages the OS never backs).

use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use alloc_core::chunk_map::{self, ChunkMap, LeafSource};
use alloc_core::{DomainAllocator, System};

/// A leaf covers 1 MiB of addresses (a chunk of the map).
pub(crate) const LEAF_SHIFT: u32 = chunk_map::CHUNK_SHIFT;

/// The words covering one 1 MiB chunk.
pub(crate) struct Leaf<const W: usize> {
    pub(crate) words: [AtomicU64; W],
}

/// The upper levels: the workspace's chunk map, whose value per chunk points to its words.
type Map<const W: usize> = ChunkMap<AtomicPtr<Leaf<W>>>;
/// A leaf of the chunk map: the word leaves of a 16 GiB range.
type Mid<const W: usize> = chunk_map::Leaf<AtomicPtr<Leaf<W>>>;

/// Nodes this large are mapped from the OS on unix (its pages are zero until touched, and never
/// backed while untouched); smaller ones come from the C library's `calloc`, which may clear a
/// reused block by writing it.
#[cfg(unix)]
const MAPPED: usize = 64 << 10;

/// A zeroed node (all-zero bytes are null pointers and zero words), or null.
fn zeroed<T>() -> *mut T {
    let size = core::mem::size_of::<T>();
    #[cfg(unix)]
    if size >= MAPPED {
        // SAFETY: an anonymous private mapping of `size` bytes; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        return if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        };
    }
    System
        .calloc(1, size)
        .map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

/// # Safety
/// `p` came from `zeroed::<T>` and is referred to by nothing.
unsafe fn release<T>(p: *mut T) {
    #[cfg(unix)]
    if core::mem::size_of::<T>() >= MAPPED {
        // SAFETY: the caller's guarantee: a mapping `zeroed` made of exactly this size.
        unsafe { libc::munmap(p.cast(), core::mem::size_of::<T>()) };
        return;
    }
    // SAFETY: the caller's guarantee: a block of the C library, freed once.
    unsafe { System.free(p.cast()) }
}

/// Installs a fresh node into `slot` if it is empty (taking `spare` first when there is one);
/// returns the node now there, or null if no memory could be had.
fn node<T>(slot: &AtomicPtr<T>, spare: &AtomicPtr<T>) -> *mut T {
    // Acquire: sees the zeroed node another thread published.
    let cur = slot.load(Ordering::Acquire);
    if !cur.is_null() {
        return cur;
    }
    let mut fresh = spare.swap(ptr::null_mut(), Ordering::AcqRel);
    if fresh.is_null() {
        fresh = zeroed::<T>();
        if fresh.is_null() {
            return fresh;
        }
    }
    // AcqRel: publishes our node, or sees the winner's.
    match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(winner) => {
            // Back to the spare slot (or to the C library if a spare is there already).
            if spare
                .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                // SAFETY: never published.
                unsafe { release(fresh) };
            }
            winner
        }
    }
}

/// Makes sure `spare` holds a zeroed node.
fn reserve<T>(spare: &AtomicPtr<T>) -> bool {
    if !spare.load(Ordering::Acquire).is_null() {
        return true;
    }
    let fresh = zeroed::<T>();
    if fresh.is_null() {
        return false;
    }
    if spare
        .compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: never published.
        unsafe { release(fresh) };
    }
    true
}

/// The chunk map's leaves: the spare one first (see `Radix::reserve_one`), else a fresh zeroed
/// node; one given back goes to the spare slot if that is empty, else to where it came from.
struct Mids<'a, const W: usize>(&'a AtomicPtr<Mid<W>>);

// SAFETY: every leaf handed out is a `zeroed` node (the spare too: made by `zeroed`, never
// published), used by nobody else; one given back is kept unpublished or released once.
unsafe impl<const W: usize> LeafSource<AtomicPtr<Leaf<W>>> for Mids<'_, W> {
    fn alloc_leaf(&self) -> *mut Mid<W> {
        let spare = self.0.swap(ptr::null_mut(), Ordering::AcqRel);
        if spare.is_null() { zeroed() } else { spare }
    }

    unsafe fn free_leaf(&self, leaf: *mut Mid<W>) {
        if self
            .0
            .compare_exchange(ptr::null_mut(), leaf, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: the caller's guarantee: a `zeroed` node referred to by nothing.
            unsafe { release(leaf) };
        }
    }
}

/// The tree: leaves of `W` words.
pub(crate) struct Radix<const W: usize> {
    /// The chunk map, made on first use.
    map: AtomicPtr<Map<W>>,
    /// Nodes made ahead of need (`reserve_one`), so that the make that follows cannot fail.
    spare_mid: AtomicPtr<Mid<W>>,
    spare_leaf: AtomicPtr<Leaf<W>>,
}

impl<const W: usize> Radix<W> {
    pub(crate) const fn new() -> Self {
        Radix {
            map: AtomicPtr::new(ptr::null_mut()),
            spare_mid: AtomicPtr::new(ptr::null_mut()),
            spare_leaf: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The leaf covering `addr`, if it exists: three dependent loads (the map, its root slot, the
    /// chunk's value).
    #[inline]
    pub(crate) fn leaf(&self, addr: usize) -> Option<&Leaf<W>> {
        // Acquire: the map was published with Release after it was zeroed.
        // SAFETY: a published map is zeroed (an empty map) and lives until the tree is dropped.
        let map = unsafe { self.map.load(Ordering::Acquire).as_ref()? };
        // Acquire: a word leaf was published with Release after it was zeroed.
        // SAFETY: published word leaves are zeroed and live until the tree is dropped.
        unsafe { map.get(addr)?.load(Ordering::Acquire).as_ref() }
    }

    /// The leaf covering `addr`, made on the way if need be; `None` if no memory could be had or
    /// the address is out of range.
    #[inline]
    pub(crate) fn leaf_or_make(&self, addr: usize) -> Option<&Leaf<W>> {
        match self.leaf(addr) {
            Some(l) => Some(l),
            None => self.make(addr),
        }
    }

    #[cold]
    fn make(&self, addr: usize) -> Option<&Leaf<W>> {
        let spare = AtomicPtr::new(ptr::null_mut());
        // SAFETY: a published map is zeroed (an empty map) and lives until the tree is dropped.
        let map = unsafe { node(&self.map, &spare).as_ref()? };
        let slot = map.get_or_insert(addr, &Mids(&self.spare_mid)).ok()?;
        // SAFETY: published word leaves are zeroed and live until the tree is dropped.
        unsafe { node(slot, &self.spare_leaf).as_ref() }
    }

    /// Makes room for one more leaf, so that the next `leaf_or_make` cannot fail for want of
    /// memory (while no other thread makes one meanwhile); false if the memory could not be had.
    pub(crate) fn reserve_one(&self) -> bool {
        if self.map.load(Ordering::Acquire).is_null() {
            let spare = AtomicPtr::new(ptr::null_mut());
            if node(&self.map, &spare).is_null() {
                return false;
            }
        }
        reserve(&self.spare_mid) && reserve(&self.spare_leaf)
    }

    /// Calls `f` with the first address of every leaf's chunk and the leaf.
    pub(crate) fn for_each_leaf(&self, mut f: impl FnMut(usize, &Leaf<W>)) {
        // SAFETY: as in `leaf`.
        let Some(map) = (unsafe { self.map.load(Ordering::Acquire).as_ref() }) else {
            return;
        };
        map.for_each_leaf(|start, mid| {
            for (m, leaf) in mid.slots.iter().enumerate() {
                // SAFETY: as in `leaf`.
                if let Some(leaf) = unsafe { leaf.load(Ordering::Acquire).as_ref() } {
                    f(start + (m << LEAF_SHIFT), leaf);
                }
            }
        });
    }

    /// Leaves made so far.
    pub(crate) fn leaves(&self) -> usize {
        let mut n = 0;
        self.for_each_leaf(|_, _| n += 1);
        n
    }
}

impl<const W: usize> Drop for Radix<W> {
    fn drop(&mut self) {
        let map = *self.map.get_mut();
        // SAFETY: `&mut self`: nobody else reaches the nodes; each was made by `zeroed` and is
        // released once (the map's leaves through `Mids`, which keeps at most one as the spare,
        // released last).
        unsafe {
            if let Some(m) = map.as_mut() {
                m.for_each_leaf(|_, mid| {
                    for leaf in &mid.slots {
                        let leaf = leaf.load(Ordering::Relaxed);
                        if !leaf.is_null() {
                            release(leaf);
                        }
                    }
                });
                m.free_leaves(&Mids(&self.spare_mid));
                release(map);
            }
            let mid = *self.spare_mid.get_mut();
            if !mid.is_null() {
                release(mid);
            }
            let leaf = *self.spare_leaf.get_mut();
            if !leaf.is_null() {
                release(leaf);
            }
        }
    }
}
