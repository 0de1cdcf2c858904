//! `GuardPages<A>`: sampled guard pages (as GWP-ASan and Electric Fence do), cheap enough to leave
//! on in production.
//!
//! One allocation in N (a per-thread countdown, reset to a random interval of mean N at each
//! sample) gets a slot of its own in a pool of slots mapped once: the block is placed against the
//! end of the slot's data pages, with an inaccessible page after it, so that the first access past
//! its end faults (or, in underflow mode, against the start, after an inaccessible page). A freed
//! slot's pages are made inaccessible and the slot waits in a FIFO quarantine before it is used
//! again, so that an access after free faults too. The fault handler (`os::faults`) finds the slot
//! of the faulting address and writes a report (overflow, underflow or use after free, the
//! offset, the block, where it was allocated and freed) before the process dies of the fault.
//!
//! Everything else goes to the inner allocator unchanged: a request that is not sampled, one too
//! large or too aligned for a slot, one that finds no free slot. A pointer is told to be a slot
//! block by one compare against the slot area.

mod slots;

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use alloc_core::lock::Lock;
use alloc_core::{DomainAllocator, MIN_ALIGN, Ownership};
use thiserror::Error;

use crate::guard_slots::{self, Lists};
use crate::os::{faults, pages};
use slots::{Header, Slots};

pub use crate::guard_slots::GUARD_FRAMES;
pub use slots::REGISTERED;
pub(crate) use slots::report_fault;

/// One allocation in this many is guarded by default: cheap enough to leave on. A sample costs
/// two `mprotect` calls and a stack capture (about 9 µs on the development machine, whose system
/// calls are slow), so the rate is what keeps a workload of 10 ns allocations within 2% (see the
/// crate's README for the measurements).
pub const DEFAULT_SAMPLE_RATE: u32 = 50_000;
/// Slots in a pool by default.
pub const DEFAULT_SLOTS: u32 = 512;
/// Data pages of a slot by default (the largest block guarded: this many pages).
pub const DEFAULT_SLOT_PAGES: u32 = 4;
/// Freed slots kept inaccessible by default before they are used again.
pub const DEFAULT_QUARANTINE: u32 = 256;
/// The most slots a pool can have.
pub const MAX_SLOTS: u32 = 1 << 16;
/// The most data pages a slot can have.
pub const MAX_SLOT_PAGES: u32 = 1024;

/// A [`GuardPages`] configuration that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GuardPagesError {
    /// The pool must have between 1 and [`MAX_SLOTS`] slots.
    #[error("a guard-page pool has 1 to {max} slots, not {slots}")]
    Slots {
        /// The number asked for.
        slots: u32,
        /// [`MAX_SLOTS`].
        max: u32,
    },
    /// A slot must have between 1 and [`MAX_SLOT_PAGES`] data pages.
    #[error("a guarded slot has 1 to {max} data pages, not {pages}")]
    SlotPages {
        /// The number asked for.
        pages: u32,
        /// [`MAX_SLOT_PAGES`].
        max: u32,
    },
    /// The quarantine cannot hold more slots than the pool has.
    #[error("a quarantine of {quarantine} slots does not fit in a pool of {slots}")]
    Quarantine {
        /// The quarantine's length asked for.
        quarantine: u32,
        /// The pool's slots.
        slots: u32,
    },
}

/// A [`GuardPages`]'s parameters (see [`GuardPagesBuilder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardPagesConfig {
    /// One allocation in this many is guarded (on average); 0: none, 1: every one while slots
    /// last.
    pub sample_rate: u32,
    /// Slots in the pool: the most guarded blocks live and quarantined at once.
    pub slots: u32,
    /// Data pages of each slot: the largest block guarded.
    pub slot_pages: u32,
    /// Freed slots kept inaccessible (first in, first out) before they are used again.
    pub quarantine: u32,
    /// Blocks against the start of their slot, after the guard page (buffer underflows fault),
    /// instead of against the end (overflows fault).
    pub underflow: bool,
}

impl GuardPagesConfig {
    /// The defaults: [`DEFAULT_SAMPLE_RATE`], [`DEFAULT_SLOTS`], [`DEFAULT_SLOT_PAGES`],
    /// [`DEFAULT_QUARANTINE`], overflow mode.
    pub const DEFAULT: GuardPagesConfig = GuardPagesConfig {
        sample_rate: DEFAULT_SAMPLE_RATE,
        slots: DEFAULT_SLOTS,
        slot_pages: DEFAULT_SLOT_PAGES,
        quarantine: DEFAULT_QUARANTINE,
        underflow: false,
    };

    /// The configuration if it can be built.
    pub fn check(self) -> Result<Self, GuardPagesError> {
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(GuardPagesError::Slots {
                slots: self.slots,
                max: MAX_SLOTS,
            });
        }
        if self.slot_pages == 0 || self.slot_pages > MAX_SLOT_PAGES {
            return Err(GuardPagesError::SlotPages {
                pages: self.slot_pages,
                max: MAX_SLOT_PAGES,
            });
        }
        if self.quarantine > self.slots {
            return Err(GuardPagesError::Quarantine {
                quarantine: self.quarantine,
                slots: self.slots,
            });
        }
        Ok(self)
    }
}

impl Default for GuardPagesConfig {
    fn default() -> Self {
        GuardPagesConfig::DEFAULT
    }
}

/// Builds a [`GuardPages`] with checked parameters.
///
/// ```
/// use alloc_core::System;
/// use alloc_debug::GuardPages;
///
/// let g = GuardPages::builder()
///     .sample_rate(100)
///     .slots(64)
///     .quarantine(16)
///     .underflow(true)
///     .build(System)
///     .unwrap();
/// assert_eq!(g.config().slots, 64);
/// assert!(GuardPages::builder().slots(4).quarantine(5).build(System).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardPagesBuilder {
    config: GuardPagesConfig,
}

impl GuardPagesBuilder {
    /// One allocation in `n` is guarded (0: none; 1: every one while slots last).
    pub fn sample_rate(mut self, n: u32) -> Self {
        self.config.sample_rate = n;
        self
    }
    /// The pool's slots.
    pub fn slots(mut self, n: u32) -> Self {
        self.config.slots = n;
        self
    }
    /// Data pages per slot (the largest block guarded).
    pub fn slot_pages(mut self, n: u32) -> Self {
        self.config.slot_pages = n;
        self
    }
    /// Freed slots kept inaccessible before reuse.
    pub fn quarantine(mut self, n: u32) -> Self {
        self.config.quarantine = n;
        self
    }
    /// Underflow mode: blocks against the start of their slot, the guard page before them.
    pub fn underflow(mut self, on: bool) -> Self {
        self.config.underflow = on;
        self
    }
    /// The decorator over `inner`, or why these parameters cannot be used.
    pub fn build<A>(self, inner: A) -> Result<GuardPages<A>, GuardPagesError> {
        let config = self.config.check()?;
        Ok(GuardPages::new(inner).with_config(config))
    }
}

/// What a [`GuardPages`] has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardPagesStats {
    /// Blocks placed in slots.
    pub guarded: u64,
    /// Sampled requests that found no free slot (served by the inner allocator).
    pub missed: u64,
    /// Guarded blocks live now.
    pub live: u32,
    /// Freed slots in the quarantine now.
    pub quarantined: u32,
}

/// The pool, under the decorator's lock.
struct Pool {
    slots: Option<Slots>,
    /// Mapping failed once: not tried again.
    failed: bool,
    lists: Lists,
}

impl AsMut<Lists> for Pool {
    fn as_mut(&mut self) -> &mut Lists {
        &mut self.lists
    }
}

std::thread_local! {
    /// Allocations until the thread's next sample (shared by every `GuardPages` of the process).
    static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
    /// The thread's random state for the sampling intervals (0: not seeded yet).
    static RANDOM: Cell<u64> = const { Cell::new(0) };
    /// Set while the thread places or frees a guarded block: the stack capture may allocate,
    /// and those allocations are not sampled.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Whether this allocation is the thread's sample: the countdown ran out (it is reset by the
/// slow path).
#[inline(always)]
fn countdown_expired() -> bool {
    COUNTDOWN.with(|c| {
        let (n, expired) = c.get().overflowing_sub(1);
        c.set(n);
        expired
    })
}

/// Marks the thread busy while alive; `None` if it already was.
struct Busy;

impl Busy {
    fn enter() -> Option<Busy> {
        (!BUSY.replace(true)).then_some(Busy)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.set(false);
    }
}

/// Where the calling code is: up to [`GUARD_FRAMES`] return addresses, the allocation machinery's
/// frames passed over (as `Tracing` captures).
fn capture(into: &[AtomicUsize; GUARD_FRAMES]) {
    let mut frames = [0usize; GUARD_FRAMES];
    let n = crate::tracing::capture_frames(&mut frames);
    for (i, slot) in into.iter().enumerate() {
        slot.store(if i < n { frames[i] } else { 0 }, Ordering::Relaxed);
    }
}

/// Wraps an allocator and guards a sample of its blocks with inaccessible pages, so that an
/// overflow, an underflow (in underflow mode) or a use after free of a sampled block faults at
/// the offending access and is reported (see the module documentation and the crate's README).
///
/// * **Sampling.** One allocation in [`sample_rate`](GuardPagesConfig::sample_rate) (the
///   `malloc` and aligned families; `realloc` of an unguarded block is not sampled), counted down
///   per thread: the countdown is shared by every `GuardPages` of the process, so each samples
///   about one in N of the allocations of all of them on a thread. Blocks larger than a slot or
///   aligned to more than a page are never guarded.
/// * **Placement.** Against the end of the slot, rounded down to the block's alignment (at least
///   16): an overflow shorter than that rounding (the size rounded up to the alignment, minus
///   the size) lands in the slot's own page and is **not** caught. In underflow mode the block
///   starts the slot, right after its guard page, and the first byte before it faults; overflows
///   are then not caught.
/// * **Pool and quarantine.** [`slots`](GuardPagesConfig::slots) slots, mapped at the first
///   sample in one reservation with a guard page between every two; a freed slot is closed and
///   quarantined, first in first out, and leaves the quarantine for reuse once
///   [`quarantine`](GuardPagesConfig::quarantine) others were freed after it. A sample that finds
///   no free slot is served by the inner allocator.
/// * **Reports.** A SIGSEGV/SIGBUS handler (a vectored exception handler on Windows) is installed
///   at the first mapping; it writes the report without allocating or locking, then chains to the
///   previous handler (or restores the default action), so the process still dies by SIGSEGV.
///   A free, realloc or `usable_size` of a pointer in the slot area that is no live block (a
///   double free of a guarded block, a pointer inside one) is reported and aborts.
///
/// ```no_run
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::GuardPages;
///
/// let g = GuardPages::builder().sample_rate(1).build(System).unwrap();
/// let p = g.malloc(16).unwrap().as_ptr();
/// assert!(g.is_guarded(p));
/// // SAFETY: none: this write is the bug the guard page catches; the process dies by SIGSEGV
/// // after a report naming the block, its size, the offset (16) and where it was allocated.
/// unsafe { p.add(16).write_volatile(1) };
/// ```
pub struct GuardPages<A> {
    inner: A,
    config: GuardPagesConfig,
    rate: AtomicU32,
    /// Underflow mode, as the pool is mapped with it (settable until then).
    underflow: AtomicBool,
    /// The slot area, `[lo, lo + span)`, kept as `lo`'s two's complement (`neg_lo`: 0 until the
    /// pool is mapped) and `span` (0 until then, published after `neg_lo`), so that the test of
    /// a pointer is one addition and one compare.
    neg_lo: AtomicUsize,
    span: AtomicUsize,
    /// The mapped reservation's header (null until mapped).
    header: AtomicPtr<Header>,
    pool: Lock<Pool>,
}

impl<A> GuardPages<A> {
    /// Wraps `inner` with [`GuardPagesConfig::DEFAULT`]. Nothing is mapped until the first sample.
    pub const fn new(inner: A) -> Self {
        GuardPages {
            inner,
            config: GuardPagesConfig::DEFAULT,
            rate: AtomicU32::new(DEFAULT_SAMPLE_RATE),
            underflow: AtomicBool::new(false),
            neg_lo: AtomicUsize::new(0),
            span: AtomicUsize::new(0),
            header: AtomicPtr::new(ptr::null_mut()),
            pool: Lock::new(Pool {
                slots: None,
                failed: false,
                lists: Lists::new(),
            }),
        }
    }

    fn with_config(mut self, config: GuardPagesConfig) -> Self {
        self.rate = AtomicU32::new(config.sample_rate);
        self.underflow = AtomicBool::new(config.underflow);
        self.config = config;
        self
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// The parameters: as built, with the sample rate and the mode of now.
    pub fn config(&self) -> GuardPagesConfig {
        GuardPagesConfig {
            sample_rate: self.sample_rate(),
            underflow: self.underflow.load(Ordering::Relaxed),
            ..self.config
        }
    }

    /// Chooses underflow mode (blocks against the start of their slot) or overflow mode, for a
    /// decorator made with [`new`](Self::new) (a static, say) before its first guarded block:
    /// whether the mode could still be chosen (the pool, once mapped, keeps its mode).
    pub fn set_underflow(&self, on: bool) -> bool {
        let pool = self.pool.lock();
        if pool.slots.is_some() {
            return on == self.underflow.load(Ordering::Relaxed);
        }
        self.underflow.store(on, Ordering::Relaxed);
        true
    }

    /// One allocation in how many is guarded now.
    pub fn sample_rate(&self) -> u32 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Guards one allocation in `n` from now on (0: none; 1: every one while slots last). A
    /// thread's countdown already running ends first (at most the old rate's interval).
    pub fn set_sample_rate(&self, n: u32) {
        self.rate.store(n, Ordering::Relaxed);
    }

    /// What was guarded so far.
    pub fn stats(&self) -> GuardPagesStats {
        let pool = self.pool.lock();
        GuardPagesStats {
            guarded: pool.lists.guarded,
            missed: pool.lists.missed,
            live: pool.lists.live,
            quarantined: pool.lists.quarantined,
        }
    }

    /// Whether `ptr` is a live guarded block (the start of one).
    pub fn is_guarded(&self, ptr: *const u8) -> bool {
        self.in_area(ptr)
            && self
                .slots()
                .and_then(|s| s.live_block(ptr as usize))
                .is_some()
    }

    /// Whether `ptr` lies in the slot area: one addition and one compare (an addition needs no
    /// copy of the pointer, which the caller still holds).
    #[inline(always)]
    fn in_area(&self, ptr: *const u8) -> bool {
        // Acquire (a plain load on x86-64): the span is published after `neg_lo`, so a thread
        // that sees the area's length sees its start; one that sees 0 tests against nothing.
        let span = self.span.load(Ordering::Acquire);
        (ptr as usize).wrapping_add(self.neg_lo.load(Ordering::Relaxed)) < span
    }

    fn slots(&self) -> Option<Slots> {
        // Acquire: pairs with the Release that published the mapped header.
        NonNull::new(self.header.load(Ordering::Acquire)).map(Slots::from_header)
    }

    /// The slow path of an allocation whose countdown ran out: resets the countdown, and places
    /// the block in a slot if this is a sample and a slot is free; `None` sends the request to
    /// the inner allocator.
    #[cold]
    #[inline(never)]
    fn sampled(&self, size: usize, align: usize, zeroed: bool) -> Option<NonNull<u8>> {
        if BUSY.get() {
            // An allocation of the stack capture: not sampled, and the next one is tried again.
            COUNTDOWN.set(0);
            return None;
        }
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            COUNTDOWN.set(u32::MAX);
            return None;
        }
        let mut random = RANDOM.get();
        let first = random == 0;
        if first {
            // Seeded by the thread's own address: threads start at different points.
            random = (RANDOM.with(|r| r as *const Cell<u64> as u64) | 1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        RANDOM.set(random);
        let span = u64::from(rate - 1);
        if first && rate > 1 {
            // The thread's first countdown starts anywhere in one interval.
            COUNTDOWN.set((random % u64::from(rate)) as u32);
            return None;
        }
        // Uniform in [0, 2 (rate - 1)]: on average rate - 1 allocations between two samples.
        COUNTDOWN.set((random % (2 * span + 1)).min(u64::from(u32::MAX)) as u32);
        self.place(size, align, zeroed)
    }

    /// Places a block of `size` bytes aligned to `align` in a free slot.
    fn place(&self, size: usize, align: usize, zeroed: bool) -> Option<NonNull<u8>> {
        let page = pages::page_size();
        if align > page || size > self.config.slot_pages as usize * page {
            return None;
        }
        let _busy = Busy::enter()?;
        let (slots, slot) = self.take_slot()?;
        let h = slots.header();
        let start = slots.start(slot);
        // SAFETY: the slot's data pages, in the reservation.
        if !unsafe { pages::open(start as *mut u8, h.data) } {
            self.put_back(slots, slot);
            return None;
        }
        let align = align.max(MIN_ALIGN);
        let addr = if h.underflow {
            start
        } else {
            (start + h.data - size.max(1)) & !(align - 1)
        };
        if zeroed {
            // SAFETY: `size` bytes of the open data pages (a reused slot keeps old contents).
            unsafe { (addr as *mut u8).write_bytes(0, size) };
        }
        let r = slots.record(slot);
        capture(&r.allocated);
        r.publish(addr, size);
        NonNull::new(addr as *mut u8)
    }

    /// A free slot, taken off the free list (the pool mapped first if it is not yet).
    fn take_slot(&self) -> Option<(Slots, usize)> {
        let mut pool = self.pool.lock();
        let slots = match pool.slots {
            Some(s) => s,
            None if pool.failed => return None,
            None => match self.map() {
                Some(s) => {
                    pool.slots = Some(s);
                    pool.lists.link(s.records());
                    s
                }
                None => {
                    pool.failed = true;
                    return None;
                }
            },
        };
        let slot = pool.lists.take(slots.records())?;
        Some((slots, slot))
    }

    /// Gives back a slot taken by [`take_slot`](Self::take_slot) that could not be opened.
    fn put_back(&self, slots: Slots, slot: usize) {
        self.pool.lock().lists.put_back(slots.records(), slot);
    }

    /// Maps the pool, installs the fault handler and publishes the slot area (under the lock).
    fn map(&self) -> Option<Slots> {
        let c = self.config;
        let underflow = self.underflow.load(Ordering::Relaxed);
        let s = Slots::map(c.slots as usize, c.slot_pages as usize, underflow)?;
        // Without a handler (or a place in the registry) faults are not reported, but the
        // blocks are still guarded: the process still dies at the bad access.
        let _ = faults::install();
        let _ = slots::register(s);
        let h = s.header();
        self.header.store(s.header_ptr(), Ordering::Release);
        self.neg_lo.store(h.area.wrapping_neg(), Ordering::Relaxed);
        // Release: a thread that sees the span sees the area's start (`in_area`).
        self.span.store(h.area_len, Ordering::Release);
        Some(s)
    }

    /// The slot of the live block at `ptr` (in the slot area); reports and aborts if it is none.
    fn live_slot(&self, ptr: *const u8, op: &str) -> (Slots, usize) {
        let Some(s) = self.slots() else {
            // The area is published after the header: a pointer in it has a mapped pool.
            unreachable!("a pointer in the slot area of an unmapped pool")
        };
        match s.live_block(ptr as usize) {
            Some(slot) => (s, slot),
            None => slots::bad_pointer(s, op, ptr as usize),
        }
    }

    /// Frees the guarded block at `ptr` (in the slot area): closes its slot and quarantines it.
    ///
    /// # Safety
    /// `ptr` is in the slot area; if it is a live block, it is not used afterwards.
    #[cold]
    #[inline(never)]
    unsafe fn free_guarded(&self, ptr: *mut u8) {
        let (s, slot) = self.live_slot(ptr, "free");
        let freed = guard_slots::free(
            s.records(),
            slot,
            ptr as usize,
            self.config.quarantine,
            |r| {
                if let Some(_busy) = Busy::enter() {
                    capture(&r.freed);
                }
                // SAFETY: the slot's data pages, opened when the block was placed. A failure
                // leaves them open: the block is then not guarded after its free.
                let _ = unsafe { pages::close(s.start(slot) as *mut u8, s.header().data) };
            },
            || self.pool.lock(),
        );
        if !freed {
            // Freed by another thread at the same time.
            slots::bad_pointer(s, "free", ptr as usize);
        }
    }
}

impl GuardPages<()> {
    /// A builder of checked parameters (the inner allocator is given to
    /// [`build`](GuardPagesBuilder::build)).
    pub fn builder() -> GuardPagesBuilder {
        GuardPagesBuilder::default()
    }
}

impl<A: DomainAllocator> GuardPages<A> {
    /// Moves the guarded block at `ptr` to a new block of `new_size` bytes aligned to `align`
    /// (sampled again like any allocation), and frees the guarded one.
    ///
    /// # Safety
    /// `ptr` is in the slot area; on success it is not used afterwards.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_guarded(
        &self,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let (s, slot) = self.live_slot(ptr, "realloc");
        let old = s.record(slot).size.load(Ordering::Relaxed);
        let new = if align <= MIN_ALIGN {
            self.malloc(new_size)?
        } else {
            self.malloc_aligned(Layout::from_size_align(new_size, align).ok()?)?
        };
        // SAFETY: two live, distinct blocks of at least `min(old, new_size)` bytes; the old one
        // is freed once.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new.as_ptr(), old.min(new_size));
            self.free_guarded(ptr);
        }
        Some(new)
    }
}

impl<A> Drop for GuardPages<A> {
    fn drop(&mut self) {
        if let Some(s) = self.pool.lock().slots.take() {
            slots::unregister(s);
            // SAFETY: the decorator is going away with its blocks; nothing uses the pool again.
            unsafe { s.unmap() };
        }
    }
}

impl<A> fmt::Debug for GuardPages<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardPages")
            .field("config", &self.config)
            .field("sample_rate", &self.sample_rate())
            .field("stats", &self.stats())
            .finish()
    }
}

// SAFETY: a guarded block is placed in a slot opened for it alone (its data pages are readable
// and writable until it is freed, and the block, aligned to `max(align, 16)`, lies within them)
// and is freed only through the slot lists; every other block is the inner allocator's, and goes
// back to it: a pointer is a guarded block exactly when it lies in the slot area, which no inner
// block can.
unsafe impl<A: DomainAllocator> DomainAllocator for GuardPages<A> {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        if countdown_expired()
            && let Some(p) = self.sampled(size, MIN_ALIGN, false)
        {
            return Some(p);
        }
        self.inner.malloc(size)
    }
    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        if countdown_expired()
            && let Ok(size) = alloc_core::checked_array_size(nelem, elsize)
            && let Some(p) = self.sampled(size, MIN_ALIGN, true)
        {
            return Some(p);
        }
        self.inner.calloc(nelem, elsize)
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if self.in_area(ptr) {
            // SAFETY: the caller's guarantee.
            return unsafe { self.realloc_guarded(ptr, new_size, MIN_ALIGN) };
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator (or null).
        unsafe { self.inner.realloc(ptr, new_size) }
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        if self.in_area(ptr) {
            // SAFETY: the caller's guarantee.
            return unsafe { self.free_guarded(ptr) };
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator (or null).
        unsafe { self.inner.free(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        if self.in_area(ptr.as_ptr()) {
            // SAFETY: the caller's guarantee.
            return unsafe { self.free_guarded(ptr.as_ptr()) };
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator.
        unsafe { self.inner.free_sized(ptr, size) }
    }
    #[inline]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if countdown_expired()
            && let Some(p) = self.sampled(layout.size(), layout.align(), false)
        {
            return Some(p);
        }
        self.inner.malloc_aligned(layout)
    }
    #[inline]
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if countdown_expired()
            && let Some(p) = self.sampled(layout.size(), layout.align(), true)
        {
            return Some(p);
        }
        self.inner.calloc_aligned(layout)
    }
    #[inline]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.in_area(ptr.as_ptr()) {
            // SAFETY: the caller's guarantee.
            return unsafe { self.free_guarded(ptr.as_ptr()) };
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator's aligned family.
        unsafe { self.inner.free_aligned(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if self.in_area(ptr.as_ptr()) {
            // SAFETY: the caller's guarantee.
            return unsafe { self.realloc_guarded(ptr.as_ptr(), new_size, layout.align()) };
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator's aligned family.
        unsafe { self.inner.realloc_aligned(ptr, layout, new_size) }
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        if self.in_area(ptr.as_ptr()) {
            let (s, slot) = self.live_slot(ptr.as_ptr(), "usable_size");
            return Some(s.record(slot).size.load(Ordering::Relaxed));
        }
        // SAFETY: the caller's guarantee: a block of the inner allocator.
        unsafe { self.inner.usable_size(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        if self.in_area(ptr) {
            return Ownership::Owned;
        }
        self.inner.owns(ptr)
    }
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        if self.in_area(ptr) {
            return if self.is_guarded(ptr) {
                Ownership::Owned
            } else {
                Ownership::NotOwned
            };
        }
        self.inner.starts_block(ptr)
    }
    // Guarded blocks are told by address from the first: the inner allocator answers for the
    // rest.
    alloc_core::forward_to_inner!(inner: track_ownership, declares_ownership);
    fn name(&self) -> &str {
        "guard-pages"
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn fmt::Write) -> bool {
        if self.in_area(ptr) {
            return match self
                .slots()
                .and_then(|s| s.live_block(ptr as usize).map(|k| (s, k)))
            {
                Some((s, slot)) => slots::write_origin(s, slot, out),
                None => false,
            };
        }
        self.inner.write_origin(ptr, out)
    }
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn fmt::Write,
    ) -> bool {
        if self.in_area(ptr) {
            return self.write_origin(ptr, out);
        }
        self.inner.write_origin_aligned(ptr, layout, out)
    }
    fn prepare_fork(&self) {
        self.pool.acquire_for_fork();
        self.inner.prepare_fork();
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: after `prepare_fork`, on the thread that ran it.
        unsafe {
            self.inner.after_fork_parent();
            self.pool.release_after_fork();
        }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee: in the child, on the thread the fork returned in.
        unsafe {
            self.inner.after_fork_child();
            self.pool.release_after_fork();
        }
    }
}

#[cfg(test)]
mod tests;
