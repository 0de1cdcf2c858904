//! The hardened default: what the pools check of every pointer handed back to them, and the
//! one-line report that ends the process when a check fails (as glibc's "free(): invalid pointer"
//! and snmalloc's checks do). A bad free never corrupts the pools silently:
//!
//! * **Interior or misaligned pointers.** A pointer into a pool must start a block: its offset in
//!   the pool is a multiple of the pool's block size. n is a multiple of d exactly when
//!   `n * ceil(2^64 / d)`, taken mod 2^64, is below `ceil(2^64 / d)` (for n below 2^32): the
//!   slow paths test this with the multiplier from a table by class ([`is_block_start`]).
//! * **Blocks not handed out.** The fast free multiplies by the multiplier kept in the pool's
//!   meta ([`start_magic`], one more than the table's for a power of two) and compares the
//!   product with a bound kept beside it ([`start_limit`]), which admits exactly the blocks the
//!   pool has carved: a block start not carved yet (a stale pointer of the pool's earlier life)
//!   and the tail past a pool's last block are refused with the misaligned pointers, in one
//!   multiply and one compare. The slow paths compare with the same bound after their test.
//! * **Blocks of empty pools.** A pool with no block allocated has no class (`NO_CLASS`) and a
//!   multiplier and bound of 0: any pointer into it is a block freed twice (or never made).
//! * **Double frees.** An unsized free writes [`FREED_MARK`] into the block's second word, and a
//!   block handed out has it cleared, as glibc's tcache does with its key. A free that finds the
//!   mark goes the long way, which looks for the block in the thread's bin of its class and on
//!   its pool's free lists (when the pool is the thread's) and reports a double free if it is
//!   there; a block that holds the mark by chance is freed as usual. Caught: a block freed twice
//!   while it waits in the freeing thread's bin (on top or not), or after it went back to a free
//!   list of its pool, the thread's own; and, through `realloc` and `malloc_usable_size` (the C
//!   library's and the pools' own), a block used after its free the same way. Not caught: a
//!   second free by a thread other than the one whose bin or heap holds the block, a block on
//!   its pool's remote list (other threads push onto it; it is not walked), one handed out again
//!   in between (that is a free of a live block), and sized frees (Rust's `dealloc`, C++'s sized
//!   `delete`), which trust the caller and neither write nor read the block. A live block whose
//!   second word holds the mark by chance costs each of its frees a look through a bin and a
//!   pool's lists. With the `asan` or `valgrind` features there are no marks
//!   (the tools see double frees themselves); the fast free then refuses a block on its bin's
//!   top, and the long way looks through the bin's last 8 blocks.

use crate::arena::NO_CLASS;
use crate::size_class::{Geometry, MAX_CLASSES};

/// `ceil(2^64 / d)` for each block size `d = (class + 1) * 16` of the default spacing, and 0 for
/// `NO_CLASS` (0 passes no test).
pub(crate) static BLOCK_MAGIC: [u64; MAX_CLASSES + 1] = {
    let mut t = [0u64; MAX_CLASSES + 1];
    let mut c = 0;
    while c < MAX_CLASSES {
        t[c] = u64::MAX / ((c as u64 + 1) * 16) + 1;
        c += 1;
    }
    t
};

/// Whether `offset` (a pointer's offset in its pool, below 2^32) is a multiple of the block size
/// of class `class` with the default 16-byte spacing; false for `NO_CLASS`. `class` is at most
/// `MAX_CLASSES` (`NO_CLASS`).
#[inline(always)]
pub(crate) fn is_block_start(offset: usize, class: usize) -> bool {
    debug_assert!(class <= MAX_CLASSES);
    // SAFETY: a class read from a pool meta is below `MAX_CLASSES` or is `NO_CLASS`, the table's
    // last entry.
    let m = unsafe { *BLOCK_MAGIC.get_unchecked(class) };
    (offset as u64).wrapping_mul(m) < m
}

/// The multiplier of the block-start test for blocks of `block_size` bytes (any size from 2 to
/// 2^32), kept in each pool's meta while the pool has a class: `floor(2^64 / block_size) + 1`.
/// That is `ceil(2^64 / block_size)` (the multiplier of [`is_block_start`]) unless the size is a
/// power of two, where it is one more: `2^(64 - j) + 1` for `2^j`. Then an offset `n` that is a
/// multiple has the product `n` itself, not 0, so that [`start_limit`] can tell the carved blocks
/// from the rest; an offset `n = k * 2^j + r` with `0 < r` has `r * 2^(64 - j) + n`, at least
/// the multiplier, as before.
pub(crate) const fn start_magic(block_size: usize) -> u64 {
    u64::MAX / block_size as u64 + 1 + block_size.is_power_of_two() as u64
}

/// The bound of the block-start test for a pool whose first `blocks` blocks of `block_size`
/// bytes are carved (see [`start_magic`]), kept in the pool's meta with its multiplier (0 while
/// the pool is empty or nothing is carved, which every product fails): `(blocks - 1) * e + 1`,
/// where `e = block_size * start_magic(block_size)` taken mod 2^64.
///
/// Why it is exact: the multiplier is `floor(2^64 / d) + 1`, so `e = d * (floor(2^64 / d) + 1) -
/// 2^64` is at most `d` and above 0. The offset `k * d` of block `k` then has the product
/// `k * e` mod 2^64, and with `k * d` within the pool (below 2^32) that is `k * e` itself, with
/// no wrap, growing with `k`. So the blocks `k < blocks` have products below the bound, and the
/// block-sized steps past them do not: the blocks not yet carved (a stale pointer from the pool's
/// earlier life, which would otherwise be handed out again when carved) and the pool's tail past
/// its last block (when `d` does not divide the pool; a "block" there reaches into the next
/// pool). An offset that is no multiple of `d` has a product of at least the multiplier (the test
/// of [`is_block_start`]), which is at least 2^32 and so above any bound. The test is thus
/// "starts one of the pool's carved blocks", with the compare alone changed. With a power of two
/// `d`, `e` is `d` ([`start_magic`] is one above `2^64 / d` for this).
#[cfg(target_pointer_width = "64")]
pub(crate) const fn start_limit(block_size: usize, blocks: usize) -> u64 {
    if blocks == 0 {
        return 0;
    }
    let e = (block_size as u64).wrapping_mul(start_magic(block_size));
    (blocks as u64 - 1) * e + 1
}

/// Whether `addr` starts a block of a pool whose meta holds `magic` and `limit`
/// ([`start_magic`] and [`start_limit`] of its geometry, or 0 and 0 for an empty pool, which
/// fails): the pool's offset times the multiplier, below the bound. Pools are smaller than 4 GiB,
/// so any geometry's offset qualifies.
#[cfg(target_pointer_width = "64")]
#[inline(always)]
pub(crate) fn starts_block_below(g: &Geometry, addr: usize, magic: u64, limit: u64) -> bool {
    let offset = (addr & (g.pool_size - 1)) as u64;
    offset.wrapping_mul(magic) < limit
}

/// Whether `addr` starts a block of a pool whose meta holds `magic` ([`start_magic`] of its
/// block size, or 0 for an empty pool, which fails) and whose blocks end at `end_offset`: the
/// pool's offset times the multiplier, below the multiplier (the test of [`is_block_start`],
/// exact for offsets below 2^32), and the offset below the end (with 32-bit pointers, whose meta
/// has no room for [`start_limit`]).
#[cfg(not(target_pointer_width = "64"))]
#[inline(always)]
pub(crate) fn starts_block_within(g: &Geometry, addr: usize, magic: u64, end_offset: u32) -> bool {
    let offset = (addr & (g.pool_size - 1)) as u64;
    offset.wrapping_mul(magic) < magic && offset < u64::from(end_offset)
}

/// Whether `addr` starts one of the blocks carved so far of the pool whose meta is `meta`, with
/// `magic` its multiplier, read already (0 for an empty pool or one never taken, which fails):
/// [`starts_block_below`] with the meta's bound, or, with 32-bit pointers, whose meta has no room
/// for the bound, [`starts_block_within`] with its end (a block not carved yet passes there).
/// The slow paths' and the fast realloc's test; the 64-bit fast free makes the same compare
/// with the pool's bias in place of the mask.
///
/// # Safety
/// `meta` is the meta of a pool of a live arena of geometry `g` (initialised, or zero: never
/// taken).
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn starts_carved_block(
    g: &Geometry,
    meta: *const crate::arena::PoolMeta,
    addr: usize,
    magic: u64,
) -> bool {
    #[cfg(target_pointer_width = "64")]
    // SAFETY: the caller's guarantee; the bound is atomic (the owner raises it as it carves).
    let limit = unsafe { (*meta).start_limit.load(crate::sync::Ordering::Relaxed) };
    #[cfg(target_pointer_width = "64")]
    return starts_block_below(g, addr, magic, limit);
    #[cfg(not(target_pointer_width = "64"))]
    // SAFETY: the caller's guarantee.
    return starts_block_within(g, addr, magic, unsafe { (*meta).end_offset });
}

/// What a pool whose first byte is `base` keeps beside its multiplier `magic`: `-base * magic`,
/// wrapping, so that `addr * magic + bias` is `(addr - base) * magic` for an address in the
/// pool, and the test of [`starts_block_below`] is `addr * magic + bias < limit`, with no mask (the
/// 64-bit fast free, `PoolAllocator::free_into_bin`).
#[cfg(target_pointer_width = "64")]
pub(crate) const fn start_bias(base: usize, magic: u64) -> u64 {
    (base as u64).wrapping_mul(magic).wrapping_neg()
}

/// Whether `addr`, in a pool of geometry `g` whose class is `class` (at most `MAX_CLASSES`, so
/// `NO_CLASS` included, which fails), starts a block. Blocks start at the pool's first byte
/// (header pools hold no blocks); a block of class c is (c + 1) * 16 * 2^k bytes for a spacing of
/// 16 * 2^k, so the offset's low k bits are zero and what is left is a multiple of (c + 1) * 16,
/// tested by the multiply. For the default geometry `g` is a constant and so is k (0).
#[inline(always)]
pub(crate) fn starts_block(g: &Geometry, addr: usize, class: usize) -> bool {
    let offset = addr & (g.pool_size - 1);
    let k = g.class_shift.saturating_sub(4);
    offset & ((1 << k) - 1) == 0 && is_block_start(offset >> k, class)
}

/// Whether unsized frees mark the blocks they free ([`mark_freed`]). Not with the `asan` or
/// `valgrind` features, whose tools track every block themselves (and would take the allocator's
/// read of a live block's bytes the program never wrote, or its write to a freed block, for the
/// program's error).
pub(crate) const MARKS: bool = !cfg!(feature = "asan") && !cfg!(feature = "valgrind");

/// What a free writes into the second word of a block it frees (glibc's tcache keeps a key
/// there the same way): a block that holds it when freed is probably free already. A constant
/// that fits a sign-extended 32-bit immediate, so that the fast free compares the word with it
/// and writes it with one instruction each. It is not a secret: a live block whose second word
/// holds it by chance (or by design) only sends its free the long way, which looks for the block
/// among the free ones (`PoolCore::holds_freed`) and
/// reports a double free only when it finds it there.
pub(crate) const FREED_MARK: usize = (-0x2F5E_E0D2_isize) as usize;

/// Whether the block at `p` holds [`FREED_MARK`] (always false without [`MARKS`]).
///
/// # Safety
/// `p` starts a block of the pools (of at least 16 bytes, so two words).
#[inline(always)]
pub(crate) unsafe fn marked_freed(p: *const u8) -> bool {
    // SAFETY: the caller's guarantee: the block's second word lies in it, aligned (blocks are
    // 16-aligned).
    MARKS && unsafe { p.cast::<usize>().add(1).read() } == FREED_MARK
}

/// Marks the block at `p` freed (a free of the block, before the block is handed to the
/// instrumentation, which is off with the marks).
///
/// # Safety
/// As for [`marked_freed`], and the calling thread is freeing the block now.
#[inline(always)]
pub(crate) unsafe fn mark_freed(p: *mut u8) {
    if MARKS {
        // SAFETY: the caller's guarantee.
        unsafe { p.cast::<usize>().add(1).write(FREED_MARK) }
    }
}

/// Clears the mark of a block handed out (every allocation from the bins and the pools'
/// lists), so that a live block holds it only if the program wrote it.
///
/// # Safety
/// As for [`marked_freed`], and the block is being handed out by the calling thread.
#[inline(always)]
pub(crate) unsafe fn unmark(p: *mut u8) {
    if MARKS {
        // SAFETY: the caller's guarantee.
        unsafe { p.cast::<usize>().add(1).write(0) }
    }
}

/// What is wrong with a pointer into the pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadFree {
    /// Inside a block, or not aligned to one.
    Interior,
    /// In a pool with no block allocated.
    EmptyPool,
    /// At a block start of a pool in use where no block was ever handed out: a block the pool
    /// has not carved yet (a block of the pool's earlier life freed again, say), or the tail
    /// past the pool's last block.
    NotHandedOut,
    /// Already in the freeing thread's bin, or on its pool's free list.
    DoubleFree,
    /// A free-list link that does not decode to a block of its pool (a secure heap): a freed
    /// block was written to.
    Corrupted,
    /// In the arenas of another allocator than the one it was handed to (a block of another
    /// domain given to the C library's `free`, say).
    OtherAllocator,
    /// In address space domalloc reserved for arenas, where no arena is now (a block of an
    /// arena given back, say).
    NoArena,
}

/// Checks a pointer the registry places in a live arena of geometry `g` (any geometry: the
/// offset is divided here, off the fast path).
///
/// # Safety
/// `addr` lies in a live arena of geometry `g`.
#[inline]
pub(crate) unsafe fn check_pointer(g: &Geometry, addr: usize) -> Result<usize, BadFree> {
    let meta = crate::routing::pool_meta(g, addr);
    // SAFETY: the caller's guarantee: the arena's metas are initialised.
    let class = unsafe { (*meta).class };
    if class == NO_CLASS {
        return Err(BadFree::EmptyPool);
    }
    if !starts_block(g, addr, usize::from(class)) {
        return Err(BadFree::Interior);
    }
    // A block start: one of the blocks carved so far (the bound of the fast free's test), not
    // one still to be carved nor the pool's tail. With 32-bit pointers, below the pool's end.
    // SAFETY: as above; the multiplier is the pool's (it has a class).
    let carved = unsafe { starts_carved_block(g, meta, addr, (*meta).start_magic) };
    if !carved {
        return Err(BadFree::NotHandedOut);
    }
    Ok(usize::from(class))
}

/// Reports a bad pointer on one line of stderr and aborts. `op` is the call (`free`, `realloc`,
/// `malloc_usable_size`).
#[cold]
#[inline(never)]
pub(crate) fn bad_free(op: &str, addr: usize, what: BadFree) -> ! {
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |b: &[u8]| {
        let n = b.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&b[..n]);
        len += n;
    };
    put(b"domalloc: ");
    put(op.as_bytes());
    put(b"(): ");
    put(match what {
        BadFree::Interior => b"invalid pointer (inside a block or misaligned)",
        BadFree::EmptyPool => b"invalid pointer (no block is allocated there: a double free?)",
        BadFree::NotHandedOut => {
            b"invalid pointer (no block of the pool was handed out there: a double free?)"
        }
        BadFree::DoubleFree => b"double free (the block is already free)",
        BadFree::Corrupted => {
            b"heap corruption (a freed block was written to: its free-list link is bad)"
        }
        BadFree::OtherAllocator => b"invalid pointer (a block of another allocator or domain)",
        BadFree::NoArena => b"invalid pointer (in domalloc's reserved memory, but in no arena)",
    });
    put(b" at 0x");
    let mut hex = [0u8; 16];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = b"0123456789abcdef"[(addr >> (60 - 4 * i)) & 15];
    }
    put(&hex);
    put(b"; aborting\n");
    crate::os::fatal(&line[..len])
}

/// Reports a pointer that lies in the arenas of another pool allocator than the one it was handed
/// to (a block of the object domain given to the C library's `free`, say) on one line of stderr,
/// as the hardened checks do, and aborts. `op` names the call.
#[cold]
pub fn report_other_allocator(op: &str, ptr: *const u8) -> ! {
    bad_free(op, ptr as usize, BadFree::OtherAllocator)
}

/// Reports a pointer that lies in address space domalloc reserved for arenas (a
/// [`ReservedArenas`](crate::ReservedArenas)'s) but in no arena now, on one line of stderr, and
/// aborts: never the C library's block, so never handed to it. `op` names the call.
#[cold]
pub fn report_no_arena(op: &str, ptr: *const u8) -> ! {
    bad_free(op, ptr as usize, BadFree::NoArena)
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    #[test]
    fn the_biased_block_start_test_is_exact_for_every_address_of_a_pool() {
        // Pools at several places of the address space (16 KiB aligned, below 2^47), every
        // class of the wide geometry (to 1 KiB) and a few odd sizes: the fast free's test (no
        // mask, the pool's bound) agrees with "a multiple of the block size, below the last
        // block's end" at every address of the pool, the tail past the last block included.
        let bases = [
            1usize << 14,
            0x7f12_3456_c000,
            0x5555_5555_0000,
            (1 << 47) - (1 << 14),
        ];
        let sizes = (1..=64)
            .map(|c| c * 16)
            .chain([24, 40, 1000, 4096, 5000, 16384]);
        let mut refused_starts = 0;
        for size in sizes {
            let magic = start_magic(size);
            let capacity = 16384 / size;
            // Nothing carved but the first block, half the pool, all of it.
            for carved in [1, capacity.div_ceil(2), capacity] {
                let limit = start_limit(size, carved);
                for &base in &bases {
                    let bias = start_bias(base, magic);
                    for offset in 0..16384usize {
                        let addr = base + offset;
                        let fast = (addr as u64).wrapping_mul(magic).wrapping_add(bias) < limit;
                        let block = offset % size == 0 && offset / size < carved;
                        assert_eq!(
                            fast, block,
                            "size {size}, {carved} carved, base {base:#x}, offset {offset}"
                        );
                        refused_starts += usize::from(offset % size == 0 && !block);
                    }
                }
            }
        }
        // The multiples the bound refuses: blocks not carved yet, and the tail of the sizes that
        // do not divide the pool (the test would pass without them with the multiplier as the
        // bound, as it was).
        assert!(refused_starts > 10_000, "{refused_starts}");
    }

    #[test]
    fn the_meta_multiplier_is_the_remainder_test_s_but_for_powers_of_two() {
        for size in 2..=20_000usize {
            let m = start_magic(size);
            let ceil = (u64::MAX / size as u64) + 1;
            if size.is_power_of_two() {
                assert_eq!(m, ceil + 1, "{size}");
            } else {
                assert_eq!(m, ceil, "{size}");
            }
            // The classic `< multiplier` test still holds with it (the slow paths' and the 32-bit
            // fast path's), for offsets up to 256 KiB (the largest pool).
            for n in (0..(256usize << 10)).step_by(size.max(4096) / 7 + 1) {
                let fast = (n as u64).wrapping_mul(m) < m;
                assert_eq!(fast, n % size == 0, "size {size}, offset {n}");
            }
        }
    }

    #[test]
    fn an_empty_pool_passes_no_block_start_test() {
        let g = Geometry::new(crate::PoolConfig::WIDE).unwrap();
        for addr in [0usize, 16, 1 << 14, 0x7f12_3456_c000] {
            assert!(!starts_block_below(&g, addr, 0, 0));
            assert!(!starts_block_below(&g, addr, start_magic(496), 0));
        }
        assert_eq!(start_limit(496, 0), 0);
    }

    #[test]
    fn the_pointer_check_refuses_blocks_not_carved_and_the_tail_of_a_pool() {
        // Through the C library's and the pools' slow paths (`check_pointer`): a pool of
        // 496-byte blocks (33 in 16 KiB, and a tail of 16 bytes) of a fresh allocator.
        use alloc_core::DomainAllocator;
        let pool = crate::PoolAllocator::with_config(
            crate::PoolConfig::WIDE,
            crate::OsArenas::new(),
            alloc_core::System,
        )
        .unwrap();
        let g = Geometry::new(crate::PoolConfig::WIDE).unwrap();
        let first = pool.malloc(496).unwrap().as_ptr();
        let base = first as usize & !(g.pool_size - 1);
        // SAFETY: `base` and what follows lie in a live arena of `pool`, whose block `first` is
        // live (so in the blocks below too).
        unsafe {
            assert_eq!(check_pointer(&g, base), Ok(30));
            assert_eq!(check_pointer(&g, base + 1), Err(BadFree::Interior));
            // A block start the pool has not carved yet: refused.
            assert_eq!(
                check_pointer(&g, base + 32 * 496),
                Err(BadFree::NotHandedOut)
            );
        }
        // The pool's other 32 blocks, then every block start is one.
        let rest: std::vec::Vec<_> = (0..32).map(|_| pool.malloc(496).unwrap()).collect();
        let mine = rest
            .iter()
            .filter(|p| p.as_ptr() as usize & !(g.pool_size - 1) == base)
            .count();
        assert_eq!(mine, 32, "the first 33 blocks come from the first pool");
        // SAFETY: as above.
        unsafe {
            assert_eq!(check_pointer(&g, base + 32 * 496), Ok(30));
            assert_eq!(
                check_pointer(&g, base + 33 * 496),
                Err(BadFree::NotHandedOut)
            );
            for p in rest {
                pool.free(p.as_ptr());
            }
            pool.free(first);
        }
    }
}
