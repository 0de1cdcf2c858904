//! `Counting<A>` (statistics) and `Limited<A>` (a budget of live bytes).
//!
//! Both need the size of a block when it is freed. A C caller's `free` has none, so a block of the
//! `malloc` family keeps it in a 16-byte header before the data (the size, then a tag; the data
//! stays 16-aligned). A block of the aligned family (`malloc_aligned`, `calloc_aligned`,
//! `realloc_aligned`, which is what `AsGlobalAlloc` and `AsAllocator` use for every layout) is
//! always given back with its layout, so it has no header: it is the inner allocator's aligned
//! block itself, and costs neither memory nor a size class. The bookkeeping is per-thread
//! tallies (`Counting`) or relaxed atomics (`Limited`): exact counts, no ordering with other
//! memory.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use alloc_core::{DomainAllocator, MIN_ALIGN, Ownership};

use crate::claims::Claims;
use crate::instance::InstanceId;
use crate::tally::{Balance, Mine, Tallies};

const HEADER: usize = MIN_ALIGN;
/// The second word of the header: marks a block as made by a sizing decorator.
const TAG: usize = 0x5349_5a45_445f_424c; // "SIZED_BL"

/// The header that records a block's requested size, shared by [`Counting`] and [`Limited`]: the
/// `malloc` family.
mod sized {
    use super::*;

    /// Allocates `size` bytes plus the header through `inner` and records the size.
    #[inline]
    pub(super) fn alloc<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        size: usize,
        zeroed: bool,
    ) -> Option<NonNull<u8>> {
        let total = size.checked_add(HEADER)?;
        let raw = if zeroed {
            inner.calloc(1, total)?
        } else {
            inner.malloc(total)?
        };
        // SAFETY: the header is the block's first 16 bytes; the data follows.
        unsafe {
            let data = raw.as_ptr().add(HEADER);
            raw.as_ptr().cast::<usize>().write(size);
            raw.as_ptr().cast::<usize>().add(1).write(TAG);
            if !claims.made(data as usize) {
                // No memory to remember the block by: give it back, fail the request.
                inner.free_sized(raw, total);
                return None;
            }
            Some(NonNull::new_unchecked(data))
        }
    }

    /// The recorded size of a live block.
    ///
    /// # Safety
    /// `data` is a live block made by [`alloc`].
    #[inline]
    pub(super) unsafe fn size_of(data: NonNull<u8>) -> usize {
        // SAFETY: the caller's guarantee: the header precedes the data.
        unsafe { data.as_ptr().sub(HEADER).cast::<usize>().read() }
    }

    /// Whether `data` is a live block made by a sizing decorator (either family): once ownership
    /// is tracked every such block is remembered, so the answer is exact and reads no memory (a
    /// block the inner allocator made directly, or one of another decorator, is never claimed);
    /// `Unknown` before.
    pub(super) fn owns(claims: &Claims, data: *const u8) -> Ownership {
        claims.owns(data)
    }

    /// Releases a block made by [`alloc`].
    ///
    /// # Safety
    /// `data` is a live block made by [`alloc`], not used afterwards.
    #[inline]
    pub(super) unsafe fn free<A: DomainAllocator>(inner: &A, claims: &Claims, data: NonNull<u8>) {
        // SAFETY: the caller's guarantee: the header holds the size.
        unsafe { free_known(inner, claims, data, size_of(data)) }
    }

    /// [`free`] of a block whose requested size the caller gives (a sized free): the header is
    /// not read, so the block's memory is not touched (the pool's own free does not touch it
    /// either).
    ///
    /// # Safety
    /// As for [`free`], and `size` is the size most recently requested for the block.
    #[inline]
    pub(super) unsafe fn free_known<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        data: NonNull<u8>,
        size: usize,
    ) {
        // SAFETY: the caller's guarantee; the raw block starts the header before the data.
        unsafe {
            let raw = NonNull::new_unchecked(data.as_ptr().sub(HEADER));
            claims.given_up(data.as_ptr() as usize);
            inner.free_sized(raw, size + HEADER);
        }
    }

    /// Resizes a block made by [`alloc`] through the inner realloc.
    ///
    /// # Safety
    /// `data` is a live block made by [`alloc`].
    pub(super) unsafe fn realloc<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        data: NonNull<u8>,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let total = new_size.checked_add(HEADER)?;
        // Room to remember the new block, taken before the old one is given up.
        if !claims.ready_for_one() {
            return None;
        }
        // Forgotten before the inner realloc frees the old block (whose address another thread
        // may then get, and claim), remembered again if the realloc fails.
        claims.given_up(data.as_ptr() as usize);
        // SAFETY: the caller's guarantee; the header is the first 16 bytes of the inner block.
        unsafe {
            let old_raw = data.as_ptr().sub(HEADER);
            let Some(raw) = inner.realloc(old_raw, total) else {
                claims.made(data.as_ptr() as usize);
                return None;
            };
            raw.as_ptr().cast::<usize>().write(new_size);
            raw.as_ptr().cast::<usize>().add(1).write(TAG);
            let new = raw.as_ptr().add(HEADER);
            // The reservation above makes this succeed in all but a race for the last slot.
            claims.made(new as usize);
            Some(NonNull::new_unchecked(new))
        }
    }
}

/// The aligned family, shared by [`Counting`] and [`Limited`]: no header, the inner allocator's
/// aligned block is the block (its layout comes back with every free and resize).
mod bare {
    use super::*;

    /// Allocates for `layout` through the inner aligned family, and remembers the block.
    #[inline]
    pub(super) fn alloc<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        layout: Layout,
        zeroed: bool,
    ) -> Option<NonNull<u8>> {
        let p = if zeroed {
            inner.calloc_aligned(layout)?
        } else {
            inner.malloc_aligned(layout)?
        };
        noted(inner, claims, p, layout)
    }

    /// Notes `p`, just made by the inner aligned family with `layout`, in the ownership set; gives
    /// it back and fails if it cannot be noted.
    pub(super) fn noted<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        p: NonNull<u8>,
        layout: Layout,
    ) -> Option<NonNull<u8>> {
        if !claims.made(p.as_ptr() as usize) {
            // SAFETY: `p` was just made with `layout` and is given back once.
            unsafe { inner.free_aligned(p, layout) };
            return None;
        }
        Some(p)
    }

    /// Releases a block made by [`alloc`] (or [`realloc`]) with `layout`.
    ///
    /// # Safety
    /// `ptr` is such a live block, not used afterwards.
    #[inline]
    pub(super) unsafe fn free<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        ptr: NonNull<u8>,
        layout: Layout,
    ) {
        claims.given_up(ptr.as_ptr() as usize);
        // SAFETY: the caller's guarantee: an inner aligned block with this layout.
        unsafe { inner.free_aligned(ptr, layout) }
    }

    /// Resizes a block made by [`alloc`] with `layout` through the inner `realloc_aligned`.
    ///
    /// # Safety
    /// As for [`free`]; on success the old pointer is no longer used.
    pub(super) unsafe fn realloc<A: DomainAllocator>(
        inner: &A,
        claims: &Claims,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // As in the header family: room first, forgotten before the inner call frees the block.
        if !claims.ready_for_one() {
            return None;
        }
        claims.given_up(ptr.as_ptr() as usize);
        // SAFETY: the caller's guarantee.
        let moved = unsafe { inner.realloc_aligned(ptr, layout, new_size) };
        // The reservation above makes this succeed in all but a race for the last slot.
        claims.made(moved.unwrap_or(ptr).as_ptr() as usize);
        moved
    }
}

/// The queries both sizing decorators answer alike: `usable_size` (the requested size, from the
/// header of a `malloc` block), `owns` (the remembered set), `name`, and `write_origin` (asked of
/// the inner allocator about the inner block: one header before a `malloc` block, the block
/// itself for the aligned family).
macro_rules! sized_queries {
    ($name:literal) => {
        unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
            // SAFETY: a live block of ours (the caller's guarantee) has its size in the header.
            Some(unsafe { sized::size_of(ptr) })
        }
        fn owns(&self, ptr: *const u8) -> Ownership {
            sized::owns(&self.claims, ptr)
        }
        fn track_ownership(&self) -> bool {
            let inner = self.inner.track_ownership();
            self.claims.track() && inner
        }
        fn name(&self) -> &str {
            $name
        }
        fn write_origin(&self, ptr: *const u8, out: &mut dyn fmt::Write) -> bool {
            self.inner.write_origin(ptr.wrapping_sub(HEADER), out)
        }
        fn write_origin_aligned(
            &self,
            ptr: *const u8,
            layout: Layout,
            out: &mut dyn fmt::Write,
        ) -> bool {
            self.inner.write_origin_aligned(ptr, layout, out)
        }
        fn prepare_fork(&self) {
            self.claims.prepare_fork();
            self.inner.prepare_fork();
        }
        unsafe fn after_fork_parent(&self) {
            // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`.
            unsafe {
                self.inner.after_fork_parent();
                self.claims.after_fork();
            }
        }
        unsafe fn after_fork_child(&self) {
            // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
            unsafe {
                self.inner.after_fork_child();
                self.claims.after_fork();
            }
        }
    };
}

/// Histogram buckets: 32 classes 16 bytes apart up to 512 (as the pool's), then powers of two up
/// to 1 MiB, then everything larger.
pub const HISTOGRAM_BUCKETS: usize = 32 + 11 + 1;

/// The bucket of a request of `size` bytes, and the largest size in it (`usize::MAX` for the last).
#[inline]
pub fn bucket_of(size: usize) -> (usize, usize) {
    // 1..=512 in one compare (0 wraps past it).
    let below = size.wrapping_sub(1);
    if below < 512 {
        let b = below / 16;
        return (b, (b + 1) * 16);
    }
    if size == 0 {
        return (0, 16);
    }
    let log = usize::BITS - (size - 1).leading_zeros(); // 2^log >= size, log >= 10
    let b = 32 + (log as usize - 10);
    if b >= HISTOGRAM_BUCKETS - 1 {
        (HISTOGRAM_BUCKETS - 1, usize::MAX)
    } else {
        (b, 1 << log)
    }
}

/// A snapshot of a [`Counting`] allocator's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountingStats {
    /// Successful allocations (malloc, calloc and their aligned forms).
    pub allocations: u64,
    /// Frees of non-null blocks.
    pub frees: u64,
    /// Successful reallocs of non-null blocks.
    pub reallocs: u64,
    /// Requests the inner allocator refused.
    pub failures: u64,
    /// Bytes requested by live blocks.
    pub bytes_live: u64,
    /// The most bytes live at once (exact while one thread counts; see [`Counting`]).
    pub peak_bytes: u64,
    /// Allocations per size bucket (see [`bucket_of`]).
    pub histogram: [u64; HISTOGRAM_BUCKETS],
}

impl CountingStats {
    /// Blocks live now.
    pub fn blocks_live(&self) -> u64 {
        self.allocations - self.frees
    }
}

impl fmt::Display for CountingStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "allocations {}, frees {}, reallocs {}, failures {}",
            self.allocations, self.frees, self.reallocs, self.failures
        )?;
        writeln!(
            f,
            "bytes live {}, peak {}, blocks live {}",
            self.bytes_live,
            self.peak_bytes,
            self.blocks_live()
        )?;
        writeln!(f, "size (up to)   allocations")?;
        for (b, &n) in self.histogram.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let upper = if b < 32 {
                (b + 1) * 16
            } else if b < HISTOGRAM_BUCKETS - 1 {
                1 << (b - 32 + 10)
            } else {
                usize::MAX
            };
            if upper == usize::MAX {
                writeln!(f, "{:>12}   {n}", "larger")?;
            } else {
                writeln!(f, "{upper:>12}   {n}")?;
            }
        }
        Ok(())
    }
}

/// Counts what goes through an allocator: allocations, frees, reallocs, failures, bytes live and
/// their peak, and a histogram of request sizes. One per domain gives per-domain statistics.
///
/// Each thread counts in a shard of its own (see the `tally` module: no atomic read-modify-write
/// on the fast path), and [`stats`](Counting::stats) sums the shards. Bytes live are exact once
/// the counting threads are joined. The peak is exact while one thread counts (allocates and
/// frees); with several, each thread adds its bytes to the shared total only once its own balance
/// passes ±32 KiB ([`PEAK_SLACK`](crate::PEAK_SLACK)), and checks the peak against the total and
/// its own balance: the peak is off by at most that much per other thread, low by what the others
/// allocated and have not published, high by what they freed (of blocks another thread made) and
/// have not published. A `Counting` takes about 15 KiB (its shards).
///
/// Why not an exact peak with several threads: the peak of a sum is not a function of the
/// parts' histories. Per-thread (or per-CPU) counts folded on read give an exact total at any
/// quiet moment, but the moment the total was highest is one no shard saw, so an exact global
/// peak needs one global current, moved by an atomic read-modify-write on every allocation and
/// free and offered to the peak each time (that is what a [`Scope`](crate::Scope) does, where
/// only the scope's own allocations pay for it). Those two locked instructions per operation
/// would cost more than the pool's whole malloc/free pair; so `Counting` keeps the sharded
/// counts, exact totals, and a peak that is exact for one thread and bounded for several.
///
/// The fast path: the thread's note of the decorator it last counted in (its instance number
/// and where its shard is, a constant thread-local) gives the shard with two loads and
/// a compare; the histogram bucket (one compare), one counter, and the balance against its
/// ceiling (one compare) follow, with no call: anything else (another decorator's note, a
/// settle of the peak, an ownership set to keep) goes out of line whole.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::Counting;
///
/// let a = Counting::new(System);
/// let p = a.malloc(100).unwrap();
/// let q = a.malloc(1000).unwrap();
/// // SAFETY: live blocks, freed once (free needs no size: the header has it).
/// unsafe { a.free(p.as_ptr()) };
/// let s = a.stats();
/// assert_eq!((s.allocations, s.frees, s.bytes_live, s.peak_bytes), (2, 1, 1000, 1100));
/// # // SAFETY: a live block, freed once.
/// # unsafe { a.free(q.as_ptr()) };
/// ```
pub struct Counting<A> {
    inner: A,
    claims: Claims,
    tallies: Tallies<COUNTERS>,
    /// Bytes live and their peak (the threads' balances are counter `PENDING` of their shards).
    bytes: Balance,
    /// Names the decorator in the per-thread note of its shard ([`LAST`]).
    id: InstanceId,
}

std::thread_local! {
    /// The last `Counting` this thread counted in, by its number, and where its shard is in that
    /// decorator's tallies (a byte offset, so that a decorator moved since still finds it). A
    /// number is never given twice, so a note that names the decorator is its own; the initial
    /// number is never given. A plain `Cell` with a constant initialiser and no destructor: read
    /// with one load of the thread's block, from the first allocation of a thread to its last.
    static LAST: core::cell::Cell<(u64, usize)> = const { core::cell::Cell::new((u64::MAX, 0)) };
}

// The counters of a shard: the histogram's buckets, then these.
const FREES: usize = HISTOGRAM_BUCKETS;
const REALLOCS: usize = HISTOGRAM_BUCKETS + 1;
const FAILURES: usize = HISTOGRAM_BUCKETS + 2;
/// Bytes allocated minus bytes freed by the thread, not yet published (two's complement); the
/// next counter is its ceiling (see `tally::Balance`).
const PENDING: usize = HISTOGRAM_BUCKETS + 3;
const COUNTERS: usize = HISTOGRAM_BUCKETS + 5;

impl<A> Counting<A> {
    /// Wraps `inner` with every count at zero.
    pub const fn new(inner: A) -> Self {
        Counting {
            inner,
            claims: Claims::new(),
            tallies: Tallies::new(),
            bytes: Balance::new(),
            id: InstanceId::new(),
        }
    }

    /// Answers [`owns`](DomainAllocator::owns) exactly from the first block (see
    /// [`Guarded::with_ownership_tracking`](crate::Guarded::with_ownership_tracking)).
    pub const fn with_ownership_tracking(mut self) -> Self {
        self.claims.track_from_start();
        self
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// The calling thread's own shard, if its note ([`LAST`]) names this decorator: two loads
    /// and a compare, the fast paths' way in.
    #[inline(always)]
    fn mine(&self) -> Option<Mine<'_, COUNTERS>> {
        // SAFETY: the decorator's number (or 0 until it is given).
        unsafe { self.mine_if_noted(self.id.peek()) }
    }

    /// [`mine`](Self::mine) for the fast paths of the aligned family, which count with no call
    /// only where no block needs a note in the ownership set: the note is compared with the
    /// ownership set's fast key, this decorator's number while blocks need no note (and 0, which
    /// no note holds, otherwise), so that one compare answers both.
    #[inline(always)]
    fn mine_fast(&self) -> Option<Mine<'_, COUNTERS>> {
        // SAFETY: the fast key is the decorator's number or 0 (`open_fast` is given no other).
        unsafe { self.mine_if_noted(self.claims.fast_key()) }
    }

    /// The calling thread's own shard if its note holds `number`.
    ///
    /// # Safety
    /// `number` is this decorator's number or 0 (which no note holds).
    #[inline(always)]
    unsafe fn mine_if_noted(&self, number: u64) -> Option<Mine<'_, COUNTERS>> {
        let (id, offset) = LAST.with(core::cell::Cell::get);
        if id == number {
            // SAFETY: the note names this decorator (numbers are never given twice, and neither
            // the initial note's number nor 0 ever), so it was made by `noted` on this thread,
            // from `own_offset` of these tallies.
            Some(unsafe { self.tallies.mine_at(offset) })
        } else {
            None
        }
    }

    /// The calling thread's own shard, found (or claimed) in the tallies and noted in [`LAST`]
    /// for the next call; `None` when every shard is held by other threads. The fast paths are
    /// opened under the decorator's number (if blocks need no note now).
    #[cold]
    #[inline(never)]
    fn noted(&self) -> Option<Mine<'_, COUNTERS>> {
        let offset = self.tallies.own_offset()?;
        let id = self.id.get();
        LAST.with(|l| l.set((id, offset)));
        self.claims.open_fast(id);
        // SAFETY: just returned by `own_offset` on this thread, for these tallies.
        Some(unsafe { self.tallies.mine_at(offset) })
    }

    /// Bytes requested by live blocks: the published total plus every thread's balance.
    fn bytes_live(&self) -> u64 {
        self.bytes.live(&self.tallies, PENDING)
    }

    /// A snapshot of the counts (each exact once the counting threads are joined; together, as
    /// of about now).
    pub fn stats(&self) -> CountingStats {
        let mut histogram = [0; HISTOGRAM_BUCKETS];
        for (b, h) in histogram.iter_mut().enumerate() {
            *h = self.tallies.sum(b);
        }
        let bytes_live = self.bytes_live();
        CountingStats {
            // Each allocation is counted once, in its size bucket.
            allocations: histogram.iter().sum(),
            frees: self.tallies.sum(FREES),
            reallocs: self.tallies.sum(REALLOCS),
            failures: self.tallies.sum(FAILURES),
            bytes_live,
            peak_bytes: self.bytes.peak(bytes_live),
            histogram,
        }
    }

    /// Sets the peak back to the bytes live now.
    pub fn reset_peak(&self) {
        self.bytes.reset_peak(&self.tallies, PENDING);
    }

    /// Counts an allocation of `size` bytes (or its failure). The common case, a success on a
    /// thread that owns its home shard, is two plain counter updates and one compare.
    #[inline]
    fn allocated(&self, p: Option<NonNull<u8>>, size: usize) -> Option<NonNull<u8>> {
        if p.is_some()
            && let Some(m) = self.mine()
        {
            self.counted(m, size);
            return p;
        }
        self.allocated_elsewhere(p.is_some(), size);
        p
    }

    /// Counts a block of `size` bytes made, in the thread's own shard.
    #[inline]
    fn counted(&self, m: Mine<'_, COUNTERS>, size: usize) {
        m.add(bucket_of(size).0, 1);
        self.bytes.grow_mine(m, PENDING, size as u64);
    }

    /// [`allocated`](Self::allocated) for a failure, or on a thread whose note names another
    /// decorator (or none yet).
    #[cold]
    fn allocated_elsewhere(&self, made: bool, size: usize) {
        if made && let Some(m) = self.noted() {
            self.counted(m, size);
            return;
        }
        let slot = self.tallies.slot();
        if made {
            slot.add(bucket_of(size).0, 1);
            self.bytes.grow(slot, PENDING, size as u64);
        } else {
            slot.add(FAILURES, 1);
        }
    }

    /// Counts a realloc from `old` to `new_size` bytes (or its failure).
    fn reallocated(
        &self,
        moved: Option<NonNull<u8>>,
        old: usize,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let slot = self.tallies.slot();
        match moved {
            Some(_) => {
                slot.add(REALLOCS, 1);
                self.bytes.shrink(slot, PENDING, old as u64);
                self.bytes.grow(slot, PENDING, new_size as u64);
            }
            None => {
                slot.add(FAILURES, 1);
            }
        }
        moved
    }

    /// Counts a free of a block of `size` bytes.
    #[inline]
    fn freed(&self, size: usize) {
        match self.mine() {
            Some(m) => {
                m.add(FREES, 1);
                self.bytes.shrink_mine(m, PENDING, size as u64);
            }
            None => self.freed_elsewhere(size),
        }
    }

    #[cold]
    fn freed_elsewhere(&self, size: usize) {
        if let Some(m) = self.noted() {
            m.add(FREES, 1);
            self.bytes.shrink_mine(m, PENDING, size as u64);
            return;
        }
        let slot = self.tallies.slot();
        slot.add(FREES, 1);
        self.bytes.shrink(slot, PENDING, size as u64);
    }
}

impl<A: DomainAllocator> Counting<A> {
    /// Counts the inner aligned block `p` just made for `layout` (or its failure). The common
    /// case keeps nothing live across the inner call but the layout, and makes no call: a block
    /// made, no ownership set to note it in, the thread's shard in its note, and the balance
    /// under its ceiling (no peak to settle). Anything else goes out of line whole.
    #[inline(always)]
    fn aligned_made(&self, p: Option<NonNull<u8>>, layout: Layout) -> Option<NonNull<u8>> {
        let size = layout.size();
        if p.is_some()
            && let Some(m) = self.mine_fast()
            && self.bytes.try_grow_mine(m, PENDING, size as u64)
        {
            m.add(bucket_of(size).0, 1);
            return p;
        }
        self.aligned_noted(p, layout)
    }

    /// [`free_aligned`](DomainAllocator::free_aligned) past its common case: counted the ordinary
    /// way, forgotten by the ownership set.
    ///
    /// # Safety
    /// As for `free_aligned`.
    #[cold]
    #[inline(never)]
    unsafe fn free_aligned_counted(&self, ptr: NonNull<u8>, layout: Layout) {
        self.freed(layout.size());
        // SAFETY: the caller's guarantee: a live aligned block of ours made with `layout`,
        // released once.
        unsafe { bare::free(&self.inner, &self.claims, ptr, layout) }
    }

    /// The rest of [`aligned_made`](Self::aligned_made): the block is noted in the ownership set
    /// (or given back if it cannot be), and the allocation or its failure counted. The fast
    /// paths are opened if they can be now (a thread whose note was made before the first block
    /// opens them here).
    #[cold]
    #[inline(never)]
    fn aligned_noted(&self, p: Option<NonNull<u8>>, layout: Layout) -> Option<NonNull<u8>> {
        let p = p.and_then(|p| bare::noted(&self.inner, &self.claims, p, layout));
        let p = self.allocated(p, layout.size());
        if p.is_some() {
            self.claims.open_fast(self.id.get());
        }
        p
    }
}

// SAFETY: a `malloc` block is an inner `malloc` block with a 16-byte size header in front, so the
// data keeps the inner 16-byte alignment, and realloc goes through the inner realloc (which keeps
// the contents, header included); an aligned block is the inner aligned block itself, made,
// resized and released with the caller's layout; usable_size is the requested size.
unsafe impl<A: DomainAllocator> DomainAllocator for Counting<A> {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.allocated(sized::alloc(&self.inner, &self.claims, size, false), size)
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = alloc_core::checked_array_size(nelem, elsize).ok()?;
        self.allocated(sized::alloc(&self.inner, &self.claims, size, true), size)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        let Some(p) = NonNull::new(ptr) else {
            return self.malloc(new_size);
        };
        // SAFETY: a live block of ours (the caller's guarantee).
        let old = unsafe { sized::size_of(p) };
        // SAFETY: as above.
        let moved = unsafe { sized::realloc(&self.inner, &self.claims, p, new_size) };
        self.reallocated(moved, old, new_size)
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        let Some(p) = NonNull::new(ptr) else { return };
        // SAFETY: a live block of ours (the caller's guarantee), released once.
        unsafe {
            self.freed(sized::size_of(p));
            sized::free(&self.inner, &self.claims, p);
        }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        self.freed(size);
        // SAFETY: a live block of ours of `size` requested bytes (the caller's guarantee),
        // released once.
        unsafe { sized::free_known(&self.inner, &self.claims, ptr, size) }
    }
    #[inline(always)]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.aligned_made(self.inner.malloc_aligned(layout), layout)
    }
    #[inline]
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.aligned_made(self.inner.calloc_aligned(layout), layout)
    }
    #[inline(always)]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        // The common case makes no call before the inner free (so it keeps no register): no
        // ownership set to forget the block in, the thread's shard in its note, the balance above
        // the slack. Anything else goes out of line whole.
        if let Some(m) = self.mine_fast()
            && self.bytes.try_shrink_mine(m, PENDING, layout.size() as u64)
        {
            m.add(FREES, 1);
            // SAFETY: a live aligned block of ours made with `layout` (the caller's guarantee),
            // released once; the ownership set remembers no block (untracked).
            unsafe { self.inner.free_aligned(ptr, layout) }
        } else {
            // SAFETY: as above.
            unsafe { self.free_aligned_counted(ptr, layout) }
        }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a live aligned block of ours made with `layout` (the caller's guarantee).
        let moved = unsafe { bare::realloc(&self.inner, &self.claims, ptr, layout, new_size) };
        self.reallocated(moved, layout.size(), new_size)
    }
    sized_queries!("counting");
}

/// A budget of live bytes: an allocation that would take the bytes requested by live blocks past
/// the limit fails (and is counted), as if memory had run out. The limit can change at run time.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::Limited;
///
/// let a = Limited::new(System, 1000);
/// let p = a.malloc(600).unwrap();
/// assert!(a.malloc(600).is_none(), "600 + 600 > 1000");
/// assert_eq!(a.refused(), 1);
/// // SAFETY: a live block, freed once.
/// unsafe { a.free(p.as_ptr()) };
/// let q = a.malloc(600).expect("600 fits the budget again");
/// // SAFETY: a live block, freed once.
/// unsafe { a.free(q.as_ptr()) };
/// ```
pub struct Limited<A> {
    inner: A,
    claims: Claims,
    limit: AtomicUsize,
    live: AtomicUsize,
    refused: AtomicU64,
}

impl<A> Limited<A> {
    /// Wraps `inner` with a budget of `limit` live bytes.
    pub const fn new(inner: A, limit: usize) -> Self {
        Limited {
            inner,
            claims: Claims::new(),
            limit: AtomicUsize::new(limit),
            live: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Answers [`owns`](DomainAllocator::owns) exactly from the first block (see
    /// [`Guarded::with_ownership_tracking`](crate::Guarded::with_ownership_tracking)).
    pub const fn with_ownership_tracking(mut self) -> Self {
        self.claims.track_from_start();
        self
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// Changes the budget (live blocks are not affected; new requests see the new limit).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes requested by live blocks.
    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Requests refused because of the budget.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or refuses.
    fn reserve(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let ok = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                live.checked_add(bytes).filter(|&n| n <= limit)
            })
            .is_ok();
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn unreserve(&self, bytes: usize) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl<A: DomainAllocator> Limited<A> {
    /// Takes `size` from the budget and allocates (a `malloc` block, or an aligned one for
    /// `layout`), or gives the bytes back.
    fn alloc(&self, size: usize, layout: Option<Layout>, zeroed: bool) -> Option<NonNull<u8>> {
        if !self.reserve(size) {
            return None;
        }
        let p = match layout {
            None => sized::alloc(&self.inner, &self.claims, size, zeroed),
            Some(l) => bare::alloc(&self.inner, &self.claims, l, zeroed),
        };
        if p.is_none() {
            self.unreserve(size);
        }
        p
    }

    /// A resize from `old` to `new_size` bytes through `resize`, within the budget.
    fn resized(
        &self,
        old: usize,
        new_size: usize,
        resize: impl FnOnce() -> Option<NonNull<u8>>,
    ) -> Option<NonNull<u8>> {
        if new_size > old && !self.reserve(new_size - old) {
            return None;
        }
        let new = resize();
        match new {
            Some(_) if new_size < old => self.unreserve(old - new_size),
            None if new_size > old => self.unreserve(new_size - old),
            _ => {}
        }
        new
    }
}

// SAFETY: as for `Counting`: `malloc` blocks with a size header in front, aligned blocks that are
// the inner ones; the budget only refuses.
unsafe impl<A: DomainAllocator> DomainAllocator for Limited<A> {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.alloc(size, None, false)
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = alloc_core::checked_array_size(nelem, elsize).ok()?;
        self.alloc(size, None, true)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        let Some(p) = NonNull::new(ptr) else {
            return self.malloc(new_size);
        };
        // SAFETY: a live block of ours (the caller's guarantee).
        let old = unsafe { sized::size_of(p) };
        // SAFETY: as above.
        self.resized(old, new_size, || unsafe {
            sized::realloc(&self.inner, &self.claims, p, new_size)
        })
    }
    unsafe fn free(&self, ptr: *mut u8) {
        let Some(p) = NonNull::new(ptr) else { return };
        // SAFETY: a live block of ours, released once.
        unsafe {
            self.unreserve(sized::size_of(p));
            sized::free(&self.inner, &self.claims, p);
        }
    }
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        self.unreserve(size);
        // SAFETY: a live block of ours of `size` requested bytes (the caller's guarantee),
        // released once.
        unsafe { sized::free_known(&self.inner, &self.claims, ptr, size) }
    }
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc(layout.size(), Some(layout), false)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc(layout.size(), Some(layout), true)
    }
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        self.unreserve(layout.size());
        // SAFETY: a live aligned block of ours made with `layout` (the caller's guarantee),
        // released once.
        unsafe { bare::free(&self.inner, &self.claims, ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: a live aligned block of ours made with `layout` (the caller's guarantee).
        self.resized(layout.size(), new_size, || unsafe {
            bare::realloc(&self.inner, &self.claims, ptr, layout, new_size)
        })
    }

    sized_queries!("limited");
}
