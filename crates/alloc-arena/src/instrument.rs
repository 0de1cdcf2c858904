//! What the pools tell a memory checker: every hook that makes AddressSanitizer (feature `asan`)
//! or valgrind memcheck (feature `valgrind`) see inside the pools, as they see inside the C
//! library's heap. Without either feature every function here is empty and inlined away, so the
//! fast paths compile to the same instructions.
//!
//! What is marked (a checker then reports any access the program makes there):
//!
//! * a **free block**, from the free that gave it back until an allocation hands it out again,
//!   whether it waits in a bin, on a pool's free lists or on a remote list: no access
//!   (`block_freed`; memcheck also records the free, ASan poisons the block);
//! * a **live block**: accessible, its contents undefined for memcheck (`block_allocated`:
//!   memcheck's `MALLOCLIKE_BLOCK`, which also makes it a block its leak check looks for);
//! * the **unused parts** of arenas and pools: everything past an arena's header until blocks are
//!   carved from it, empty pools, and the tail of a pool past its last whole block: no access
//!   (`region_noaccess`); an arena is made accessible again before it goes back to its provider
//!   (`region_accessible`).
//!
//! The pools' own accesses to free blocks (the free-list link in a free block's first word, read
//! and written by the free lists, the remote lists and the secure heap's checks) go through
//! [`with_link`], which opens that word for the access and closes it again.
//!
//! A block is marked whole (its block size, not the size the program asked for): a checker sees
//! a use after free, and an overflow into the next block when that block is free or not carved
//! yet, but not an overflow into the rest of the block's own size class.
//!
//! `asan` calls ASan's manual poisoning interface, which exists only in a program built with
//! `-Zsanitizer=address` (a build with the feature and without the sanitizer does not link).
//! ASan reports an access to such memory as `use-after-poison`. `valgrind` issues memcheck's
//! client requests (`os::valgrind`), which cost a few instructions and do nothing outside
//! valgrind.

#[cfg(feature = "asan")]
mod asan {
    use core::ffi::c_void;

    // ASan's manual poisoning interface (`sanitizer/asan_interface.h`), in its runtime.
    unsafe extern "C" {
        fn __asan_poison_memory_region(addr: *const c_void, size: usize);
        fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
    }

    #[inline(always)]
    pub(super) fn poison(p: *const u8, len: usize) {
        // SAFETY: the runtime only updates its shadow of the range; it reads and writes none of
        // the range itself, so any range is sound to pass.
        unsafe { __asan_poison_memory_region(p.cast(), len) }
    }

    #[inline(always)]
    pub(super) fn unpoison(p: *const u8, len: usize) {
        // SAFETY: as for `poison`.
        unsafe { __asan_unpoison_memory_region(p.cast(), len) }
    }
}

#[cfg(feature = "valgrind")]
use crate::os::valgrind as vg;

/// `p .. p + size` is a block handed out to the program (a block of a pool or a large block):
/// accessible, undefined for memcheck unless `zeroed` (its bytes are known to be zero).
#[inline(always)]
pub(crate) fn block_allocated(p: *mut u8, size: usize, zeroed: bool) {
    #[cfg(feature = "asan")]
    asan::unpoison(p, size);
    #[cfg(feature = "valgrind")]
    vg::request(
        vg::MALLOCLIKE_BLOCK,
        p as usize,
        size,
        0,
        usize::from(zeroed),
    );
    let _ = (p, size, zeroed);
}

/// `p .. p + size`, a block handed out by `block_allocated`, was freed by the program: no access
/// until it is handed out again (memcheck's `FREELIKE_BLOCK` makes the block it recorded
/// unaddressable).
#[inline(always)]
pub(crate) fn block_freed(p: *mut u8, size: usize) {
    #[cfg(feature = "asan")]
    asan::poison(p, size);
    #[cfg(feature = "valgrind")]
    vg::request(vg::FREELIKE_BLOCK, p as usize, 0, 0, 0);
    let _ = (p, size);
}

/// `p .. p + len` is memory of the pools that holds no block: no access.
#[inline(always)]
pub(crate) fn region_noaccess(p: *mut u8, len: usize) {
    #[cfg(feature = "asan")]
    asan::poison(p, len);
    #[cfg(feature = "valgrind")]
    vg::request(vg::MAKE_MEM_NOACCESS, p as usize, len, 0, 0);
    let _ = (p, len);
}

/// `p .. p + len` goes back to whoever gave it to the pools (an arena to its provider, which may
/// reuse it or hand it to another program part): accessible again, its contents undefined.
#[inline(always)]
pub(crate) fn region_accessible(p: *mut u8, len: usize) {
    #[cfg(feature = "asan")]
    asan::unpoison(p, len);
    #[cfg(feature = "valgrind")]
    vg::request(vg::MAKE_MEM_UNDEFINED, p as usize, len, 0, 0);
    let _ = (p, len);
}

/// Runs `f`, an access of the pools to the link word at the start of free block `block` (or of a
/// block not carved yet), with that word open to it, and closes it again after.
#[inline(always)]
pub(crate) fn with_link<R>(block: *mut u8, f: impl FnOnce() -> R) -> R {
    #[cfg(any(feature = "asan", feature = "valgrind"))]
    const WORD: usize = core::mem::size_of::<usize>();
    #[cfg(feature = "asan")]
    asan::unpoison(block, WORD);
    // Defined: the word holds a link the pools wrote (or is about to be written).
    #[cfg(feature = "valgrind")]
    vg::request(vg::MAKE_MEM_DEFINED, block as usize, WORD, 0, 0);
    let r = f();
    #[cfg(feature = "asan")]
    asan::poison(block, WORD);
    #[cfg(feature = "valgrind")]
    vg::request(vg::MAKE_MEM_NOACCESS, block as usize, WORD, 0, 0);
    let _ = block;
    r
}

/// Whether memcheck's leak check looks at the pools' blocks (feature `valgrind`): the pools then
/// clear the stale copies of block addresses they leave in their own memory (a bin's slots above
/// its length), which the leak check would take for references that keep a leaked block
/// reachable.
pub(crate) const CLEAR_STALE: bool = cfg!(feature = "valgrind");
