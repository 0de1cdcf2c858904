//! A radix tree of words over the address space: a word (or a bit of one) per 16 bytes of
//! addresses, found in three dependent loads, without a lock, from any thread.
//!
//! ```text
//!   address: | root (ROOT_BITS) | middle (14 bits) | 1 MiB chunk offset (20 bits) |
//!   root ──► middle ──► leaf of W words covering the chunk's 1 MiB
//! ```
//!
//! Nodes come zeroed from the OS (large ones, on unix) or the C library, never from a decorated
//! allocator (so the tree cannot recurse into one), are published with a compare-exchange and
//! kept until the tree is dropped.
//! [`Claims`](crate::claims) keeps a bit per 16 bytes (leaves of 8 KiB), Tracing's records a word
//! per 16 bytes (leaves of 512 KiB, whose untouched pages the OS never backs).

use core::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use alloc_core::{DomainAllocator, System};

/// A leaf covers 1 MiB of addresses.
pub(crate) const LEAF_SHIFT: u32 = 20;
#[cfg(target_pointer_width = "64")]
const ADDRESS_BITS: u32 = 48;
#[cfg(not(target_pointer_width = "64"))]
const ADDRESS_BITS: u32 = usize::BITS;
const MID_BITS: u32 = if ADDRESS_BITS - LEAF_SHIFT > 14 {
    14
} else {
    ADDRESS_BITS - LEAF_SHIFT
};
const ROOT_BITS: u32 = ADDRESS_BITS - LEAF_SHIFT - MID_BITS;

/// The words covering one 1 MiB chunk.
pub(crate) struct Leaf<const W: usize> {
    pub(crate) words: [AtomicU64; W],
}

struct Mid<const W: usize> {
    leaves: [AtomicPtr<Leaf<W>>; 1 << MID_BITS],
}

struct Root<const W: usize> {
    mids: [AtomicPtr<Mid<W>>; 1 << ROOT_BITS],
}

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

/// The (root, middle) indices of the chunk holding `addr`, or `None` beyond the address range.
#[inline]
fn chunk(addr: usize) -> Option<(usize, usize)> {
    if ADDRESS_BITS < usize::BITS && addr >> ADDRESS_BITS != 0 {
        return None;
    }
    let c = addr >> LEAF_SHIFT;
    Some((c >> MID_BITS, c & ((1 << MID_BITS) - 1)))
}

/// The tree: leaves of `W` words.
pub(crate) struct Radix<const W: usize> {
    root: AtomicPtr<Root<W>>,
    /// Nodes made ahead of need (`reserve_one`), so that the make that follows cannot fail.
    spare_mid: AtomicPtr<Mid<W>>,
    spare_leaf: AtomicPtr<Leaf<W>>,
}

impl<const W: usize> Radix<W> {
    pub(crate) const fn new() -> Self {
        Radix {
            root: AtomicPtr::new(ptr::null_mut()),
            spare_mid: AtomicPtr::new(ptr::null_mut()),
            spare_leaf: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The leaf covering `addr`, if it exists: three dependent loads.
    #[inline]
    pub(crate) fn leaf(&self, addr: usize) -> Option<&Leaf<W>> {
        let (r, m) = chunk(addr)?;
        // Acquire: each node was published with Release after it was zeroed.
        // SAFETY: published nodes are zeroed and live until the tree is dropped.
        let root = unsafe { self.root.load(Ordering::Acquire).as_ref()? };
        // SAFETY: as above.
        let mid = unsafe { root.mids[r].load(Ordering::Acquire).as_ref()? };
        // SAFETY: as above.
        unsafe { mid.leaves[m].load(Ordering::Acquire).as_ref() }
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
        let (r, m) = chunk(addr)?;
        let spare = AtomicPtr::new(ptr::null_mut());
        // SAFETY: published nodes are zeroed and live until the tree is dropped.
        let root = unsafe { node(&self.root, &spare).as_ref()? };
        // SAFETY: as above.
        let mid = unsafe { node(&root.mids[r], &self.spare_mid).as_ref()? };
        // SAFETY: as above.
        unsafe { node(&mid.leaves[m], &self.spare_leaf).as_ref() }
    }

    /// Makes room for one more leaf, so that the next `leaf_or_make` cannot fail for want of
    /// memory (while no other thread makes one meanwhile); false if the memory could not be had.
    pub(crate) fn reserve_one(&self) -> bool {
        if self.root.load(Ordering::Acquire).is_null() {
            let spare = AtomicPtr::new(ptr::null_mut());
            if node(&self.root, &spare).is_null() {
                return false;
            }
        }
        reserve(&self.spare_mid) && reserve(&self.spare_leaf)
    }

    /// Calls `f` with the first address of every leaf's chunk and the leaf.
    pub(crate) fn for_each_leaf(&self, mut f: impl FnMut(usize, &Leaf<W>)) {
        // SAFETY: as in `leaf`.
        let Some(root) = (unsafe { self.root.load(Ordering::Acquire).as_ref() }) else {
            return;
        };
        for (r, mid) in root.mids.iter().enumerate() {
            // SAFETY: as above.
            let Some(mid) = (unsafe { mid.load(Ordering::Acquire).as_ref() }) else {
                continue;
            };
            for (m, leaf) in mid.leaves.iter().enumerate() {
                // SAFETY: as above.
                if let Some(leaf) = unsafe { leaf.load(Ordering::Acquire).as_ref() } {
                    f(((r << MID_BITS) | m) << LEAF_SHIFT, leaf);
                }
            }
        }
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
        let root = *self.root.get_mut();
        // SAFETY: `&mut self`: nobody else reaches the nodes; each was made by `zeroed` and is
        // released once.
        unsafe {
            if let Some(root) = root.as_mut() {
                for mid in root.mids.iter_mut() {
                    let mid = *mid.get_mut();
                    if let Some(m) = mid.as_mut() {
                        for leaf in m.leaves.iter_mut() {
                            let leaf = *leaf.get_mut();
                            if !leaf.is_null() {
                                release(leaf);
                            }
                        }
                        release(mid);
                    }
                }
                release(root);
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
