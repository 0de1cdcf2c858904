//! The heap core: size-class lists, the usable-arena list, and the moves of pools between states.
//!
//! `PoolCore` is the single-owner engine behind both [`Heap`](crate::Heap) (one owner, no lock)
//! and [`PoolAllocator`](crate::PoolAllocator) (one core per thread's heap). Everything here runs with
//! `&mut self`: exclusive access is the caller's business, which is what lets a heap be owned by one
//! thread.
//!
//! * `bins[class]`: a small stack of freed blocks of each class, the first place a free goes and an
//!   allocation looks (jemalloc's tcache, as an array): a free then writes nothing into the freed
//!   block, which may be cold in the cache, and an alloc-free-alloc sequence reuses the hottest block.
//!   Blocks in a bin still count as allocated in their pool; a full bin gives its older half back
//!   to the pools, and `trim` empties the bins.
//! * `used[class]`: the **used** pools of each class (doubly linked, head first). The head is where
//!   the next block of that class comes from: pymalloc's `usedpools`, O(1).
//! * `usable`: arenas with at least one pool to give, sorted by `nfree` ascending, so pools are
//!   taken from the fullest arena and the emptiest arenas drain and can be returned to the OS.
//!   `last_with[n]` is the last arena on the list with `nfree == n` (CPython's `nfp2lasta`), which
//!   keeps the list sorted in O(1) when an arena gains a pool.
//! * `all`: every arena, for statistics and for returning everything on drop.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use alloc_core::ArenaProvider;

use crate::arena::{ArenaHeader, FreeBlock, NO_CLASS, PoolMeta};
use crate::check;
use crate::instrument;
use crate::registry;
use crate::remote::RemoteList;
use crate::size_class::{Geometry, MAX_CLASSES, MAX_POOLS_PER_ARENA};
use crate::stats::{ClassStats, PoolStats};
use crate::sync::{AtomicU32, Ordering};
use crate::threads::SlotHeader;

/// Under `debug_assertions`, every how many checked transitions the whole heap is checked too
/// (`PoolCore::check_invariants`, O(heap)); each transition checks its pool and arena (O(pool),
/// O(arena)).
#[cfg(debug_assertions)]
const HEAP_CHECK_EVERY: u32 = 256;
/// The most blocks a bin can hold.
const BIN_CAPACITY: usize = 256;
/// The most blocks of a new pool a secure heap shuffles (the order array lives on the stack); a
/// pool of more blocks (a configuration with large pools of small blocks) is carved in order.
const MAX_SHUFFLED: usize = 4096;
/// The most bytes a bin holds before it gives half back to the pools: bins of small classes hold
/// `BIN_CAPACITY` blocks, bins of larger ones fewer (at least 32 up to 1 KiB blocks, then at least
/// 2), so all bins of a heap together keep well under a mebibyte away from the pools with the
/// default classes, and a few mebibytes with classes up to 64 KiB.
const BIN_BYTES: usize = 32 << 10;
/// Whether heaps learn their working set: only where a clock lets learned memory decay (without
/// an OS, `now_ms` is always 0, and the pools share one region).
const LEARNS: bool = cfg!(any(unix, windows));

/// Asks the CPU to start loading the cache line at `addr` (a hint: nothing is read, no fault is
/// taken, and a null or stale address is harmless).
#[inline(always)]
fn prefetch(addr: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: a prefetch reads no memory and cannot fault, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(all(target_arch = "x86", target_feature = "sse"))]
    // SAFETY: as above.
    unsafe {
        core::arch::x86::_mm_prefetch::<{ core::arch::x86::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: `prfm` is a hint and cannot fault.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(
        all(
            any(target_arch = "x86_64", target_arch = "x86"),
            target_feature = "sse"
        ),
        target_arch = "aarch64"
    )))]
    let _ = addr;
}

/// Before a heap grows by a pool, its bins of blocks of at least `GROWTH_FLUSH_MIN_BLOCK` bytes
/// give their blocks back if together they hold `GROWTH_FLUSH_BYTES` or more, and the empty
/// pools that classes keep go back to their arenas if there are `GROWTH_RECLAIM_MIN` or more
/// (`PoolCore::reclaim_before_growth`).
const GROWTH_FLUSH_BYTES: usize = 64 << 10;
/// See [`GROWTH_FLUSH_BYTES`].
const GROWTH_FLUSH_MIN_BLOCK: usize = 1 << 10;
/// See [`GROWTH_FLUSH_BYTES`].
const GROWTH_RECLAIM_MIN: usize = 4;

/// How many blocks the bin of blocks of `block_size` bytes holds.
const fn bin_limit(block_size: usize) -> usize {
    let n = BIN_BYTES / block_size;
    let floor = if block_size <= 1024 { 32 } else { 2 };
    if n > BIN_CAPACITY {
        BIN_CAPACITY
    } else if n < floor {
        floor
    } else {
        n
    }
}

/// The head of a stack of freed blocks of one class: `len` blocks held, at most `limit`, in the
/// slots that follow it (the geometry's `bin_capacity` of them, `len <= limit <= capacity`).
/// `repr(C)` with `limit` just before the slots: the word before slot `len` is always readable,
/// the top block when `len > 0` and `limit` (a count, never a block's address) when the bin is
/// empty, so a free can compare its block with the top without testing `len` first.
///
/// A core's bins lie in its [`BinStore`], the bin of class `c` at `c * bin_stride` bytes, where
/// `bin_stride` is the head and the slots of the geometry's capacity. Only bins sized to the
/// geometry are in use: pymalloc's classes of at most 512 bytes keep `BIN_CAPACITY` slots each,
/// while a geometry of larger blocks, whose bins hold a few dozen of them at most, packs its
/// bins to their size, so that its heap touches a few pages of bins, not one for every two
/// classes it uses.
#[repr(C)]
struct BinHead {
    len: usize,
    limit: usize,
}

/// Bytes of a bin's head: its slots follow at this offset.
const BIN_HEAD: usize = core::mem::size_of::<BinHead>();

/// The words of the bins of every class of a core at the largest capacity: the storage each
/// geometry lays its bins in (see [`BinHead`]). Zero bytes are an empty bin with limit 0.
#[repr(C)]
struct BinStore([usize; BINS * (2 + BIN_CAPACITY)]);

/// The slots a bin of a geometry whose threshold is `threshold` holds: the limit of the bin of
/// blocks of a sixteenth of the threshold, `BIN_CAPACITY` for pymalloc's classes (every bin of
/// blocks of up to 512 bytes holds as many as its limit), fewer for geometries of larger blocks.
/// A class below a sixteenth of the threshold keeps this many at most.
pub(crate) const fn bin_capacity(threshold: usize) -> usize {
    bin_limit(threshold / 16)
}

/// The bytes from one bin to the next in a geometry whose bins hold `capacity` slots.
pub(crate) const fn bin_stride(capacity: usize) -> usize {
    BIN_HEAD + capacity * core::mem::size_of::<*mut u8>()
}

/// The limit of a bin of blocks of `block_size` bytes in a geometry whose bins hold
/// `capacity`: [`bin_limit`] of its blocks, within the capacity.
const fn limit_within(block_size: usize, capacity: usize) -> usize {
    let n = bin_limit(block_size);
    if n < capacity { n } else { capacity }
}

/// Bins of blocks above this size start small and grow as they overflow (see
/// [`first_limit`]); pymalloc's classes start at their full limit.
const SLOW_START_ABOVE: usize = 512;

/// The limit a bin starts with: [`limit_within`] for blocks of up to `SLOW_START_ABOVE` bytes;
/// for larger ones a quarter of it (at least 2), doubled at each overflow of the bin up to the
/// full limit (`PoolCore::free_in_class`). A program that frees a few blocks in each of many
/// classes of larger blocks (CPython's start-up frees buffers of dozens of sizes) then keeps a
/// few in each, and their pools can empty and serve other classes, while a class that churns
/// reaches its full bin after a few overflows.
const fn first_limit(block_size: usize, capacity: usize) -> usize {
    let full = limit_within(block_size, capacity);
    if block_size <= SLOW_START_ABOVE {
        return full;
    }
    let quarter = full / 4;
    if quarter > 2 {
        quarter
    } else if full < 2 {
        full
    } else {
        2
    }
}

/// The limit of the bin whose head is `head`, after giving it its first limit if it has none
/// (see [`first_limit`]; a secure heap's bins stay at 0): `block_size` and `capacity` are its
/// class's and its geometry's.
///
/// # Safety
/// `head` is the head of a bin of a core that the caller holds mutably.
#[inline(always)]
unsafe fn armed(head: *mut BinHead, secure: bool, block_size: usize, capacity: usize) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe {
        if (*head).limit == 0 && !secure {
            (*head).limit = first_limit(block_size, capacity);
        }
        (*head).limit
    }
}

/// A bin of a core, for the core's own use: its head and its slots (the geometry's capacity of
/// them), borrowed from the core apart from every other bin.
struct Bin<'a> {
    head: &'a mut BinHead,
    slots: &'a mut [*mut u8],
}

impl Bin<'_> {
    /// Takes the top block, if any. `block_size` is the class's (for the checkers only).
    #[inline(always)]
    fn pop(&mut self, block_size: usize) -> Option<NonNull<u8>> {
        if self.head.len == 0 {
            return None;
        }
        self.head.len -= 1;
        // SAFETY: `len < limit <= capacity`, the slots' length, and slots below `len` hold
        // blocks of the bin's class (pushed by frees, or carved by `refill_bin`).
        let slot = unsafe { self.slots.get_unchecked_mut(self.head.len) };
        let p = *slot;
        if instrument::CLEAR_STALE {
            *slot = ptr::null_mut();
        }
        // SAFETY: bins hold blocks (never null) of at least 16 bytes, handed out now.
        unsafe { handed_out(p, block_size) };
        // SAFETY: as above.
        Some(unsafe { NonNull::new_unchecked(p) })
    }
}

/// What every allocation of a block of the pools does to it as it hands it out: the checkers
/// told (a live block, contents undefined) and the freed mark cleared (`check::unmark`).
///
/// # Safety
/// `p` is a block of `block_size` bytes (at least 16) of the pools, handed out now by the
/// calling thread.
#[inline(always)]
unsafe fn handed_out(p: *mut u8, block_size: usize) {
    instrument::block_allocated(p, block_size, false);
    // SAFETY: the caller's guarantee.
    unsafe { check::unmark(p) };
}

/// Puts a freed block in its bin, for the fast free, which has the bin's address (from the
/// pool's `PoolMeta::bin_at`, or from its class with 32-bit pointers) rather than a core, and
/// marks it freed (`check::mark_freed`). False, having done nothing, if the bin is full or the
/// block holds the mark of a freed block (without the marks: is the bin's top); then the
/// caller's long way frees or reports it.
///
/// # Safety
/// `bin` is the bin of a pool's class in a core the calling thread owns, with no other reference
/// to the core alive, and `ptr` a live block of that pool, of `block_size` bytes.
// Used by `PoolAllocator` (an OS is needed) alone.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn push_bin_at(bin: *mut u8, ptr: NonNull<u8>, block_size: usize) -> bool {
    // A double free: the block holds the mark its first free wrote (in a bin, or on its pool's
    // free list), or, without the marks, the usual `free(p); free(p)`, the block on the bin's
    // top. Refused, so that the caller's long way confirms and reports it (see `check`).
    // SAFETY: the caller's guarantee: a live block of the pools, at least 16 bytes.
    if unsafe { freed_before(bin, ptr.as_ptr()) } {
        return false;
    }
    // SAFETY: the caller's guarantee: a bin of a core, touched by the calling thread alone.
    unsafe { push_raw(bin, ptr, block_size, true) }
}

/// Whether a free of `ptr` into the bin at `bin` looks like a second free: the block holds
/// the freed mark, or, without the marks, it is the bin's top.
///
/// # Safety
/// As for [`push_bin_at`].
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn freed_before(bin: *mut u8, ptr: *mut u8) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe {
        if check::MARKS {
            check::marked_freed(ptr)
        } else {
            bin_top_is(bin, ptr)
        }
    }
}

/// Whether `ptr` is the top of the bin at `bin` (a block freed into it last).
///
/// # Safety
/// As for [`push_bin_at`]: `bin` is the bin of a class in a core the calling thread owns.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn bin_top_is(bin: *mut u8, ptr: *mut u8) -> bool {
    // SAFETY: the caller's guarantee: a bin's head, then its slots; `len <= capacity`, so word
    // `1 + len` is `limit` (len 0) or slot `len - 1`, inside the bin either way.
    unsafe {
        let words = bin.cast::<*mut u8>();
        let len = bin.cast::<usize>().read();
        words.add(1 + len).read() == ptr
    }
}

/// Pushes a freed block of `block_size` bytes into the bin at `bin` if it has room, marked freed
/// if `mark` (an unsized free's: see `check::mark_freed`); false, having done nothing, if it is
/// full.
///
/// # Safety
/// As for [`push_bin_at`].
#[inline(always)]
unsafe fn push_raw(bin: *mut u8, ptr: NonNull<u8>, block_size: usize, mark: bool) -> bool {
    // SAFETY: the caller's guarantee: a bin's head (`len`, `limit`), then its slots, of which
    // `limit` at most are used (`limit <= capacity`); touched by the calling thread alone.
    unsafe {
        let head = bin.cast::<BinHead>();
        let len = (*head).len;
        if len >= (*head).limit {
            return false;
        }
        if mark {
            check::mark_freed(ptr.as_ptr());
        }
        bin.add(BIN_HEAD)
            .cast::<*mut u8>()
            .add(len)
            .write(ptr.as_ptr());
        (*head).len = len + 1;
    }
    instrument::block_freed(ptr.as_ptr(), block_size);
    true
}

/// The bin of `class` among the bins starting at `bins` (`PoolCore::bins_base`), `stride`
/// bytes apart (the geometry's `bin_stride`).
///
/// # Safety
/// `bins` is the first bin of a core the calling thread owns, with no other reference to it
/// alive, `stride` its geometry's, and `class` is below that core's class count.
#[inline(always)]
unsafe fn bin_in<'a>(bins: *mut u8, class: usize, stride: usize) -> Bin<'a> {
    // SAFETY: the caller's guarantee: the bin of `class` is a head and `(stride - BIN_HEAD) / 8`
    // slots, apart from every other bin, at `class * stride`.
    unsafe {
        let bin = bins.add(class * stride);
        Bin {
            head: &mut *bin.cast::<BinHead>(),
            slots: core::slice::from_raw_parts_mut(
                bin.add(BIN_HEAD).cast::<*mut u8>(),
                (stride - BIN_HEAD) / core::mem::size_of::<*mut u8>(),
            ),
        }
    }
}

/// [`PoolCore::pop_bin`] for the fast paths, from the bins at `bins` (a thread's cache way),
/// `stride` bytes apart: the bin is one multiplication and one addition away. `block_size` is
/// the class's (for the checkers only).
///
/// # Safety
/// As for [`bin_in`].
// Used by `PoolAllocator` (an OS is needed) alone.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn pop_bin_in(
    bins: *mut u8,
    class: usize,
    stride: usize,
    block_size: usize,
) -> Option<NonNull<u8>> {
    // SAFETY: the caller's guarantee.
    unsafe { bin_in(bins, class, stride) }.pop(block_size)
}

/// A free into the bin of `class` for the fast paths, into the bins at `bins` (a thread's cache way),
/// `stride` bytes apart.
///
/// # Safety
/// As for [`bin_in`], and `ptr` is a live block of that core of `class`, of `block_size` bytes.
// Used by `PoolAllocator` (an OS is needed) alone.
#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn push_bin_in(
    bins: *mut u8,
    class: usize,
    stride: usize,
    ptr: NonNull<u8>,
    block_size: usize,
) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe { push_raw(bins.add(class * stride), ptr, block_size, false) }
}

/// One bin per class, and one for `NO_CLASS` whose limit stays 0.
const BINS: usize = MAX_CLASSES + 1;

/// The bins of a core of `geo` made by value ([`PoolCore::new`]): each class's limit set (none
/// in a secure heap, which has no bins: every free goes to its pool's checks).
const fn bins_for(geo: &Geometry) -> BinStore {
    let mut words = [0; BINS * (2 + BIN_CAPACITY)];
    let per_bin = geo.bin_stride / core::mem::size_of::<usize>();
    let mut c = 0;
    while c < geo.nclasses && !geo.secure {
        words[c * per_bin + 1] = first_limit(geo.block_size(c), geo.bin_capacity);
        c += 1;
    }
    BinStore(words)
}

/// Blocks of one pool of another heap on their way home (`PoolCore::send_home`), linked from
/// `first` to `last` through their first words.
#[derive(Clone, Copy)]
struct Chain {
    home: *const SlotHeader,
    pool: *mut PoolMeta,
    first: *mut u8,
    last: *mut u8,
    n: usize,
}

impl Chain {
    const EMPTY: Chain = Chain {
        home: ptr::null(),
        pool: ptr::null_mut(),
        first: ptr::null_mut(),
        last: ptr::null_mut(),
        n: 0,
    };

    /// The chain of one block, `block` of pool `pool` of heap `home`.
    fn one(home: *const SlotHeader, pool: *mut PoolMeta, block: *mut u8) -> Chain {
        Chain {
            home,
            pool,
            first: block,
            last: block,
            n: 1,
        }
    }
}

/// Pushes `chain` onto its pool's remote list (`remote::push_remote`); returns whether its heap
/// had no owner after the pool was queued (the caller must then see the heap collected).
///
/// # Safety
/// The chain is `n` free blocks of its pool, of heap `home`, allocated as far as the pool knows,
/// linked from `first` to `last`, and not used afterwards.
unsafe fn push_home(chain: Chain) -> bool {
    // SAFETY: the caller's guarantee: live blocks of heap `home`, free from now on; the pool
    // cannot be recycled while they are not back. Slots are never unmapped.
    unsafe {
        let hdr = &*chain.home;
        let blocks = (chain.first, chain.last, chain.n);
        crate::remote::push_remote(&hdr.notify, &hdr.owner, chain.pool, blocks, |b, next| {
            instrument::with_link(b, || b.cast::<*mut u8>().write(next))
        })
    }
}

/// Sends one freed block of pool `pool` of heap `home` home at once (a thread with no bin for
/// it): [`push_home`] of it alone, after the hardened default's check that it does not head the
/// pool's remote list already (then it is free, a live block being on no list: a double free,
/// reported). Returns what `push_home` does.
///
/// # Safety
/// As for [`push_home`], of the chain of `block` alone; `pool` is `block`'s pool.
pub(crate) unsafe fn push_one_home(
    home: *const SlotHeader,
    pool: *mut PoolMeta,
    block: *mut u8,
) -> bool {
    // SAFETY: the caller's guarantee: a pool of a live arena.
    if unsafe { (*pool).remote.starts_with(block) } {
        check::bad_free("free", block as usize, check::BadFree::DoubleFree);
    }
    // SAFETY: the caller's guarantee.
    unsafe { push_home(Chain::one(home, pool, block)) }
}

pub(crate) struct PoolCore<P: ArenaProvider> {
    geo: Geometry,
    provider: P,
    /// The per-thread heap this core is the engine of (null for a `Heap`): written into every
    /// arena it maps, so that frees from other threads find where to send blocks.
    slot: *const SlotHeader,
    used: [*mut PoolMeta; MAX_CLASSES],
    bins: BinStore,
    usable: *mut ArenaHeader,
    last_with: [*mut ArenaHeader; MAX_POOLS_PER_ARENA + 1],
    all: *mut ArenaHeader,
    /// Completely empty arenas kept mapped.
    empty_arenas: usize,
    /// Empty pools with committed pages, over all arenas.
    empty_committed: usize,
    /// When the last purge ran (`os::now_ms`).
    last_purge_ms: u64,
    /// A purge is running (pools it returns must not start another).
    purging: bool,
    /// The key of a secure heap's free-list links (0 until its first arena; see `link`).
    key: usize,
    /// A secure heap's generator for the order of new pools' blocks (xorshift).
    rng: u64,
    arenas: usize,
    arenas_highest: usize,
    arenas_allocated: usize,
    arenas_released: usize,
    pools_decommitted: usize,
    /// Committed pools (carved and not decommitted since), in use or empty.
    committed_pools: usize,
    /// Pools given back at once (arenas released, or decommitted by a purge of a mostly empty
    /// heap) in the current burst of give-backs: 0 once a regrowth has learned from them (see
    /// [`learn_regrowth`](Self::learn_regrowth)).
    given_back_pools: usize,
    /// When the last give-back at once happened (`os::now_ms`).
    given_back_ms: u64,
    /// `committed_pools` when the current burst of give-backs started: the working set before it.
    burst_committed: usize,
    /// Pools committed again or carved since the current burst started.
    regrown_pools: usize,
    /// Empty pools kept committed on top of `retain_pools`, learned from pools given back at
    /// once and taken again within the purge delay (a program that frees a large structure and
    /// builds another): its working set, kept committed instead of refaulted every round.
    /// Unlearned as such pools stay empty for the delay and are decommitted (see `return_pool`).
    learned_pools: usize,
    /// A heap that nobody owned when a flush sent it blocks of its pools (see
    /// [`flush_bin`](Self::flush_bin)): its owner-to-be must collect it (`PoolAllocator`
    /// takes it with [`take_orphans`](Self::take_orphans)). Null if none.
    orphan: *const SlotHeader,
    /// More than one such heap was met since the last `take_orphans`.
    orphans_more: bool,
    /// The heap mapped an arena or purged by time since the last `take_sweep`: its front may
    /// sweep the heaps nobody owns for learned memory (`PoolAllocator::sweep_learned`).
    sweep_due: bool,
    /// Times a class kept its only pool as it emptied (`pool_free_slow`) since
    /// `reclaim_before_growth` last counted such pools: at least how many there may be now, so
    /// that growth looks for them only when there may be `GROWTH_RECLAIM_MIN`.
    kept_empty_hint: usize,
    /// Transitions checked so far (debug builds): every `HEAP_CHECK_EVERY`th also checks the
    /// whole heap.
    #[cfg(debug_assertions)]
    transitions: u32,
}

// SAFETY: the raw pointers point into arenas that the core owns exclusively; moving the core to
// another thread moves that ownership with it. `P` must be `Send` to move with it.
unsafe impl<P: ArenaProvider + Send> Send for PoolCore<P> {}

impl<P: ArenaProvider> PoolCore<P> {
    pub(crate) const fn new(geo: Geometry, provider: P) -> Self {
        PoolCore {
            geo,
            provider,
            slot: ptr::null(),
            used: [ptr::null_mut(); MAX_CLASSES],
            bins: bins_for(&geo),
            usable: ptr::null_mut(),
            last_with: [ptr::null_mut(); MAX_POOLS_PER_ARENA + 1],
            all: ptr::null_mut(),
            empty_arenas: 0,
            empty_committed: 0,
            last_purge_ms: 0,
            purging: false,
            key: 0,
            rng: 0,
            arenas: 0,
            arenas_highest: 0,
            arenas_allocated: 0,
            arenas_released: 0,
            pools_decommitted: 0,
            committed_pools: 0,
            given_back_pools: 0,
            given_back_ms: 0,
            burst_committed: 0,
            regrown_pools: 0,
            learned_pools: 0,
            orphan: ptr::null(),
            orphans_more: false,
            sweep_due: false,
            kept_empty_hint: 0,
            #[cfg(debug_assertions)]
            transitions: 0,
        }
    }

    /// Writes a core at `dst`, for a per-thread heap's slot: [`new`](Self::new)'s state, except
    /// that every bin is unarmed (limit 0: it takes nothing) until its class is first used on a
    /// slow path ([`arm_bin`](Self::arm_bin)). With `zeroed` (fresh memory from the OS) the bins
    /// are not written at all, all zero bytes being an empty unarmed bin: their 130 KiB, 2 KiB
    /// apart, then become resident only for the classes the thread uses, where writing them all
    /// made every page of them resident in every heap of every thread.
    ///
    /// # Safety
    /// `dst` is valid for writes of a `PoolCore<P>` and aligned; with `zeroed`, its bytes are
    /// all zero. Bin slots above a bin's `len` are never read, so their bytes need only be
    /// initialised (zero from the OS, or an earlier core's).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) unsafe fn init_in_slot(dst: *mut Self, geo: Geometry, provider: P, zeroed: bool) {
        use core::ptr::addr_of_mut;
        // SAFETY: the caller's guarantee: each field is written in place, the bins' headers
        // unless their bytes are zero already.
        unsafe {
            addr_of_mut!((*dst).geo).write(geo);
            addr_of_mut!((*dst).provider).write(provider);
            addr_of_mut!((*dst).slot).write(ptr::null());
            addr_of_mut!((*dst).used).write([ptr::null_mut(); MAX_CLASSES]);
            if !zeroed {
                // An earlier core's bins, perhaps of another geometry (of another stride): the
                // head of each bin of this one. What else the last core left is slot words,
                // never read above a bin's `len`.
                let bins = addr_of_mut!((*dst).bins).cast::<u8>();
                for i in 0..BINS {
                    let b = bins.add(i * geo.bin_stride).cast::<BinHead>();
                    addr_of_mut!((*b).len).write(0);
                    addr_of_mut!((*b).limit).write(0);
                }
            }
            addr_of_mut!((*dst).usable).write(ptr::null_mut());
            if !zeroed {
                addr_of_mut!((*dst).last_with).write([ptr::null_mut(); MAX_POOLS_PER_ARENA + 1]);
            }
            addr_of_mut!((*dst).all).write(ptr::null_mut());
            addr_of_mut!((*dst).empty_arenas).write(0);
            addr_of_mut!((*dst).empty_committed).write(0);
            addr_of_mut!((*dst).last_purge_ms).write(0);
            addr_of_mut!((*dst).purging).write(false);
            addr_of_mut!((*dst).key).write(0);
            addr_of_mut!((*dst).rng).write(0);
            addr_of_mut!((*dst).arenas).write(0);
            addr_of_mut!((*dst).arenas_highest).write(0);
            addr_of_mut!((*dst).arenas_allocated).write(0);
            addr_of_mut!((*dst).arenas_released).write(0);
            addr_of_mut!((*dst).pools_decommitted).write(0);
            addr_of_mut!((*dst).committed_pools).write(0);
            addr_of_mut!((*dst).given_back_pools).write(0);
            addr_of_mut!((*dst).given_back_ms).write(0);
            addr_of_mut!((*dst).burst_committed).write(0);
            addr_of_mut!((*dst).regrown_pools).write(0);
            addr_of_mut!((*dst).learned_pools).write(0);
            addr_of_mut!((*dst).orphan).write(ptr::null());
            addr_of_mut!((*dst).orphans_more).write(false);
            addr_of_mut!((*dst).sweep_due).write(false);
            addr_of_mut!((*dst).kept_empty_hint).write(0);
            #[cfg(debug_assertions)]
            addr_of_mut!((*dst).transitions).write(0);
        }
    }

    /// Names every field without `..`: a field added to `PoolCore` fails to compile here until
    /// [`init_in_slot`](Self::init_in_slot) writes it too.
    #[allow(dead_code)]
    fn every_field_is_written_by_init_in_slot(self) {
        let PoolCore {
            geo: _,
            provider: _,
            slot: _,
            used: _,
            bins: _,
            usable: _,
            last_with: _,
            all: _,
            empty_arenas: _,
            empty_committed: _,
            last_purge_ms: _,
            purging: _,
            key: _,
            rng: _,
            arenas: _,
            arenas_highest: _,
            arenas_allocated: _,
            arenas_released: _,
            pools_decommitted: _,
            committed_pools: _,
            given_back_pools: _,
            given_back_ms: _,
            burst_committed: _,
            regrown_pools: _,
            learned_pools: _,
            orphan: _,
            orphans_more: _,
            sweep_due: _,
            kept_empty_hint: _,
            #[cfg(debug_assertions)]
                transitions: _,
        } = self;
    }

    /// Gives the bin of `class` its limit if it has none yet: a core made by
    /// [`init_in_slot`](Self::init_in_slot) arms each bin at the first free that finds it
    /// unarmed, or at an allocation that found it empty and carves from its class's head pool.
    /// A secure heap's bins stay at 0.
    #[inline]
    fn arm_bin(&mut self, class: usize) {
        let (secure, block_size, capacity) = (
            self.geo.secure,
            self.geo.block_size(class),
            self.geo.bin_capacity,
        );
        let head: *mut BinHead = self.bin(class).head;
        // SAFETY: the head of the bin of `class`, borrowed from `self` mutably just above.
        unsafe { armed(head, secure, block_size, capacity) };
    }

    pub(crate) fn provider_mut(&mut self) -> &mut P {
        &mut self.provider
    }

    /// Makes this core the engine of a per-thread heap (before it maps any arena).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn set_slot(&mut self, slot: *const SlotHeader) {
        debug_assert!(self.all.is_null());
        self.slot = slot;
    }

    /// Takes back the blocks other threads freed into this core's pools (see `remote`); returns
    /// whether there were any pools waiting.
    pub(crate) fn drain_remote(&mut self) -> bool {
        if self.slot.is_null() {
            return false;
        }
        // SAFETY: a heap's slot outlives its core.
        let notify = unsafe { &(*self.slot).notify };
        let splice = |pool: *mut PoolMeta, head: *mut u8, count, tail: *mut u8| {
            // SAFETY: a queued pool is a live pool of this core with blocks waiting (so it is not
            // empty), and the list taken from it is ours now.
            unsafe { self.splice_remote(pool, head.cast(), count, tail.cast()) }
        };
        // SAFETY: the caller owns this core's heap, whose queued pools are live pools of it.
        unsafe { crate::remote::take_remote(notify, splice) }
    }

    /// Puts a pool's remote list (taken by `drain_remote`) onto its `local_free` whole, with the
    /// length kept in its head word: no block of it is read (each would be a cache miss, another
    /// core wrote them), and the pool changes state once.
    ///
    /// # Safety
    /// `pool` is a live pool of this core, `head` .. `tail` the list just taken from it, of
    /// `count` blocks (0: unknown).
    unsafe fn splice_remote(
        &mut self,
        pool: *mut PoolMeta,
        head: *mut FreeBlock,
        count: usize,
        tail: *mut FreeBlock,
    ) {
        // SAFETY: the caller's guarantee.
        unsafe {
            let n = if count != 0 {
                count as u16
            } else {
                let mut n: u16 = 1;
                let mut b = head;
                loop {
                    let next = instrument::with_link(b.cast(), || (*b).next);
                    if next.is_null() {
                        break;
                    }
                    b = next;
                    n += 1;
                }
                n
            };
            let p = &mut *pool;
            debug_assert!(p.class != NO_CLASS && n <= p.used);
            if self.key != 0 {
                // A secure heap's links are encoded: those the freeing threads wrote are
                // plain, so each is re-encoded (blocks of this pool: the remote list's).
                let mut b = head;
                while b != tail {
                    let next = instrument::with_link(b.cast(), || (*b).next);
                    self.link_store(b, next);
                    b = next;
                }
            }
            self.link_store(tail, p.local_free);
            p.local_free = head;
            p.used -= n;
            if p.used == 0 || !p.in_list {
                self.pool_free_slow(pool);
            }
        }
    }

    /// The arena holding `addr`.
    #[inline]
    fn arena_of(&self, addr: usize) -> *mut ArenaHeader {
        (addr & !(self.geo.arena_size - 1)) as *mut ArenaHeader
    }

    /// The meta of the pool holding `addr`, which must lie in one of this core's arenas.
    #[inline]
    fn meta_of(&self, addr: usize) -> *mut PoolMeta {
        let arena = self.arena_of(addr);
        let index = (addr - arena as usize) >> self.geo.pool_shift;
        // SAFETY: the address lies in a live arena of this core (callers check ownership), and
        // `index < pools_per_arena` because the offset is below the arena size.
        unsafe { ArenaHeader::meta(arena, index) }
    }

    /// The address of the first bin, for a thread's cache way (`threads::Way::bins`): the bin
    /// of `class` lies `class * bin_stride` bytes further (see [`pop_bin_in`]).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn bins_base(&mut self) -> *mut u8 {
        ptr::addr_of_mut!(self.bins).cast()
    }

    /// The bin of `class` (below `BINS`), borrowed apart from the core's other fields and bins.
    #[inline(always)]
    fn bin(&mut self, class: usize) -> Bin<'_> {
        debug_assert!(class < BINS);
        // SAFETY: the bins of the geometry lie in the store (`BINS` bins of `bin_stride` bytes at
        // most the store's size, `bin_capacity <= BIN_CAPACITY`); borrowed from `self` mutably.
        unsafe { bin_in(self.bins_base(), class, self.geo.bin_stride) }
    }

    /// The bin of `class` (below `BINS`) to read: its head and its slots.
    #[inline(always)]
    fn bin_view(&self, class: usize) -> (&BinHead, &[*mut u8]) {
        debug_assert!(class < BINS);
        // SAFETY: as in `bin`; borrowed from `self` to read only.
        unsafe {
            let bin = ptr::addr_of!(self.bins)
                .cast::<u8>()
                .add(class * self.geo.bin_stride);
            (
                &*bin.cast::<BinHead>(),
                core::slice::from_raw_parts(
                    bin.add(BIN_HEAD).cast::<*mut u8>(),
                    self.geo.bin_capacity,
                ),
            )
        }
    }

    /// A block of `class` from its bin, if the bin has one (touches nothing else: no provider, no
    /// pool). `class` must be below the geometry's class count.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn pop_bin(&mut self, class: usize) -> Option<NonNull<u8>> {
        debug_assert!(class < self.geo.nclasses);
        // `class < nclasses <= MAX_CLASSES` (the routing takes it from `class_of` of a size
        // within the threshold).
        let block_size = self.geo.block_size(class);
        self.bin(class).pop(block_size)
    }

    /// Whether one of the `RECENT` blocks freed last into the bin of `class` is `ptr`: a double
    /// free of a block freed a moment ago (the long way's check; the fast path looks at the top
    /// only). Bounded, so that it costs a few compares and not a scan of the whole bin.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn bin_recently_holds(&self, ptr: *mut u8, class: usize) -> bool {
        const RECENT: usize = 8;
        if class >= BINS {
            return false;
        }
        let (head, slots) = self.bin_view(class);
        slots[head.len.saturating_sub(RECENT)..head.len].contains(&ptr)
    }

    /// Whether `ptr`, a block start of a pool of `class` that holds the freed mark, is free
    /// already as far as this core can tell: anywhere in its bin of the class, or on the free
    /// lists of its pool when the pool is this core's (another heap's lists are its owner's to
    /// read; a secure heap's links are encoded, and its pools check a free themselves). The long
    /// way's confirmation of the mark (see `check::FREED_MARK`): a double free when true. A
    /// list that leads out of the pool is not followed further.
    // Used by `PoolAllocator` (an OS is needed) and `Heap`.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn holds_freed(&self, ptr: *mut u8, class: usize) -> bool {
        if class >= BINS {
            return false;
        }
        let (head, slots) = self.bin_view(class);
        if slots[..head.len].contains(&ptr) {
            return true;
        }
        let geo = self.geo;
        // SAFETY: `ptr` starts a block of a live pool of this core's allocator (the caller's).
        if self.key != 0 || self.home_of(&geo, unsafe { NonNull::new_unchecked(ptr) }) != self.slot
        {
            return false;
        }
        let pool = self.meta_of(ptr as usize);
        // SAFETY: a live pool of this core, whose lists only this thread changes; each link is
        // checked to lie in the pool before it is read.
        unsafe {
            let p = &*pool;
            let (base, end) = (p.base() as usize, p.base() as usize + p.end_offset as usize);
            let on = |mut b: *mut FreeBlock| {
                let mut steps = 0;
                while !b.is_null() && steps <= p.capacity as usize {
                    if ptr::eq(b.cast::<u8>(), ptr) {
                        return true;
                    }
                    // A link that is no block start of the pool (a list a write after free
                    // corrupted) is not followed.
                    if (b as usize) < base
                        || b as usize >= end
                        || !(b as usize - base).is_multiple_of(p.block_size as usize)
                    {
                        return false;
                    }
                    b = instrument::with_link(b.cast(), || (*b).next);
                    steps += 1;
                }
                false
            };
            on(p.free) || on(p.local_free)
        }
    }

    /// Allocates a block of `class`; `id` is the owner id of the front (assigned on first arena).
    #[inline]
    pub(crate) fn alloc_fast(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        debug_assert!(class < self.geo.nclasses);
        let block_size = self.geo.block_size(class);
        if let Some(p) = self.bin(class).pop(block_size) {
            return Some(p);
        }
        self.alloc_and_refill(class, id)
    }

    /// `alloc_fast` when the bin of `class` is empty: a block from the pools, and the bin
    /// refilled from the same pool (`refill_bin`). Out of line, so that the bin's path stays a
    /// leaf that saves no registers.
    #[inline(never)]
    fn alloc_and_refill(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        self.alloc_from_pools(class, id)
    }

    /// `alloc_and_refill`'s body, inlined into the front's slow path (one frame there, for a
    /// caller that found the bin empty and calls nothing else first).
    #[inline(always)]
    pub(crate) fn alloc_from_pools(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        let p = self.pool_alloc_fast(class, id);
        if let Some(b) = p {
            // SAFETY: a block of the pools, handed out now.
            unsafe { handed_out(b.as_ptr(), self.geo.block_size(class)) };
            // Only a head pool that is carving (both free lists empty) refills the bin
            // (`refill_bin`); one with a free list serves the class's next allocation itself, so
            // a program rebuilding a structure from freed blocks pays no look at the bin here.
            // A bin not armed now is armed by the first free that finds it so.
            let pool = self.used[class];
            // SAFETY: pools on a used list are live.
            if !pool.is_null() && unsafe { (*pool).free.is_null() && (*pool).local_free.is_null() }
            {
                self.arm_bin(class);
                self.refill_bin(class);
            }
        }
        p
    }

    /// Where the bin of `class` lies, in bytes from the header of the heap slot this core is the
    /// engine of (`PoolMeta::bin_at`); 0 for a core of no slot (a `Heap`, whose frees never
    /// take the fast path that reads it).
    #[cfg(target_pointer_width = "64")]
    fn bin_at(&self, class: usize) -> u32 {
        if self.slot.is_null() {
            return 0;
        }
        let bin = ptr::addr_of!(self.bins) as usize + class * self.geo.bin_stride;
        let at = bin.wrapping_sub(self.slot as usize);
        debug_assert!(at < crate::threads::SLOT_BYTES, "the core lies in its slot");
        at as u32
    }

    /// How many blocks the bin of `class` holds, and its limit.
    #[cfg(test)]
    pub(crate) fn bin_fill(&self, class: usize) -> (usize, usize) {
        let (head, _) = self.bin_view(class);
        (head.len, head.limit)
    }

    /// The bin of `class` ran empty and the caller just took a block from the class's head
    /// pool: if that pool is carving (its free lists are empty and it has never-used blocks),
    /// carves up to a quarter of the bin's limit more into the bin, so that the next allocations
    /// of the class pop the bin (the fast path) instead of coming here one block at a time. A
    /// program that allocates many blocks in a row (building a structure, or taking again a pool
    /// that emptied, which carves afresh) then pays the pool's path once per batch.
    ///
    /// Only never-used blocks are moved: carving reads no memory. Blocks on a free list are not:
    /// reading a batch of links is a chain of dependent cache misses that the program's own work
    /// no longer hides, and moving them measured slower in time on `pyobjects` (about 10%,
    /// paired runs) for 15% fewer instructions (see `benches/RESULTS.md`).
    ///
    /// The blocks count as allocated for their pool (its `used`), exactly as blocks freed into a
    /// bin do, and are free as far as checkers know. Only the head pool is looked at. A secure
    /// heap has no bins (every limit 0), so it carves nothing here.
    #[inline]
    fn refill_bin(&mut self, class: usize) {
        let (head, _) = self.bin_view(class);
        let want = head.limit / 4;
        let pool = self.used[class];
        if want == 0 || head.len != 0 || pool.is_null() {
            return;
        }
        // SAFETY: pools on a used list are live, and carved offsets stay below `end_offset`; the
        // bin is empty with `want < limit <= capacity` slots.
        unsafe {
            let p = &mut *pool;
            if !p.free.is_null() || !p.local_free.is_null() {
                return;
            }
            let size = p.block_size as usize;
            let left = (p.end_offset - p.next_offset) as usize / size;
            let n = want.min(left);
            let first = p.base().add(p.next_offset as usize);
            let bin = self.bin(class);
            // Popped from the top: the lowest address last in, so they go out in address order.
            for (i, slot) in bin.slots[..n].iter_mut().enumerate() {
                *slot = first.add((n - 1 - i) * size);
            }
            bin.head.len = n;
            Self::carve(p, n);
            p.used += n as u16;
        }
    }

    /// The common case of `alloc_from_pools`, alone: a block popped from the free list of the
    /// class's head pool when that list holds at least two blocks. `None`, having done nothing,
    /// in every other case (no head pool, a list of one block or none, a secure heap), which the
    /// caller sends the whole way (`alloc_from_pools`).
    ///
    /// What it leaves out is the rest of the pools' path: taking the last block of a list may
    /// leave the pool carving, where the bin is armed and refilled (or `local_free` to swap in);
    /// a secure heap decodes and checks its links. This
    /// case touches no provider and finds no orphan, so the caller needs neither the provider
    /// refresh nor the settling; and the test is small enough to keep the caller a leaf.
    ///
    /// # Safety
    /// `class` is below the geometry's class count.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    #[inline(always)]
    pub(crate) unsafe fn pop_pool_list(&mut self, class: usize) -> Option<NonNull<u8>> {
        debug_assert!(class < self.geo.nclasses);
        // SAFETY: `class < nclasses <= MAX_CLASSES` (the caller's guarantee).
        let pool = unsafe { *self.used.get_unchecked(class) };
        if pool.is_null() || self.key != 0 {
            return None;
        }
        // SAFETY: pools on a used list are live; blocks on their free list lie inside them, and
        // each holds the link to the next (a plain pointer: the heap is not secure).
        unsafe {
            let p = &mut *pool;
            let block = p.free;
            if block.is_null() {
                return None;
            }
            let next = instrument::with_link(block.cast(), || (*block).next);
            if next.is_null() {
                return None;
            }
            // As in `pool_alloc_fast`: the next allocation of the class reads `next`'s link.
            prefetch(next.cast());
            p.free = next;
            p.used += 1;
            handed_out(block.cast(), p.block_size as usize);
            Some(NonNull::new_unchecked(block.cast()))
        }
    }

    /// Allocates a block of `class` from its pools.
    #[inline(always)]
    fn pool_alloc_fast(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        let pool = self.used[class];
        if !pool.is_null() {
            // SAFETY: pools on a used list are live; blocks on their free list lie inside them.
            unsafe {
                let p = &mut *pool;
                let mut block = p.free;
                if block.is_null() {
                    // The blocks freed since `free` ran dry become the free list.
                    block = p.local_free;
                    p.local_free = ptr::null_mut();
                }
                if !block.is_null() {
                    let next = self.link_load(block, p);
                    // The next allocation of the class reads `next`'s link: start loading it
                    // now, so that the miss on a block freed long ago overlaps the program's
                    // work instead of stalling that allocation.
                    prefetch(next.cast());
                    p.free = next;
                    p.used += 1;
                    if self.key != 0 {
                        // A live block's first word must not decode to a link (see
                        // `check_not_free`): the program may never write it.
                        instrument::with_link(block.cast(), || (*block).next = ptr::null_mut());
                    }
                    return Some(NonNull::new_unchecked(block.cast()));
                }
            }
        }
        self.pool_alloc_slow(class, id)
    }

    /// The head pool's free list is empty (or there is no pool): swap in the blocks freed
    /// meanwhile, carve a never-used block, retire full pools, or take a new pool.
    #[cold]
    #[inline(never)]
    fn pool_alloc_slow(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        loop {
            let pool = self.used[class];
            if pool.is_null() {
                // Blocks other threads gave back come before a new pool.
                if self.drain_remote() {
                    continue;
                }
                return self.alloc_from_new_pool(class, id);
            }
            // SAFETY: pools on a used list are live; carved offsets stay below `end_offset`.
            unsafe {
                let p = &mut *pool;
                if !p.free.is_null() {
                    break;
                }
                if !p.local_free.is_null() {
                    p.free = p.local_free;
                    p.local_free = ptr::null_mut();
                    break;
                }
                if p.next_offset < p.end_offset {
                    // Lazy carving: one never-used block, handed out directly.
                    let block = p.base().add(p.next_offset as usize);
                    Self::carve(p, 1);
                    p.used += 1;
                    return Some(NonNull::new_unchecked(block));
                }
                // Full: off the used list (it is the head); the first free brings it back.
                debug_assert_eq!(p.used, p.capacity);
                self.unlink_used(pool);
                self.check_transition(pool, ptr::null_mut());
            }
        }
        self.pool_alloc_fast(class, id)
    }

    #[cold]
    fn alloc_from_new_pool(&mut self, class: usize, id: &AtomicU32) -> Option<NonNull<u8>> {
        self.reclaim_before_growth(class);
        if self.usable.is_null() {
            self.new_arena(id)?;
        }
        let pool = self.take_pool()?;
        let size = self.geo.block_size(class);
        let capacity = self.geo.pool_size / size;
        // SAFETY: `take_pool` returned an empty pool of a live arena, committed.
        unsafe {
            let p = &mut *pool;
            p.class = class as u8;
            #[cfg(target_pointer_width = "64")]
            {
                p.bin_at = self.bin_at(class);
            }
            p.start_magic = check::start_magic(size);
            #[cfg(target_pointer_width = "64")]
            {
                p.start_bias = check::start_bias(p.base() as usize, p.start_magic);
            }
            p.block_size = size as u32;
            p.capacity = capacity as u16;
            p.used = 1;
            p.free = ptr::null_mut();
            p.local_free = ptr::null_mut();
            p.end_offset = (capacity * size) as u32;
            Self::carved_first(p, 1);
            self.link_used_front(pool);
            self.check_transition(pool, self.arena_of(pool as usize));
            if self.key != 0 && capacity <= MAX_SHUFFLED {
                return Some(self.shuffle_new_pool(pool));
            }
            Some(NonNull::new_unchecked(p.base()))
        }
    }

    /// Writes the free-list link of `block`: plain, or for a secure heap encoded with the key and
    /// the block's own address (so a link read from one block means nothing at another).
    ///
    /// # Safety
    /// `block` is a free block of this core, writable.
    #[inline(always)]
    unsafe fn link_store(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        let v = if self.key == 0 {
            next
        } else {
            (next as usize ^ self.key ^ block as usize) as *mut FreeBlock
        };
        // SAFETY: the caller's guarantee.
        instrument::with_link(block.cast(), || unsafe { (*block).next = v });
    }

    /// Reads the free-list link of `block` in pool `p`; for a secure heap, decodes it and checks
    /// that it is null or a block start of the same pool below its carved end, and reports heap
    /// corruption (then aborts) if not: a freed block's contents are not trusted.
    ///
    /// # Safety
    /// `block` is a free block of pool `p` of this core.
    #[inline(always)]
    unsafe fn link_load(&self, block: *mut FreeBlock, p: &PoolMeta) -> *mut FreeBlock {
        // SAFETY: the caller's guarantee.
        let raw = instrument::with_link(block.cast(), || unsafe { (*block).next });
        if self.key == 0 {
            return raw;
        }
        let next = raw as usize ^ self.key ^ block as usize;
        if next != 0 && !Self::starts_block(p, next) {
            crate::check::bad_free("malloc", block as usize, crate::check::BadFree::Corrupted);
        }
        next as *mut FreeBlock
    }

    /// Carves the next `n` blocks of `p` (which has a class and at least `n` blocks not carved):
    /// the offset, and the bound of the block-start test that admits them (`start_limit`, see
    /// `check::start_limit`), raised by `n` steps of the pool's `e` (a multiply, no division),
    /// so that it only grows while the pool is in use. The bound lies on the meta's first line,
    /// which other threads' frees read: a pool writes it at each carve, in batches (a bin's
    /// refill) or one block at a time, until it is carved whole.
    #[inline(always)]
    fn carve(p: &mut PoolMeta, n: usize) {
        p.next_offset += (n * p.block_size as usize) as u32;
        #[cfg(target_pointer_width = "64")]
        {
            let e = u64::from(p.block_size).wrapping_mul(p.start_magic);
            let limit = p.start_limit.load(crate::sync::Ordering::Relaxed);
            p.start_limit
                .store(limit + n as u64 * e, crate::sync::Ordering::Relaxed);
        }
    }

    /// Gives `p` (just given its class, magic and size) its first `n` blocks carved: the offset
    /// and the bound (`check::start_limit`).
    #[inline(always)]
    fn carved_first(p: &mut PoolMeta, n: usize) {
        p.next_offset = (n * p.block_size as usize) as u32;
        #[cfg(target_pointer_width = "64")]
        p.start_limit.store(
            check::start_limit(p.block_size as usize, n),
            crate::sync::Ordering::Relaxed,
        );
    }

    /// Whether `addr` is a block start of pool `p` below its carved end.
    fn starts_block(p: &PoolMeta, addr: usize) -> bool {
        let base = p.base() as usize;
        addr >= base
            && addr < base + p.next_offset as usize
            && (addr - base).is_multiple_of(p.block_size as usize)
    }

    /// For a secure heap: reports `block` (then aborts) if it is already on a free list of its
    /// pool. Its first word is looked at first: a free block's decodes to a link of the pool
    /// (null or a block start), a live block's almost never does, so the lists are walked only
    /// then.
    ///
    /// # Safety
    /// `block` is a block start of pool `p` of this core.
    #[cold]
    unsafe fn check_not_free(&self, block: *mut FreeBlock, p: &PoolMeta) {
        // SAFETY: the caller's guarantee: the block is readable.
        let word = instrument::with_link(block.cast(), || unsafe { (*block).next }) as usize
            ^ self.key
            ^ block as usize;
        if word != 0 && !Self::starts_block(p, word) {
            return;
        }
        for head in [p.free, p.local_free] {
            let mut b = head;
            let mut steps = 0;
            while !b.is_null() && steps <= p.capacity as usize {
                if b == block {
                    crate::check::bad_free(
                        "free",
                        block as usize,
                        crate::check::BadFree::DoubleFree,
                    );
                }
                // SAFETY: a free block of the pool (links checked as they are read).
                b = unsafe { self.link_load(b, p) };
                steps += 1;
            }
        }
    }

    /// Hands out the first block of a secure heap's new pool `pool` chosen at random, and threads
    /// the others onto its free list in random order (Fisher-Yates), so that the addresses a
    /// program gets in a row do not follow one another.
    ///
    /// # Safety
    /// `pool` was just given its class with one block used and nothing carved beyond the first.
    #[cold]
    unsafe fn shuffle_new_pool(&mut self, pool: *mut PoolMeta) -> NonNull<u8> {
        // SAFETY: the caller's guarantee: a live pool of this core, committed.
        let p = unsafe { &mut *pool };
        let n = p.capacity as usize;
        let mut order = [0u16; MAX_SHUFFLED];
        for (i, o) in order.iter_mut().enumerate().take(n) {
            *o = i as u16;
        }
        for i in (1..n).rev() {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            order.swap(i, (self.rng % (i as u64 + 1)) as usize);
        }
        Self::carved_first(p, n);
        let at = |i: u16| {
            (PoolMeta::load_base(p.base_stored) as usize + i as usize * p.block_size as usize)
                as *mut FreeBlock
        };
        let mut head: *mut FreeBlock = ptr::null_mut();
        for &i in order[1..n].iter().rev() {
            // SAFETY: a never-used block of the pool, now free.
            unsafe { self.link_store(at(i), head) };
            head = at(i);
        }
        p.free = head;
        // SAFETY: a block start of the pool.
        unsafe { NonNull::new_unchecked(at(order[0]).cast()) }
    }

    /// # Safety
    /// `pool` is a live pool with a class, on no list.
    #[inline]
    unsafe fn link_used_front(&mut self, pool: *mut PoolMeta) {
        // SAFETY: the caller's guarantee; the head is a live used pool or null.
        unsafe {
            let p = &mut *pool;
            let class = p.class as usize;
            p.prev = ptr::null_mut();
            p.next = self.used[class];
            if !p.next.is_null() {
                (*p.next).prev = pool;
            }
            self.used[class] = pool;
            p.in_list = true;
        }
    }

    /// Takes an empty pool from the head of the usable list (the fullest arena).
    fn take_pool(&mut self) -> Option<*mut PoolMeta> {
        let a = self.usable;
        debug_assert!(!a.is_null());
        // SAFETY: `a` is a live arena on the usable list, so it has a pool to give.
        unsafe {
            let arena = &mut *a;
            let pool = if !arena.free_pools.is_null() {
                let pool = arena.free_pools;
                if !(*pool).committed {
                    self.provider
                        .commit(NonNull::new_unchecked((*pool).base()), self.geo.pool_size)
                        .ok()?;
                    // No block until one is carved (a provider may map the pages anew).
                    instrument::region_noaccess((*pool).base(), self.geo.pool_size);
                    (*pool).committed = true;
                    self.committed_pools += 1;
                    self.regrew();
                } else {
                    arena.empty_committed -= 1;
                    self.empty_committed -= 1;
                }
                arena.free_pools = (*pool).next;
                pool
            } else {
                let index = arena.next_unused;
                debug_assert!(index < self.geo.pools_per_arena);
                arena.next_unused += 1;
                self.committed_pools += 1;
                self.regrew();
                let pool = ArenaHeader::meta(a, index);
                pool.write(PoolMeta {
                    free: ptr::null_mut(),
                    local_free: ptr::null_mut(),
                    next: ptr::null_mut(),
                    prev: ptr::null_mut(),
                    base_stored: PoolMeta::store_base(
                        a.cast::<u8>().add(index << self.geo.pool_shift),
                    ),
                    start_magic: 0,
                    #[cfg(target_pointer_width = "64")]
                    start_bias: 0,
                    next_offset: 0,
                    end_offset: 0,
                    used: 0,
                    capacity: 0,
                    emptied_at: 0,
                    block_size: 0,
                    class: NO_CLASS,
                    #[cfg(target_pointer_width = "64")]
                    bin_at: 0,
                    #[cfg(target_pointer_width = "64")]
                    _line: [0; 4],
                    #[cfg(target_pointer_width = "64")]
                    start_limit: crate::sync::AtomicU64::new(0),
                    in_list: false,
                    committed: true,
                    remote: RemoteList::new(),
                    notify_next: ptr::null_mut(),
                    remote_tail: ptr::null_mut(),
                });
                pool
            };
            let nf = arena.nfree;
            if nf == arena.ntotal {
                self.empty_arenas -= 1;
            }
            // The head has the smallest `nfree`, so it is the only arena with `nf` if it is the
            // last with `nf`, and no arena has `nf - 1`.
            if self.last_with[nf] == a {
                self.last_with[nf] = ptr::null_mut();
            }
            arena.nfree = nf - 1;
            if nf == 1 {
                self.usable = arena.next;
                if !arena.next.is_null() {
                    (*arena.next).prev = ptr::null_mut();
                }
                arena.next = ptr::null_mut();
                arena.usable = false;
            } else {
                self.last_with[nf - 1] = a;
            }
            Some(pool)
        }
    }

    /// Maps a new arena, registers it under `id`, and makes it the usable list.
    #[cold]
    fn new_arena(&mut self, id: &AtomicU32) -> Option<()> {
        if self.geo.secure && self.key == 0 {
            self.key = (crate::os::random_u64() as usize) | 1;
            self.rng = crate::os::random_u64() | 1;
        }
        let mut owner = id.load(Ordering::Relaxed);
        if owner == 0 {
            owner = registry::new_owner_id();
            // Relaxed: written under exclusive access to the core; readers only compare it with the
            // registry's answer for blocks this core handed out after this point.
            id.store(owner, Ordering::Relaxed);
        }
        let layout = self.arena_layout();
        let base = self.provider.alloc(layout).ok()?;
        if registry::register(base.as_ptr() as usize, self.geo.arena_size, owner).is_err() {
            // SAFETY: the arena was just made with this layout and never used.
            unsafe { self.provider.free(base, layout) };
            return None;
        }
        // SAFETY: a fresh arena aligned to its size, which holds the header (Geometry checked).
        let a = unsafe {
            ArenaHeader::init(
                base.as_ptr(),
                self.geo.pools_per_arena,
                self.geo.header_pools,
            )
        };
        // Everything past the header holds no block until blocks are carved.
        let header = crate::arena::header_bytes(self.geo.pools_per_arena);
        // SAFETY: the header lies inside the arena (Geometry checked).
        instrument::region_noaccess(
            unsafe { base.as_ptr().add(header) },
            self.geo.arena_size - header,
        );
        // SAFETY: `a` is the fresh header; `all` and `usable` hold live arenas or null.
        unsafe {
            (*a).slot = self.slot;
            (*a).all_next = self.all;
            if !self.all.is_null() {
                (*self.all).all_prev = a;
            }
            self.all = a;
            debug_assert!(self.usable.is_null());
            (*a).usable = true;
            self.usable = a;
            self.last_with[(*a).ntotal] = a;
        }
        self.empty_arenas += 1;
        self.arenas += 1;
        self.arenas_allocated += 1;
        self.sweep_due = true;
        self.arenas_highest = self.arenas_highest.max(self.arenas);
        self.check_transition(ptr::null_mut(), a);
        Some(())
    }

    fn arena_layout(&self) -> Layout {
        // Geometry guarantees a power-of-two size, valid as size and alignment.
        Layout::from_size_align(self.geo.arena_size, self.geo.arena_size)
            .unwrap_or_else(|_| unreachable!("arena size is a checked power of two"))
    }

    /// Frees a block of this core: onto its class's bin, or, when the bin is full, half the bin
    /// back to the pools first.
    ///
    /// # Safety
    /// `ptr` is a live block allocated by this core, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free(&mut self, ptr: NonNull<u8>) {
        let pool = self.meta_of(ptr.as_ptr() as usize);
        // SAFETY: the caller guarantees a live block, so its pool has a class.
        let class = unsafe { (*pool).class } as usize;
        // SAFETY: the class was just read from the block's pool.
        unsafe { self.free_in_class(ptr, class) }
    }

    /// Frees a block whose class the caller knows (from the size it requested): the sized free
    /// that reads no pool metadata, so a free touches neither the block nor its pool.
    ///
    /// A block of another heap of the same allocator (a per-thread heap's free takes those too)
    /// joins the bin all the same, and goes home when the bin is flushed (`send_home`); without
    /// bins (a secure heap) it goes home at once.
    ///
    /// # Safety
    /// `ptr` is a live block of size class `class`, allocated by this core or by another heap of
    /// the allocator this core's heap belongs to, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn free_in_class(&mut self, ptr: NonNull<u8>, class: usize) {
        debug_assert!(
            class < self.geo.nclasses,
            "free of a block in an empty pool"
        );
        debug_assert_eq!(
            // SAFETY: debug check of the caller's guarantee.
            unsafe { (*self.meta_of(ptr.as_ptr() as usize)).class } as usize,
            class,
            "sized free with a size of another class"
        );
        let block_size = self.geo.block_size(class);
        instrument::block_freed(ptr.as_ptr(), block_size);
        let stride = self.geo.bin_stride;
        // SAFETY: `class` is below the class count (the caller's guarantee) and `stride` is the
        // geometry's, so this is the head of the class's bin in the store, which `&mut self`
        // holds alone (derived again after the flush's call, which takes `self`).
        let mut head = unsafe { self.bins_base().add(class * stride) }.cast::<BinHead>();
        let (secure, capacity) = (self.geo.secure, self.geo.bin_capacity);
        // SAFETY: as above.
        let (mut len, limit) = unsafe { ((*head).len, armed(head, secure, block_size, capacity)) };
        if limit == 0 {
            // No bins (a secure heap): to the pool at once, or home if another heap's.
            let geo = self.geo;
            let home = self.home_of(&geo, ptr);
            if home == self.slot {
                // SAFETY: the caller's guarantee; a block of this core.
                return unsafe { self.pool_free_fast(ptr) };
            }
            let pool = crate::routing::pool_meta(&geo, ptr.as_ptr() as usize);
            // SAFETY: the caller's guarantee; a block of another heap of the same allocator.
            if unsafe { push_one_home(home, pool, ptr.as_ptr()) } {
                self.note_orphan(home);
            }
            return;
        }
        if len >= limit {
            // SAFETY: the bin holds live blocks of this core.
            unsafe { self.flush_bin(class, limit / 2) };
            // SAFETY: as above.
            head = unsafe { self.bins_base().add(class * stride) }.cast::<BinHead>();
            // A bin that overflows grows, up to its full limit (see `first_limit`).
            let full = limit_within(block_size, capacity);
            // SAFETY: as above.
            unsafe {
                if limit < full {
                    (*head).limit = (limit * 2).min(full);
                }
                len = (*head).len;
            }
        }
        // SAFETY: as above; `len < limit <= capacity` (half the bin went back if it was full),
        // so slot `len` lies in the bin.
        unsafe {
            head.add(1).cast::<*mut u8>().add(len).write(ptr.as_ptr());
            (*head).len = len + 1;
        }
    }

    /// Gives every bin's blocks back to their pools (an abandoned heap's, when it is collected).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn flush_bins(&mut self) {
        for class in 0..self.geo.nclasses {
            if self.bin_view(class).0.len > 0 {
                // SAFETY: bins hold blocks of this core.
                unsafe { self.flush_bin(class, BIN_CAPACITY) };
            }
        }
    }

    /// Whether the next pool [`take_pool`](Self::take_pool) hands out is memory the heap has
    /// not touched since it was committed last: a never-used pool, a decommitted one, or a new
    /// arena's.
    fn next_pool_grows(&self) -> bool {
        let a = self.usable;
        // SAFETY: arenas on the usable list are live, and so are the pools on their stacks.
        a.is_null()
            || unsafe {
                let top = (*a).free_pools;
                top.is_null() || !(*top).committed
            }
    }

    /// The heap is about to take a pool for `class`. If that pool would be memory the heap has
    /// not touched (see [`next_pool_grows`](Self::next_pool_grows)), what other classes hold
    /// without using it goes back to the arenas first, so that the heap reuses it instead of
    /// growing:
    ///
    /// * the bins of classes of blocks of `GROWTH_FLUSH_MIN_BLOCK` bytes or more, when together
    ///   they hold `GROWTH_FLUSH_BYTES` or more (a few dozen blocks at most: bins of smaller
    ///   blocks are left alone, where a flush would cost a link written per block for little
    ///   memory);
    /// * then the empty pools that classes keep (see [`pool_free_slow`](Self::pool_free_slow)),
    ///   when `GROWTH_RECLAIM_MIN` or more of them are empty, so that two classes taking turns
    ///   at the heap's high-water mark do not trade one pool back and forth.
    ///
    /// A program that frees a few blocks in each of many classes (CPython's start-up frees
    /// buffers of dozens of sizes between 8 and 64 KiB) then keeps its peak near what it uses
    /// instead of a touched pool per class. The cost, at growth only: a pass over the classes'
    /// bins and used lists.
    #[cold]
    fn reclaim_before_growth(&mut self, class: usize) {
        if !self.next_pool_grows() {
            return;
        }
        let geo = self.geo;
        // The classes of blocks of `GROWTH_FLUSH_MIN_BLOCK` bytes or more (none in pymalloc's
        // geometry, whose blocks stop at 512 bytes).
        let large = (GROWTH_FLUSH_MIN_BLOCK >> geo.class_shift).saturating_sub(1)..geo.nclasses;
        let cached: usize = large
            .clone()
            .filter(|&c| c != class)
            .map(|c| self.bin_view(c).0.len * geo.block_size(c))
            .sum();
        if cached >= GROWTH_FLUSH_BYTES {
            for c in large.filter(|&c| c != class) {
                // SAFETY: bins hold live blocks of this core's allocator.
                unsafe { self.flush_bin(c, BIN_CAPACITY) };
            }
        }
        // SAFETY: pools on the used lists are live pools of this core.
        let kept_empty = |core: &Self, c: usize| unsafe {
            let p = core.used[c];
            c != class && !p.is_null() && (*p).used == 0 && (*p).next.is_null()
        };
        if self.kept_empty_hint < GROWTH_RECLAIM_MIN {
            return;
        }
        let kept = (0..geo.nclasses).filter(|&c| kept_empty(self, c)).count();
        // Pools counted now that are reclaimed below, or that leave the state meanwhile, are not
        // counted again: from now on only new ones are.
        self.kept_empty_hint = kept;
        if kept < GROWTH_RECLAIM_MIN {
            return;
        }
        self.kept_empty_hint = 0;
        for c in 0..geo.nclasses {
            if kept_empty(self, c) {
                let p = self.used[c];
                // SAFETY: an empty pool of this core, the only one on its class's list: off the
                // list and back to its arena (which can release only that arena, then holding no
                // pool of any list).
                unsafe {
                    self.unlink_used(p);
                    self.return_pool(p);
                }
            }
        }
    }

    /// Gives the oldest `count` blocks of a bin back to their pools.
    ///
    /// # Safety
    /// The bin's blocks are blocks of this core, allocated as far as the pools know.
    #[cold]
    unsafe fn flush_bin(&mut self, class: usize, count: usize) {
        // The blocks leave the bin before any goes to its pool: a pool that empties may start a
        // purge, which flushes every bin, this one included, and must find it consistent.
        // Not initialised: only the `count` words copied in are read.
        let mut batch = [core::mem::MaybeUninit::<*mut u8>::uninit(); BIN_CAPACITY];
        let bin = self.bin(class);
        let len = bin.head.len;
        let count = count.min(len);
        // SAFETY: `count <= len <= capacity <= BIN_CAPACITY` words, from the bin to the batch
        // (apart).
        unsafe {
            ptr::copy_nonoverlapping(bin.slots.as_ptr(), batch.as_mut_ptr().cast(), count);
        }
        bin.slots.copy_within(count..len, 0);
        if instrument::CLEAR_STALE {
            bin.slots[len - count..len].fill(ptr::null_mut());
        }
        bin.head.len = len - count;
        // The geometry and the key in locals: the loop's stores into pools cannot change them,
        // but the compiler cannot tell, and would read them again for every block.
        let geo = self.geo;
        let secure = self.key != 0;
        let me = self.slot;
        // Blocks of another heap's pool that follow each other in the bin (a thread freeing what
        // another made, in the order it was made) go home as one chain: one compare-exchange.
        let mut chain = Chain::EMPTY;
        for b in &batch[..count] {
            // SAFETY: the caller's guarantee; each block left the bin once, above (a word copied
            // in, so initialised).
            let ptr = unsafe { NonNull::new_unchecked(b.assume_init()) };
            let home = self.home_of(&geo, ptr);
            if home == me {
                // SAFETY: a block of this core (the caller's guarantee).
                unsafe { self.pool_free_in(&geo, secure, ptr) };
                continue;
            }
            // SAFETY: a block of another heap of the same allocator (the caller's guarantee),
            // out of the bin, free from now on.
            unsafe { self.chain_home(&geo, &mut chain, home, ptr.as_ptr()) };
        }
        // SAFETY: the chain's blocks left the bin above; linked by `chain_home`.
        unsafe { self.send_home(chain) };
    }

    /// Sends home the blocks of other heaps that wait in this core's bins (see `send_home`),
    /// keeping its own blocks there in their order.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn send_parked_home(&mut self) {
        if self.slot.is_null() {
            return;
        }
        let geo = self.geo;
        for class in 0..geo.nclasses {
            let mut chain = Chain::EMPTY;
            let mut kept = 0;
            for i in 0..self.bin_view(class).0.len {
                let b = self.bin_view(class).1[i];
                // SAFETY: bins hold live blocks, never null.
                let ptr = unsafe { NonNull::new_unchecked(b) };
                let home = self.home_of(&geo, ptr);
                if home == self.slot {
                    self.bin(class).slots[kept] = b;
                    kept += 1;
                    continue;
                }
                // SAFETY: a block of another heap of the same allocator, out of the bin (only
                // `kept` slots are kept), held by this thread alone.
                unsafe { self.chain_home(&geo, &mut chain, home, b) };
            }
            let bin = self.bin(class);
            if instrument::CLEAR_STALE {
                bin.slots[kept..bin.head.len].fill(ptr::null_mut());
            }
            bin.head.len = kept;
            // SAFETY: the chain's blocks left the bin above; linked by `chain_home`.
            unsafe { self.send_home(chain) };
        }
    }

    /// The heap whose pools hold `ptr`, a live block of this core's allocator (null for a
    /// `Heap`'s block).
    #[inline(always)]
    fn home_of(&self, geo: &Geometry, ptr: NonNull<u8>) -> *const SlotHeader {
        let arena = (ptr.as_ptr() as usize & !(geo.arena_size - 1)) as *const ArenaHeader;
        // SAFETY: a live block's arena is live; its heap is written before any of its blocks is
        // handed out.
        unsafe { (*arena).slot }
    }

    /// Gives blocks of another heap's pool back to it, by that pool's remote list (`remote`),
    /// as a free from another thread would: a bin of a per-thread heap takes the blocks its
    /// thread frees whatever heap they come from, so that the thread reuses them while they are
    /// in its cache. A heap that nobody owns is noted for collection (`take_orphans`).
    ///
    /// # Safety
    /// The chain's blocks are blocks of its pool, of heap `chain.home` (not this core's), of the
    /// same allocator, allocated as far as the pool knows, linked from `first` to `last`, and not
    /// used afterwards.
    #[cold]
    unsafe fn send_home(&mut self, chain: Chain) {
        // SAFETY: the caller's guarantee.
        if chain.n > 0 && unsafe { push_home(chain) } {
            self.note_orphan(chain.home);
        }
    }

    /// Adds `block`, a free block of heap `home` (not this core's), to the chain being built by
    /// a walk over a bin: linked in front if it is of the chain's pool, else the chain is sent
    /// home (`send_home`) and a new one starts with it. The walk sends the last chain itself.
    ///
    /// # Safety
    /// `block` is a live block of heap `home` of the same allocator, out of the bin and free
    /// from now on; `chain` holds such blocks only, linked from `first` to `last`.
    #[inline]
    unsafe fn chain_home(
        &mut self,
        geo: &Geometry,
        chain: &mut Chain,
        home: *const SlotHeader,
        block: *mut u8,
    ) {
        let pool = crate::routing::pool_meta(geo, block as usize);
        if pool == chain.pool {
            // SAFETY: a free block of the chain's pool (the caller's guarantee), which only this
            // thread holds.
            unsafe { instrument::with_link(block, || block.cast::<*mut u8>().write(chain.first)) };
            chain.first = block;
            chain.n += 1;
        } else {
            // SAFETY: the caller's guarantee.
            unsafe { self.send_home(*chain) };
            *chain = Chain::one(home, pool, block);
        }
    }

    /// Notes that blocks went home to `home`, found unowned: the caller collects it
    /// (`take_orphans`).
    fn note_orphan(&mut self, home: *const SlotHeader) {
        if self.orphan.is_null() || self.orphan == home {
            self.orphan = home;
        } else {
            self.orphans_more = true;
        }
    }

    /// The heap that a flush found unowned when it sent blocks home, if any, and whether there
    /// were more than one; clears both. The caller (`PoolAllocator`) collects them: nobody else
    /// would, as a free into an unowned heap is collected by the thread that made it.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    #[inline]
    pub(crate) fn take_orphans(&mut self) -> (*const SlotHeader, bool) {
        let taken = (self.orphan, self.orphans_more);
        self.orphan = ptr::null();
        self.orphans_more = false;
        taken
    }

    /// Whether `take_orphans` or `take_sweep` has anything to give: the front's one test after
    /// each slow path (`orphans_more` is set only beside an orphan).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn needs_settling(&self) -> bool {
        !self.orphan.is_null() || self.sweep_due
    }

    /// Whether the heap mapped an arena or purged by time since the last call (see `sweep_due`).
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    #[inline]
    pub(crate) fn take_sweep(&mut self) -> bool {
        // Written only when set: this runs after every slow path.
        if !self.sweep_due {
            return false;
        }
        self.sweep_due = false;
        true
    }

    /// Sets `learned_pools`, and the heap's flag of it in its slot header (written only when it
    /// changes: the line is the one every free reads).
    fn set_learned(&mut self, pools: usize) {
        self.learned_pools = pools;
        if self.slot.is_null() {
            return;
        }
        let v = usize::from(pools > 0);
        // SAFETY: a core with a slot lives in it, and slot headers are never unmapped.
        let hdr = unsafe { &*self.slot };
        if hdr.learned.load(Ordering::Relaxed) != v {
            hdr.learned.store(v, Ordering::Relaxed);
        }
    }

    /// Frees a block of this core back to its pool.
    ///
    /// # Safety
    /// `ptr` is a block allocated by this core (as far as its pool knows), not used afterwards.
    #[inline]
    unsafe fn pool_free_fast(&mut self, ptr: NonNull<u8>) {
        let geo = self.geo;
        let secure = self.key != 0;
        // SAFETY: the caller's guarantee; the core's own geometry and key.
        unsafe { self.pool_free_in(&geo, secure, ptr) }
    }

    /// [`pool_free_fast`](Self::pool_free_fast) with the geometry and whether the heap is secure
    /// (its key not 0) passed in, so that a loop of frees (`flush_bin`) keeps them in registers:
    /// the compiler cannot tell that the stores into pools leave them unchanged.
    ///
    /// # Safety
    /// As for `pool_free_fast`; `geo` is the core's geometry and `secure` is `self.key != 0`.
    #[inline(always)]
    unsafe fn pool_free_in(&mut self, geo: &Geometry, secure: bool, ptr: NonNull<u8>) {
        debug_assert_eq!(secure, self.key != 0);
        let pool = crate::routing::pool_meta(geo, ptr.as_ptr() as usize);
        // SAFETY: the caller guarantees a live block, so its pool is used or full and `ptr` is a
        // block boundary inside it.
        unsafe {
            let p = &mut *pool;
            debug_assert!(p.class != NO_CLASS, "free of a block in an empty pool");
            debug_assert!(
                (ptr.as_ptr() as usize - p.base() as usize).is_multiple_of(p.block_size as usize),
                "free of a pointer that is not a block start"
            );
            let block = ptr.as_ptr().cast::<FreeBlock>();
            if secure {
                self.check_not_free(block, p);
                self.link_store(block, p.local_free);
            } else {
                let next = p.local_free;
                instrument::with_link(block.cast(), || (*block).next = next);
            }
            p.local_free = block;
            p.used -= 1;
            if p.used == 0 || !p.in_list {
                self.pool_free_slow(pool);
            }
        }
    }

    /// A free left its pool empty, or the pool was full: move it between states.
    ///
    /// # Safety
    /// `pool` is a live pool of this core with a class.
    #[cold]
    #[inline(never)]
    unsafe fn pool_free_slow(&mut self, pool: *mut PoolMeta) {
        // SAFETY: the caller's guarantee.
        unsafe {
            let p = &mut *pool;
            if p.used == 0 {
                if p.in_list && p.prev.is_null() && p.next.is_null() {
                    // The only pool of its class stays with the class, empty (hysteresis, like
                    // mimalloc's page retire): a class that swings between zero and a few blocks
                    // must not take a pool from its arena and give it back every time.
                    // `trim` returns such pools, and so does growth when several classes keep
                    // one (`reclaim_before_growth`).
                    self.kept_empty_hint += 1;
                    self.check_transition(pool, ptr::null_mut());
                    return;
                }
                if p.in_list {
                    self.unlink_used(pool);
                }
                self.return_pool(pool);
            } else if !p.in_list {
                // It was full; back to the front of its class: the next allocation uses it.
                self.link_used_front(pool);
                self.check_transition(pool, ptr::null_mut());
            }
        }
    }

    /// # Safety
    /// `pool` is on its class's used list.
    unsafe fn unlink_used(&mut self, pool: *mut PoolMeta) {
        // SAFETY: the caller guarantees `pool` and its neighbours are live used pools.
        unsafe {
            let p = &mut *pool;
            if p.prev.is_null() {
                self.used[p.class as usize] = p.next;
            } else {
                (*p.prev).next = p.next;
            }
            if !p.next.is_null() {
                (*p.next).prev = p.prev;
            }
            p.in_list = false;
        }
    }

    /// A pool became empty: back to its arena, maybe decommitted, and the arena moved along the
    /// usable list (or returned to the OS).
    ///
    /// # Safety
    /// `pool` is a pool of this core with no allocated block, on no list.
    unsafe fn return_pool(&mut self, pool: *mut PoolMeta) {
        // SAFETY: `pool` is live (the caller); its arena is live; list neighbours are live arenas.
        unsafe {
            let a = self.arena_of(pool as usize);
            let arena = &mut *a;
            let p = &mut *pool;
            instrument::region_noaccess(p.base(), self.geo.pool_size);
            p.class = NO_CLASS;
            p.start_magic = 0;
            #[cfg(target_pointer_width = "64")]
            p.start_limit.store(0, crate::sync::Ordering::Relaxed);
            p.next = arena.free_pools;
            arena.free_pools = pool;
            let now = crate::os::now_ms();
            if p.committed {
                p.emptied_at = now as u32;
                arena.empty_committed += 1;
                self.empty_committed += 1;
            }

            let nf = arena.nfree;
            arena.nfree = nf + 1;
            if nf == 0 {
                // It was full, so not on the list; with one free pool it is the fullest: the head.
                arena.prev = ptr::null_mut();
                arena.next = self.usable;
                if !self.usable.is_null() {
                    (*self.usable).prev = a;
                }
                self.usable = a;
                arena.usable = true;
            } else {
                let last = self.last_with[nf];
                if last == a {
                    let prev = arena.prev;
                    self.last_with[nf] = if !prev.is_null() && (*prev).nfree == nf {
                        prev
                    } else {
                        ptr::null_mut()
                    };
                } else {
                    // Move `a` after the last arena with its old count: it is then the first with
                    // the new count, and the list stays sorted.
                    self.unlink_usable(a);
                    arena.prev = last;
                    arena.next = (*last).next;
                    if !arena.next.is_null() {
                        (*arena.next).prev = a;
                    }
                    (*last).next = a;
                }
            }
            if self.last_with[nf + 1].is_null() {
                self.last_with[nf + 1] = a;
            }
            // The pool is empty on its arena's stack, the arena in its place on the usable list
            // (whether an arena that emptied is kept is decided next, and counted then).
            self.check_pool(pool);
            self.check_arena(a);
            if nf + 1 == arena.ntotal {
                // Kept while the heap's empty memory is within what it retains (see
                // `PoolConfig::retain_bytes`), or among the `keep_empty_arenas`.
                if self.empty_arenas < self.geo.keep_empty_arenas
                    || self.empty_committed <= self.retained_pools()
                {
                    self.empty_arenas += 1;
                } else {
                    self.giving_back(arena.empty_committed, self.committed_pools, now);
                    self.release_arena(a);
                }
            }
            self.check_transition(ptr::null_mut(), ptr::null_mut());
            // At most one purge per half delay (the arena, and `pool`, may be gone by now); when
            // empty committed pools pass four times the budget and what the heap retains, at once
            // and regardless of age, down to half of what it retains (and all it learned).
            let budget = self.empty_pool_budget();
            if let Some(given) = self.purge_if_mostly_empty(now) {
                self.giving_back(given, self.committed_pools + given, now);
            } else if self.empty_committed > budget
                && now.wrapping_sub(self.last_purge_ms) >= self.geo.purge_delay_ms / 2
            {
                let before = self.pools_decommitted;
                self.purge(false, now);
                // Pools that stayed empty for the whole delay are no working set: unlearned.
                let idle = self.pools_decommitted - before;
                self.set_learned(self.learned_pools.saturating_sub(idle));
                self.sweep_due = true;
            }
        }
    }

    /// Empty pools the heap keeps committed when a pool empties: `retain_pools`, and the
    /// working set it learned (`learned_pools`).
    #[inline]
    fn retained_pools(&self) -> usize {
        self.geo.retain_pools + self.learned_pools
    }

    /// Notes that `pools` committed pools were (or are about to be) given back at once (an
    /// arena released, or a purge of a mostly empty heap) by a heap that had `committed`
    /// committed pools before, `now`: a give-back within the purge delay of the last one adds to
    /// the same burst; a new burst notes the working set it starts from. A heap that retains
    /// nothing (`retain_bytes` 0) learns nothing, and neither does `trim` (which purges).
    fn giving_back(&mut self, pools: usize, committed: usize, now: u64) {
        if pools == 0
            || !LEARNS
            || self.purging
            || self.geo.retain_pools == 0
            || self.geo.learn_pools == 0
        {
            return;
        }
        if self.given_back_pools == 0
            || now.wrapping_sub(self.given_back_ms) > self.geo.purge_delay_ms
        {
            self.given_back_pools = 0;
            self.regrown_pools = 0;
            self.burst_committed = committed;
        }
        self.given_back_pools += pools;
        self.given_back_ms = now;
    }

    /// A pool was committed again or carved fresh: after a give-back, counted; once half of what
    /// was given back has come back, learn from it (one clock read).
    #[inline]
    fn regrew(&mut self) {
        if self.given_back_pools == 0 {
            return;
        }
        self.regrown_pools += 1;
        if 2 * self.regrown_pools >= self.given_back_pools {
            self.learn_regrowth();
        }
    }

    /// Half of a burst of give-backs came back within the purge delay: what was given back was
    /// part of the working set after all (a program that frees a large structure and builds
    /// another), so from now on the heap keeps the working set it had before the burst committed
    /// when it empties, with a quarter more for rounds that differ, up to `learn_bytes` past
    /// `retain_bytes`: the next such free keeps its memory for the next round instead of
    /// returning it and faulting it in again. A few allocations made during a large free do not
    /// come to half of it, so that free still gives back at once. Memory learned this way still
    /// goes back once it stays empty for the purge delay (see `return_pool`), and on `trim`.
    /// jemalloc's decay and mimalloc's purge delay keep such memory too, after every free.
    #[cold]
    fn learn_regrowth(&mut self) {
        let now = crate::os::now_ms();
        if now.wrapping_sub(self.given_back_ms) <= self.geo.purge_delay_ms {
            let wanted = self.burst_committed + self.burst_committed / 4;
            let learned = wanted
                .saturating_sub(self.geo.retain_pools)
                .min(self.geo.learn_pools);
            self.set_learned(self.learned_pools.max(learned));
        }
        self.forget_burst();
    }

    /// Drops the current burst of give-backs (learned from, too old, or forgotten).
    fn forget_burst(&mut self) {
        self.given_back_pools = 0;
        self.regrown_pools = 0;
    }

    /// Forgets the working set learned by the heap's last owner (a heap collected while nobody
    /// owns it, or adopted by another thread): from now on the heap keeps what any heap keeps,
    /// and what it held committed for the old owner past that goes back at once, as after a
    /// large free.
    // Used by `PoolAllocator` (an OS is needed) alone.
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))]
    pub(crate) fn unlearn(&mut self) {
        if self.learned_pools == 0 && self.given_back_pools == 0 {
            return;
        }
        self.set_learned(0);
        self.forget_burst();
        self.purge_if_mostly_empty(crate::os::now_ms());
    }

    /// The at-once rule: when the heap's committed empty pools pass both four times the budget
    /// and what it retains (`retained_pools`), decommits them, whatever their age, down to half
    /// of `retain_bytes` and all it learned, and returns how many it decommitted; `None` when
    /// the heap is not that empty.
    fn purge_if_mostly_empty(&mut self, now: u64) -> Option<usize> {
        let budget = self.empty_pool_budget();
        if self.empty_committed <= (4 * budget).max(self.retained_pools()) {
            return None;
        }
        let before = self.pools_decommitted;
        self.purge_down_to(self.geo.retain_pools / 2 + self.learned_pools, now);
        Some(self.pools_decommitted - before)
    }

    /// Empty pools kept committed before purges start: `keep_empty_pools`, or an eighth of the
    /// pools mapped when that is more, so that a large heap whose live set fluctuates keeps a
    /// proportional slack instead of decommitting and refaulting pools (each a system call and
    /// page faults) at every swing.
    #[inline]
    fn empty_pool_budget(&self) -> usize {
        let mapped = self.arenas * (self.geo.pools_per_arena - self.geo.header_pools);
        self.geo.keep_empty_pools.max(mapped / 8)
    }

    /// Decommits empty pools, merging neighbours into one call per run. With `all`, first gives
    /// back what the heap retains (bins, the empty pool of each class) and then decommits every
    /// committed empty pool; otherwise it decommits those empty for at least `purge_delay_ms`.
    ///
    /// Purges run only while more than the budget of empty pools are committed (see
    /// `empty_pool_budget`), at most once per half delay, from the rare path where a pool empties;
    /// at four times the budget (a heap that is mostly free, as after freeing a large structure) a
    /// full purge runs at once.
    /// A pool that empties and is taken again soon (a churning program, or one that frees a large
    /// structure and builds another) is never decommitted, so it costs no system call and no page
    /// faults; memory that stays unused is given back on the allocator's next activity after the
    /// delay (mimalloc's purge delay and jemalloc's decay work the same way), and `trim` gives it
    /// back at once.
    fn purge(&mut self, all: bool, now: u64) {
        if all {
            self.release_retained_and_purge(now);
        } else {
            self.purge_pools(false, 0, now);
        }
    }

    /// The full purge of `trim`: what the heap holds back, then every committed empty pool.
    fn release_retained_and_purge(&mut self, now: u64) {
        if self.purging {
            return;
        }
        self.purging = true;
        self.release_retained();
        self.purging = false;
        self.purge_pools(true, 0, now);
    }

    /// Decommits committed empty pools, whatever their age, until at most `keep` are left (the
    /// bins and the pools kept by their classes stay): a large free gives its memory back at once
    /// past what the heap retains.
    fn purge_down_to(&mut self, keep: usize, now: u64) {
        self.purge_pools(true, keep, now);
    }

    /// Decommits empty pools: with `all`, any committed empty pool while more than `keep` are
    /// committed; otherwise those empty for at least `purge_delay_ms`.
    fn purge_pools(&mut self, all: bool, keep: usize, now: u64) {
        if self.purging {
            return;
        }
        self.purging = true;
        self.last_purge_ms = now;
        let delay = self.geo.purge_delay_ms as u32;
        let pool_size = self.geo.pool_size;
        // Only arenas on the usable list have empty pools, and only those with committed empty
        // pools need a visit; within one, only the empty-pool stack is walked (never every pool:
        // a purge must not sweep the metadata of the whole heap through the cache).
        let mut a = self.usable;
        while !a.is_null() {
            // SAFETY: arenas on the usable list are live; pools on an arena's free stack are its
            // empty pools with initialised metas; the ranges decommitted are whole empty pools.
            unsafe {
                let arena = &mut *a;
                let next_arena = arena.next;
                if arena.empty_committed == 0 {
                    a = next_arena;
                    continue;
                }
                // Which pools to decommit, as a bitmap by index, so neighbours merge into runs.
                let mut chosen = [0u64; MAX_POOLS_PER_ARENA / 64];
                let mut over = self.empty_committed.saturating_sub(keep);
                let mut p = arena.free_pools;
                while !p.is_null() && (!all || over > 0) {
                    let pool = &mut *p;
                    if pool.committed
                        && (all || (now as u32).wrapping_sub(pool.emptied_at) >= delay)
                    {
                        over = over.saturating_sub(1);
                        let i = (pool.base() as usize - a as usize) / pool_size;
                        chosen[i / 64] |= 1 << (i % 64);
                    }
                    p = pool.next;
                }
                let mut i = 0;
                while i < arena.next_unused {
                    if chosen[i / 64] == 0 {
                        i = (i / 64 + 1) * 64;
                        continue;
                    }
                    if chosen[i / 64] & (1 << (i % 64)) == 0 {
                        i += 1;
                        continue;
                    }
                    let first = i;
                    while i < arena.next_unused && chosen[i / 64] & (1 << (i % 64)) != 0 {
                        i += 1;
                    }
                    let n = i - first;
                    let start = a.cast::<u8>().add(first * pool_size);
                    if self
                        .provider
                        .decommit(NonNull::new_unchecked(start), n * pool_size)
                    {
                        for j in first..i {
                            (*ArenaHeader::meta(a, j)).committed = false;
                        }
                        self.committed_pools -= n;
                        instrument::region_noaccess(start, n * pool_size);
                        arena.empty_committed -= n;
                        self.empty_committed -= n;
                        self.pools_decommitted += n;
                    }
                }
                self.check_arena(a);
                a = next_arena;
                if all && self.empty_committed <= keep {
                    break;
                }
            }
        }
        self.purging = false;
    }

    /// # Safety
    /// `a` is on the usable list.
    unsafe fn unlink_usable(&mut self, a: *mut ArenaHeader) {
        // SAFETY: the caller guarantees `a` and its neighbours are live arenas on the list.
        unsafe {
            let arena = &mut *a;
            if arena.prev.is_null() {
                self.usable = arena.next;
            } else {
                (*arena.prev).next = arena.next;
            }
            if !arena.next.is_null() {
                (*arena.next).prev = arena.prev;
            }
        }
    }

    /// Returns a completely empty arena to the provider.
    ///
    /// # Safety
    /// `a` is a live, completely empty arena of this core on the usable list.
    unsafe fn release_arena(&mut self, a: *mut ArenaHeader) {
        // SAFETY: the caller's guarantee; after unlinking, nothing refers to the arena.
        unsafe {
            let arena = &mut *a;
            let n = arena.ntotal;
            if self.last_with[n] == a {
                let prev = arena.prev;
                self.last_with[n] = if !prev.is_null() && (*prev).nfree == n {
                    prev
                } else {
                    ptr::null_mut()
                };
            }
            let (prev, next) = (arena.prev, arena.next);
            self.unlink_usable(a);
            self.unlink_all(a);
            self.check_arena(prev);
            self.check_arena(next);
            self.empty_committed -= arena.empty_committed;
            self.committed_pools -= arena.empty_committed;
            self.arenas -= 1;
            self.arenas_released += 1;
            let layout = self.arena_layout();
            registry::unregister(a as usize, layout.size());
            instrument::region_accessible(a.cast(), layout.size());
            self.provider.free(NonNull::new_unchecked(a.cast()), layout);
        }
    }

    /// # Safety
    /// `a` is on the list of all arenas.
    unsafe fn unlink_all(&mut self, a: *mut ArenaHeader) {
        // SAFETY: the caller guarantees `a` and its neighbours are live arenas on the list.
        unsafe {
            let arena = &mut *a;
            if arena.all_prev.is_null() {
                self.all = arena.all_next;
            } else {
                (*arena.all_prev).all_next = arena.all_next;
            }
            if !arena.all_next.is_null() {
                (*arena.all_next).all_prev = arena.all_prev;
            }
        }
    }

    /// Gives back everything kept for reuse, like `malloc_trim(0)`: the empty pools kept by their
    /// class, the empty arenas kept mapped, and the pages of every empty pool.
    pub(crate) fn trim(&mut self) {
        while self.drain_remote() {}
        self.set_learned(0);
        let (keep_arenas, keep_pools) = (self.geo.keep_empty_arenas, self.geo.keep_empty_pools);
        self.geo.keep_empty_arenas = 0;
        self.geo.keep_empty_pools = 0;
        self.purge(true, crate::os::now_ms());
        // SAFETY: the usable list holds live arenas; the link is read before an arena leaves.
        unsafe {
            let mut a = self.usable;
            while !a.is_null() {
                let next = (*a).next;
                if (*a).nfree == (*a).ntotal {
                    self.empty_arenas -= 1;
                    self.release_arena(a);
                }
                a = next;
            }
        }
        self.geo.keep_empty_arenas = keep_arenas;
        self.geo.keep_empty_pools = keep_pools;
        // What the trim gave back is no burst to learn from.
        self.forget_burst();
    }

    /// Gives the pools what the heap holds back for speed: every bin's blocks, and the empty pool
    /// each class keeps. Pools that empty go to their arenas, arenas that empty are released (past
    /// `keep_empty_arenas`).
    fn release_retained(&mut self) {
        for class in 0..self.geo.nclasses {
            // SAFETY: bins hold blocks of this core.
            unsafe { self.flush_bin(class, BIN_CAPACITY) };
        }
        // SAFETY: every list holds live pools of this core. The next link is read before a pool
        // leaves its list; returning a pool can release only its own arena, which then held no
        // other pool of any list (all its pools were empty), and purges are off meanwhile.
        unsafe {
            for class in 0..self.geo.nclasses {
                let mut p = self.used[class];
                while !p.is_null() {
                    let next = (*p).next;
                    if (*p).used == 0 {
                        self.unlink_used(p);
                        self.return_pool(p);
                    }
                    p = next;
                }
            }
        }
    }

    /// Statistics, by walking every arena's pool metas (nothing is counted on the fast paths).
    pub(crate) fn stats(&self) -> PoolStats {
        let g = &self.geo;
        let mut s = PoolStats {
            classes: [ClassStats::default(); MAX_CLASSES],
            nclasses: g.nclasses,
            pool_size: g.pool_size,
            arena_size: g.arena_size,
            arenas: self.arenas,
            arenas_highest: self.arenas_highest,
            arenas_allocated: self.arenas_allocated,
            arenas_released: self.arenas_released,
            pools_decommitted_total: self.pools_decommitted,
            pools_learned: self.learned_pools,
            ..PoolStats::default()
        };
        for (c, cs) in s.classes.iter_mut().enumerate().take(g.nclasses) {
            cs.block_size = g.block_size(c);
        }
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: every arena on the `all` list is live; metas below `next_unused` are
            // initialised.
            unsafe {
                let arena = &*a;
                s.pools_unused += self.geo.pools_per_arena - arena.next_unused;
                for i in g.header_pools..arena.next_unused {
                    let p = &*ArenaHeader::meta(a, i);
                    if p.class == NO_CLASS {
                        s.pools_empty += 1;
                        if !p.committed {
                            s.pools_decommitted += 1;
                        }
                        continue;
                    }
                    let cs = &mut s.classes[p.class as usize];
                    cs.pools += 1;
                    cs.blocks_in_use += p.used as usize;
                    cs.blocks_free += (p.capacity - p.used) as usize;
                }
                a = arena.all_next;
            }
        }
        for (class, cs) in s.classes.iter_mut().enumerate().take(g.nclasses) {
            let (head, slots) = self.bin_view(class);
            // Blocks waiting in a bin are free to the program, allocated to their pool. Those of
            // other heaps' pools (see `send_home`) are counted by their own heap, as in use.
            let own = slots[..head.len]
                .iter()
                .filter(|&&b| {
                    let arena = (b as usize & !(g.arena_size - 1)) as *const ArenaHeader;
                    // SAFETY: a block in a bin is live to its pool, so its arena is live.
                    ptr::eq(unsafe { (*arena).slot }, self.slot)
                })
                .count();
            cs.blocks_in_use -= own;
            cs.blocks_free += own;
        }
        for cs in &s.classes[..g.nclasses] {
            s.bytes_in_use += cs.blocks_in_use * cs.block_size;
            s.bytes_free_in_pools += cs.blocks_free * cs.block_size;
        }
        s.bytes_mapped = s.arenas * g.arena_size;
        s
    }

    /// Checks what a state transition must leave true of `pool` and of arena `a` (either may be
    /// null), then counts the transition; every [`HEAP_CHECK_EVERY`]th one also checks the whole
    /// heap ([`check_invariants`](Self::check_invariants)). Compiled out without
    /// `debug_assertions`.
    #[inline(always)]
    fn check_transition(&mut self, pool: *mut PoolMeta, a: *mut ArenaHeader) {
        self.check_pool(pool);
        self.check_arena(a);
        #[cfg(debug_assertions)]
        {
            self.transitions = self.transitions.wrapping_add(1);
            if self.transitions.is_multiple_of(HEAP_CHECK_EVERY) {
                self.check_invariants();
            }
        }
    }

    /// How many transitions `check_transition` has checked.
    #[cfg(all(test, debug_assertions))]
    pub(crate) fn transitions_checked(&self) -> u32 {
        self.transitions
    }

    /// The invariants of one pool, in O(pool) (pymalloc's states: a pool is used, full or
    /// empty), as `debug_assert`s; `pool` is null or a pool of this core below its arena's
    /// `next_unused`, between transitions:
    ///
    /// * its free blocks (`free`, `local_free`, and those not carved yet) are `capacity - used`;
    /// * a pool with a class is on its class's `used` list, linked both ways, or full and on none;
    /// * an empty pool (`NO_CLASS`) is on no used list (its arena's stack: `check_arena`).
    #[inline(always)]
    fn check_pool(&self, pool: *mut PoolMeta) {
        #[cfg(debug_assertions)]
        if !pool.is_null() {
            // SAFETY: the caller's guarantee: a live, initialised pool meta of this core, whose
            // list neighbours are live pools of its class.
            unsafe { self.check_pool_now(pool) };
        }
        #[cfg(not(debug_assertions))]
        let _ = pool;
    }

    /// # Safety
    /// `pool` is a live, initialised pool meta of this core.
    #[cfg(debug_assertions)]
    unsafe fn check_pool_now(&self, pool: *mut PoolMeta) {
        // SAFETY: the caller's guarantee; list neighbours and free-list blocks are checked to be
        // of the pool's class and pool before they are followed further.
        unsafe {
            let p = &*pool;
            if p.class == NO_CLASS {
                debug_assert!(!p.in_list, "an empty pool on a used list");
                debug_assert_eq!(
                    p.start_magic, 0,
                    "an empty pool passes the block-start test"
                );
                #[cfg(target_pointer_width = "64")]
                debug_assert_eq!(
                    p.start_limit.load(crate::sync::Ordering::Relaxed),
                    0,
                    "an empty pool has a block-start bound"
                );
                return;
            }
            let class = usize::from(p.class);
            debug_assert!(class < self.geo.nclasses, "a pool of no class of the heap");
            debug_assert_eq!(p.block_size as usize, self.geo.block_size(class));
            debug_assert_eq!(p.start_magic, check::start_magic(p.block_size as usize));
            #[cfg(target_pointer_width = "64")]
            debug_assert_eq!(
                p.start_bias,
                check::start_bias(p.base() as usize, p.start_magic)
            );
            #[cfg(target_pointer_width = "64")]
            debug_assert_eq!(
                p.start_limit.load(crate::sync::Ordering::Relaxed),
                check::start_limit(
                    p.block_size as usize,
                    (p.next_offset / p.block_size) as usize
                ),
                "the block-start bound is not the carved blocks'"
            );
            #[cfg(target_pointer_width = "64")]
            debug_assert_eq!(p.bin_at, self.bin_at(class), "the pool's bin is elsewhere");
            debug_assert!(p.used <= p.capacity, "more blocks used than the pool has");
            debug_assert!(p.next_offset <= p.end_offset);
            let uncarved = ((p.end_offset - p.next_offset) / p.block_size) as usize;
            let listed = self.free_list_len(p, p.free) + self.free_list_len(p, p.local_free);
            debug_assert_eq!(
                listed + uncarved,
                usize::from(p.capacity - p.used),
                "free blocks of a pool (lists and uncarved) differ from capacity - used"
            );
            if p.in_list {
                if p.prev.is_null() {
                    debug_assert!(self.used[class] == pool, "a list head that is not the head");
                } else {
                    debug_assert!((*p.prev).next == pool, "used list forward link broken");
                    debug_assert_eq!((*p.prev).class, p.class, "used list mixes classes");
                }
                if !p.next.is_null() {
                    debug_assert!((*p.next).prev == pool, "used list back link broken");
                    debug_assert_eq!((*p.next).class, p.class, "used list mixes classes");
                }
            } else {
                debug_assert_eq!(
                    p.used, p.capacity,
                    "a pool off its class's list that is not full"
                );
                debug_assert!(
                    self.used[class] != pool,
                    "the list head not marked on the list"
                );
            }
        }
    }

    /// The length of the free list from `head` in pool `p`, checking that every link is a block
    /// start of the pool (decoded for a secure heap) and that the list ends.
    ///
    /// # Safety
    /// `head` is null or a free block of pool `p` of this core.
    #[cfg(debug_assertions)]
    unsafe fn free_list_len(&self, p: &PoolMeta, head: *mut FreeBlock) -> usize {
        let mut n = 0;
        let mut b = head;
        while !b.is_null() {
            debug_assert!(
                Self::starts_block(p, b as usize),
                "a free-list link outside its pool's carved blocks"
            );
            n += 1;
            debug_assert!(
                n <= usize::from(p.capacity),
                "a free list longer than its pool"
            );
            // SAFETY: a block start of the pool (checked above): readable.
            let raw = instrument::with_link(b.cast(), || unsafe { (*b).next }) as usize;
            b = if self.key == 0 {
                raw
            } else {
                raw ^ self.key ^ b as usize
            } as *mut FreeBlock;
        }
        n
    }

    /// The invariants of one arena, in O(arena) (pymalloc's states: an arena is usable, full or
    /// free), as `debug_assert`s; `a` is null or a live arena of this core, between transitions:
    ///
    /// * `nfree` is its empty pools (its `free_pools` stack, each with no class and on no list)
    ///   plus its never-used ones, and `empty_committed` the committed ones among the first;
    /// * it is on the usable list exactly when `nfree > 0`, linked both ways, in order of `nfree`
    ///   with its neighbours, and `last_with[nfree]` is it exactly when it is the last with its
    ///   count; a full arena is on no list.
    #[inline(always)]
    fn check_arena(&self, a: *mut ArenaHeader) {
        #[cfg(debug_assertions)]
        if !a.is_null() {
            // SAFETY: the caller's guarantee: a live arena of this core.
            unsafe { self.check_arena_now(a) };
        }
        #[cfg(not(debug_assertions))]
        let _ = a;
    }

    /// # Safety
    /// `a` is a live arena of this core.
    #[cfg(debug_assertions)]
    unsafe fn check_arena_now(&self, a: *mut ArenaHeader) {
        // SAFETY: the caller's guarantee; pools on the stack are initialised metas of the arena
        // (checked to lie in it before they are read), and list neighbours are live arenas.
        unsafe {
            let arena = &*a;
            let g = &self.geo;
            debug_assert_eq!(arena.ntotal, g.pools_per_arena - g.header_pools);
            debug_assert!(arena.next_unused <= g.pools_per_arena);
            let (mut stacked, mut committed) = (0, 0);
            let mut p = arena.free_pools;
            while !p.is_null() {
                debug_assert!(
                    self.arena_of(p as usize) == a,
                    "a pool on another arena's stack"
                );
                let pool = &*p;
                debug_assert_eq!(
                    pool.class, NO_CLASS,
                    "a pool with a class on the empty stack"
                );
                debug_assert!(
                    !pool.in_list,
                    "a pool on the empty stack and on a used list"
                );
                stacked += 1;
                committed += usize::from(pool.committed);
                debug_assert!(
                    stacked <= arena.ntotal,
                    "an empty stack longer than the arena"
                );
                p = pool.next;
            }
            debug_assert_eq!(
                arena.nfree,
                stacked + (g.pools_per_arena - arena.next_unused),
                "an arena's nfree differs from its empty and never-used pools"
            );
            debug_assert_eq!(arena.empty_committed, committed);
            debug_assert_eq!(arena.usable, arena.nfree > 0, "usable list membership");
            if !arena.usable {
                debug_assert!(arena.prev.is_null() && arena.next.is_null() && self.usable != a);
                return;
            }
            if arena.prev.is_null() {
                debug_assert!(
                    self.usable == a,
                    "a usable arena with no predecessor not the head"
                );
            } else {
                debug_assert!((*arena.prev).next == a, "usable list forward link broken");
                debug_assert!((*arena.prev).nfree <= arena.nfree, "usable list not sorted");
            }
            let next = arena.next;
            if !next.is_null() {
                debug_assert!((*next).prev == a, "usable list back link broken");
                debug_assert!(arena.nfree <= (*next).nfree, "usable list not sorted");
            }
            let is_last = next.is_null() || (*next).nfree != arena.nfree;
            debug_assert_eq!(
                self.last_with[arena.nfree] == a,
                is_last,
                "last_with[{}] is wrong",
                arena.nfree
            );
        }
    }

    /// Checks every structural invariant of the heap, in O(heap): every arena and every pool as
    /// at a transition (`check_arena`, `check_pool`), the usable list sorted with `last_with`
    /// naming exactly the last arena of each count, the used lists, and the heap's counters
    /// against the arenas. Panics naming the first broken one. Run by tests, and under
    /// `debug_assertions` at every [`HEAP_CHECK_EVERY`]th transition.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn check_invariants(&self) {
        // SAFETY: all lists hold live arenas and pools of this core; metas below an arena's
        // `next_unused` are initialised.
        unsafe {
            let mut a = self.usable;
            let mut prev: *mut ArenaHeader = ptr::null_mut();
            let mut lasts = 0;
            while !a.is_null() {
                let arena = &*a;
                assert!(arena.usable, "arena on the usable list not marked usable");
                assert!(
                    arena.nfree > 0,
                    "arena with no free pool on the usable list"
                );
                assert_eq!(arena.prev, prev, "usable list back link broken");
                if !prev.is_null() {
                    assert!((*prev).nfree <= arena.nfree, "usable list not sorted");
                }
                let last = self.last_with[arena.nfree];
                let is_last = arena.next.is_null() || (*arena.next).nfree != arena.nfree;
                assert_eq!(is_last, last == a, "last_with[{}] is wrong", arena.nfree);
                lasts += usize::from(is_last);
                prev = a;
                a = arena.next;
            }
            assert_eq!(
                self.last_with.iter().filter(|l| !l.is_null()).count(),
                lasts,
                "last_with names an arena that is not the last of its count on the list"
            );
            for class in 0..self.geo.nclasses {
                let mut p = self.used[class];
                let mut prev: *mut PoolMeta = ptr::null_mut();
                while !p.is_null() {
                    let pool = &*p;
                    assert_eq!(pool.class as usize, class, "pool on the wrong class list");
                    assert!(pool.in_list, "pool on a used list not marked so");
                    assert!(
                        pool.used <= pool.capacity,
                        "pool with more blocks used than it has"
                    );
                    assert_eq!(pool.prev, prev, "used list back link broken");
                    prev = p;
                    p = pool.next;
                }
            }
            for class in 0..BINS {
                let (head, slots) = self.bin_view(class);
                assert!(
                    head.len <= head.limit && head.limit <= slots.len(),
                    "bin {class} holds more than its limit, or its limit is above its capacity"
                );
            }
            let (mut arenas, mut empty, mut committed, mut pools) = (0, 0, 0, 0);
            let mut a = self.all;
            while !a.is_null() {
                let arena = &*a;
                arenas += 1;
                empty += usize::from(arena.nfree == arena.ntotal);
                committed += arena.empty_committed;
                for i in self.geo.header_pools..arena.next_unused {
                    pools += usize::from((*ArenaHeader::meta(a, i)).committed);
                }
                #[cfg(debug_assertions)]
                {
                    self.check_arena_now(a);
                    for i in self.geo.header_pools..arena.next_unused {
                        self.check_pool_now(ArenaHeader::meta(a, i));
                    }
                }
                a = arena.all_next;
            }
            assert_eq!(arenas, self.arenas, "arena count");
            assert_eq!(empty, self.empty_arenas, "empty arenas kept");
            assert_eq!(committed, self.empty_committed, "committed empty pools");
            assert_eq!(pools, self.committed_pools, "committed pools");
            assert!(
                self.learned_pools <= self.geo.learn_pools,
                "learned past the bound"
            );
        }
    }
}

impl<P: ArenaProvider> Drop for PoolCore<P> {
    fn drop(&mut self) {
        let layout = self.arena_layout();
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: every arena on the list is live and ours; its link is read before it is freed.
            unsafe {
                let next = (*a).all_next;
                registry::unregister(a as usize, layout.size());
                instrument::region_accessible(a.cast(), layout.size());
                self.provider.free(NonNull::new_unchecked(a.cast()), layout);
                a = next;
            }
        }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use alloc_core::{DomainAllocator, System};

    use crate::routing::{DEFAULT_GEOMETRY, pool_meta};
    use crate::{Heap, OsArenas};

    /// The debug checks are live: a pool whose count of used blocks disagrees with its free
    /// lists is caught at its next transition.
    #[test]
    #[should_panic(expected = "free blocks of a pool")]
    fn a_pool_count_that_disagrees_with_its_free_lists_is_caught_at_the_next_transition() {
        let heap = Heap::with_parts(OsArenas::new(), System);
        // 32 blocks of 512 bytes fill a 16 KiB pool; the 33rd finds it full and retires it.
        let blocks: std::vec::Vec<_> = (0..33).map(|_| heap.malloc(512).unwrap()).collect();
        // SAFETY: a test-only corruption of the count of the full pool's meta, made while no
        // other reference to the core is alive; nothing reads the count but the pool's own code.
        unsafe { (*pool_meta(&DEFAULT_GEOMETRY, blocks[0].as_ptr() as usize)).used -= 1 };
        for b in &blocks[..32] {
            // SAFETY: live blocks, each freed once (into the bin).
            unsafe { heap.free(b.as_ptr()) };
        }
        // The bin goes back to the pools: the first block moves the full pool back to its
        // class's list, a transition whose check finds one block too few in use.
        heap.trim();
    }
}

#[cfg(all(test, not(loom)))]
mod bin_layout_tests {
    use alloc_core::{DomainAllocator, System};

    use super::{
        BIN_CAPACITY, BIN_HEAD, BINS, BinStore, bin_limit, bins_for, first_limit, limit_within,
    };
    use crate::routing::DEFAULT_GEOMETRY;
    use crate::size_class::Geometry;
    // The mem domain's medium and large pools' shapes (this crate cannot name the domain
    // table's constants).
    use crate::tests::{large_blocks_config, medium_blocks_config};
    use crate::{Heap, OsArenas};

    /// pymalloc's classes keep full bins, 2064 bytes apart (the stride the C library's fast
    /// paths compute with as a constant); geometries of larger blocks pack their bins to the
    /// most any of their classes holds, so that a heap that uses every class touches a few pages
    /// of bins instead of the 130 KiB that full bins span. Every class's limit fits its bin.
    #[test]
    fn bins_of_larger_blocks_pack_to_their_size_and_pymallocs_stay_full() {
        assert_eq!(
            (DEFAULT_GEOMETRY.bin_capacity, DEFAULT_GEOMETRY.bin_stride),
            (BIN_CAPACITY, 2064)
        );
        let medium = Geometry::new(medium_blocks_config()).unwrap();
        let large = Geometry::new(large_blocks_config()).unwrap();
        assert_eq!((medium.bin_capacity, medium.bin_stride), (64, 528));
        assert_eq!((large.bin_capacity, large.bin_stride), (8, 80));
        assert!(BINS * medium.bin_stride <= 34 << 10);
        assert!(BINS * large.bin_stride <= 6 << 10);
        for g in [DEFAULT_GEOMETRY, medium, large] {
            assert!(BINS * g.bin_stride <= core::mem::size_of::<BinStore>());
            assert_eq!(g.bin_stride, BIN_HEAD + 8 * g.bin_capacity);
            let store = bins_for(&g);
            for c in 0..g.nclasses {
                let limit = limit_within(g.block_size(c), g.bin_capacity);
                assert!((2..=g.bin_capacity).contains(&limit), "class {c}: {limit}");
                // Classes of blocks of at least a sixteenth of the threshold keep their full
                // limit: only the classes a domain's pool of larger blocks never serves are cut.
                if g.block_size(c) >= g.threshold / 16 {
                    assert_eq!(limit, bin_limit(g.block_size(c)), "class {c}");
                }
                let first = first_limit(g.block_size(c), g.bin_capacity);
                assert_eq!(store.0[c * g.bin_stride / 8 + 1], first);
                if g.block_size(c) <= 512 {
                    assert_eq!(first, limit, "pymalloc's classes start full");
                } else {
                    assert!(first == (limit / 4).max(2).min(limit), "class {c}: {first}");
                }
            }
        }
    }

    /// A heap of packed bins keeps every block apart: each class of the large geometry filled
    /// past its bin, freed in an order that flushes the bins, and filled again, with each live
    /// block's bytes its own (a bin that spilled into its neighbour would hand a block out
    /// twice, or lose one).
    #[test]
    fn packed_bins_hand_out_each_block_once() {
        for config in [medium_blocks_config(), large_blocks_config()] {
            let heap = Heap::with_config(config, OsArenas::new(), System).unwrap();
            let g = Geometry::new(config).unwrap();
            for round in 0..2u8 {
                let mut live = std::vec::Vec::new();
                for c in 0..g.nclasses {
                    for i in 0..3 * limit_within(g.block_size(c), g.bin_capacity) {
                        let size = g.block_size(c);
                        let p = heap.malloc(size).unwrap();
                        let tag = (c as u8) ^ (i as u8) ^ round;
                        // SAFETY: a fresh block of `size` bytes.
                        unsafe { p.as_ptr().write_bytes(tag, size) };
                        live.push((p, size, tag));
                    }
                }
                // Freed from both ends, so that bins fill, flush and refill across classes.
                let half = live.len() / 2;
                let (a, b) = live.split_at(half);
                for &(p, size, tag) in a.iter().rev().chain(b.iter()) {
                    // SAFETY: a live block of `size` bytes, written above.
                    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) };
                    assert!(
                        bytes.iter().all(|&x| x == tag),
                        "a block was handed out twice"
                    );
                    // SAFETY: freed once.
                    unsafe { heap.free(p.as_ptr()) };
                }
            }
        }
    }

    /// A bin of larger blocks starts at a quarter of its limit and doubles at each overflow until
    /// it is full: 640-byte blocks (a limit of 51) start at 12, then hold 24, 48 and 51.
    #[test]
    fn a_bin_of_larger_blocks_starts_small_and_grows_as_it_overflows() {
        let heap = Heap::with_config(medium_blocks_config(), OsArenas::new(), System).unwrap();
        let class = 4; // 640-byte blocks
        let blocks: std::vec::Vec<_> = (0..400).map(|_| heap.malloc(600).unwrap()).collect();
        assert_eq!(heap.bin_fill(class).1, 12);
        let mut limits = std::vec![12];
        for b in &blocks {
            // SAFETY: live blocks, each freed once.
            unsafe { heap.free(b.as_ptr()) };
            let limit = heap.bin_fill(class).1;
            if limit != *limits.last().unwrap() {
                limits.push(limit);
            }
        }
        assert_eq!(limits, [12, 24, 48, 51]);
        // pymalloc's classes start full.
        let small = Heap::new();
        let p = small.malloc(400).unwrap();
        assert_eq!(small.bin_fill(24).1, bin_limit(400));
        // SAFETY: a live block, freed once.
        unsafe { small.free(p.as_ptr()) };
    }
}
