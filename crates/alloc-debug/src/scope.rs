//! Scoped counts: what one piece of code allocates, exactly, while other threads allocate too
//! (see [`Scope`]).

use alloc_core::DomainAllocator;
use core::alloc::Layout;
use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::scope_table::{Counts, Slot, Table};

/// How many scopes can be open (or held by a handle) at once in a process.
pub const MAX_SCOPES: usize = 256;
/// How many scopes can be entered on one thread at once.
pub const MAX_SCOPE_DEPTH: usize = 8;

/// Why a scope could not be opened or entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Every slot of the process's table is held by an open scope or a handle.
    #[error("all {MAX_SCOPES} scope slots are in use")]
    Exhausted,
    /// The thread has [`MAX_SCOPE_DEPTH`] scopes entered already.
    #[error("{MAX_SCOPE_DEPTH} scopes are entered on this thread already")]
    TooDeep,
}

/// The process's scopes (a static: opening one allocates nothing).
static SLOTS: Table<MAX_SCOPES> = Table::new();

/// An entry of a thread's stack: nothing (a guard dropped out of order).
const EMPTY: u16 = 0;
/// An entry of a thread's stack: a scope entered again on a thread that has it entered already
/// (so that it counts once).
const AGAIN: u16 = u16::MAX;

std::thread_local! {
    /// How many entries of [`ENTERED`] are in use; 0 while no scope is entered on the thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The scopes entered on the thread, innermost last: slot number + 1, or [`EMPTY`] or
    /// [`AGAIN`].
    static ENTERED: [Cell<u16>; MAX_SCOPE_DEPTH] = const { [const { Cell::new(EMPTY) }; MAX_SCOPE_DEPTH] };
}

/// Whether any scope is entered on the calling thread: one load of the thread's block.
#[inline(always)]
fn any_entered() -> bool {
    DEPTH.with(Cell::get) != 0
}

/// Runs `f` on the slot of every scope entered on the calling thread.
fn each_entered(mut f: impl FnMut(&Slot)) {
    let depth = DEPTH.with(Cell::get);
    ENTERED.with(|stack| {
        for e in &stack[..depth] {
            let v = e.get();
            if v != EMPTY && v != AGAIN {
                f(SLOTS.slot(usize::from(v) - 1));
            }
        }
    });
}

/// An allocation of `bytes` made (or, for `None`, refused) on this thread.
#[cold]
#[inline(never)]
fn count_alloc(made: bool, bytes: usize) {
    each_entered(|s| s.allocated(made, bytes));
}

/// A free of a block of `bytes` on this thread.
#[cold]
#[inline(never)]
fn count_free(bytes: usize) {
    each_entered(|s| s.freed(bytes));
}

/// A realloc from `old` to `new` bytes (`None`: refused) on this thread.
#[cold]
#[inline(never)]
fn count_realloc(made: bool, old: usize, new: usize) {
    each_entered(|s| s.reallocated(made, old, new));
}

/// A snapshot of a scope's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeStats {
    /// Successful allocations (malloc, calloc and their aligned forms).
    pub allocations: u64,
    /// Frees of non-null blocks.
    pub frees: u64,
    /// Successful reallocs of non-null blocks.
    pub reallocs: u64,
    /// Requests the inner allocator refused.
    pub failures: u64,
    /// Bytes allocated, growth by realloc included.
    pub bytes_allocated: u64,
    /// Bytes freed, shrinkage by realloc included.
    pub bytes_freed: u64,
    /// Bytes allocated minus bytes freed: what the scope holds now (negative where it freed
    /// memory allocated before it).
    pub current_bytes: i64,
    /// The most bytes the scope held at once (at least 0: the scope starts empty).
    pub peak_bytes: u64,
}

impl ScopeStats {
    /// Blocks made and not freed in the scope (negative where it freed more than it made).
    pub fn blocks_live(&self) -> i64 {
        self.allocations as i64 - self.frees as i64
    }

    /// Panics unless exactly `n` allocations were made.
    #[track_caller]
    pub fn assert_allocations(&self, n: u64) {
        assert!(
            self.allocations == n,
            "expected {n} allocations in the scope, found {}:\n{self}",
            self.allocations
        );
    }

    /// Panics unless exactly `n` blocks were freed.
    #[track_caller]
    pub fn assert_frees(&self, n: u64) {
        assert!(
            self.frees == n,
            "expected {n} frees in the scope, found {}:\n{self}",
            self.frees
        );
    }

    /// Panics unless exactly `bytes` were allocated.
    #[track_caller]
    pub fn assert_bytes_allocated(&self, bytes: u64) {
        assert!(
            self.bytes_allocated == bytes,
            "expected {bytes} bytes allocated in the scope, found {}:\n{self}",
            self.bytes_allocated
        );
    }

    /// Panics if anything was allocated, freed or reallocated.
    #[track_caller]
    pub fn assert_no_allocations(&self) {
        assert!(
            self.allocations == 0 && self.frees == 0 && self.reallocs == 0,
            "expected no allocation in the scope:\n{self}"
        );
    }

    /// Panics unless every block made in the scope was freed in it and it holds no bytes.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        assert!(
            self.allocations == self.frees && self.current_bytes == 0,
            "the scope holds {} bytes in {} blocks:\n{self}",
            self.current_bytes,
            self.blocks_live()
        );
    }

    /// Panics if the scope ever held more than `bytes`.
    #[track_caller]
    pub fn assert_peak_at_most(&self, bytes: u64) {
        assert!(
            self.peak_bytes <= bytes,
            "the scope's peak {} is above {bytes} bytes:\n{self}",
            self.peak_bytes
        );
    }
}

impl From<Counts> for ScopeStats {
    fn from(c: Counts) -> Self {
        ScopeStats {
            allocations: c.allocations,
            frees: c.frees,
            reallocs: c.reallocs,
            failures: c.failures,
            bytes_allocated: c.bytes_allocated,
            bytes_freed: c.bytes_freed,
            current_bytes: c.current,
            peak_bytes: c.peak.max(0) as u64,
        }
    }
}

impl fmt::Display for ScopeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allocations {}, frees {}, reallocs {}, failures {}; bytes allocated {}, freed {}, \
             current {}, peak {}",
            self.allocations,
            self.frees,
            self.reallocs,
            self.failures,
            self.bytes_allocated,
            self.bytes_freed,
            self.current_bytes,
            self.peak_bytes
        )
    }
}

/// A hold on a slot: the slot stays this scope's while any exists.
struct Hold(u16);

impl Hold {
    fn slot(&self) -> &'static Slot {
        SLOTS.slot(usize::from(self.0))
    }

    /// Claims a free slot, its counters at zero.
    fn claim() -> Result<Hold, ScopeError> {
        SLOTS
            .claim()
            .map(|i| Hold(i as u16))
            .ok_or(ScopeError::Exhausted)
    }

    fn stats(&self) -> ScopeStats {
        ScopeStats::from(self.slot().counts())
    }
}

impl Clone for Hold {
    fn clone(&self) -> Self {
        self.slot().hold();
        Hold(self.0)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.slot().release();
    }
}

/// A scope: what one piece of code allocates, exactly, while other threads allocate too.
///
/// A [`Scope`] counts the allocations, frees and reallocs served by any [`Scoped`] decorator on
/// the threads it is entered on, while it is: the thread that opened it, and every thread that
/// entered it through a [`ScopeHandle`] (a `Send` copy of it), until the guard is dropped. So a
/// test that opens a scope counts its own work and nothing that the test harness's other threads
/// do at the same time:
///
/// ```
/// use alloc_core::{AsGlobalAlloc, System};
/// use alloc_debug::{Scope, Scoped};
///
/// #[global_allocator]
/// static GLOBAL: AsGlobalAlloc<Scoped<System>> = AsGlobalAlloc::new(Scoped::new(System));
///
/// let scope = Scope::open();
/// let v: Vec<u64> = Vec::with_capacity(100);
/// drop(v);
/// let stats = scope.stats();
/// stats.assert_allocations(1);
/// stats.assert_no_leaks();
/// assert_eq!(stats.peak_bytes, 800);
/// ```
///
/// How it is kept:
///
/// * **Per thread**, the scopes entered on the thread: a count and a small stack of slot numbers
///   (`thread_local!` cells with constant initialisers and no destructor, so reading them never
///   allocates and works from a thread's first allocation to its last, thread exit included).
///   While the count is zero, which is the common case, a `Scoped` decorator reads it once per
///   call (one compare of the thread's block against zero) and forwards the call unchanged.
/// * **Per scope**, a slot in a fixed table of [`MAX_SCOPES`] (a static: opening a scope
///   allocates nothing, and so counts nothing of its own), with counters that every entered thread
///   updates by atomic read-modify-writes. Only allocations made inside a scope pay for them.
/// * **Exact.** Every update is a read-modify-write of the slot's own counters, so nothing is
///   lost however many threads count into one scope. The bytes the scope holds (`current_bytes`)
///   are one counter that each allocation and free moves by one `fetch_add`; the value it takes
///   after each move is offered to the peak by a `fetch_max`. The peak is therefore the largest
///   value the counter ever took, in its single modification order: exact, threads or not. (A
///   snapshot read while entered threads are still counting reads the counters one after
///   another; each is exact, the set as of about then.)
/// * **Nesting.** Up to [`MAX_SCOPE_DEPTH`] scopes can be entered on a thread at once; an allocation
///   counts in each of them (once in a scope entered twice on the thread).
/// * **What counts.** Frees count against the scope they happen in, whoever made the block: a
///   scope that frees memory allocated before it opened shows negative `current_bytes`. A realloc
///   counts once in `reallocs`, its growth in `bytes_allocated` or its shrinkage in
///   `bytes_freed`. The aligned family (every `GlobalAlloc` and allocator-api2 request) is
///   counted in requested bytes; the `malloc` family, whose `free` carries no size, in the inner
///   allocator's usable size of the block on both sides (so that allocations and frees balance;
///   requested bytes where the inner allocator cannot tell).
pub struct Scope {
    // Dropped first: the thread leaves the scope before the scope gives up its slot.
    _guard: ScopeGuard,
    hold: Hold,
}

impl Scope {
    /// Opens a scope, entered on the calling thread until it is dropped. Allocates nothing.
    ///
    /// # Panics
    /// If every one of the [`MAX_SCOPES`] slots is in use, or [`MAX_SCOPE_DEPTH`] scopes are entered on
    /// the thread already ([`try_open`](Self::try_open) returns the error instead).
    #[track_caller]
    pub fn open() -> Scope {
        match Self::try_open() {
            Ok(s) => s,
            Err(e) => panic!("Scope::open: {e}"),
        }
    }

    /// [`open`](Self::open), or why not.
    pub fn try_open() -> Result<Scope, ScopeError> {
        let hold = Hold::claim()?;
        let guard = ScopeGuard::enter(hold.clone())?;
        Ok(Scope {
            _guard: guard,
            hold,
        })
    }

    /// Runs `f` in a new scope on this thread and returns its result with the scope's counts.
    ///
    /// # Panics
    /// As [`open`](Self::open).
    #[track_caller]
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, ScopeStats) {
        let scope = Scope::open();
        let r = f();
        let stats = scope.stats();
        (r, stats)
    }

    /// The counts so far.
    pub fn stats(&self) -> ScopeStats {
        self.hold.stats()
    }

    /// A `Send` handle on this scope, for another thread to enter it
    /// ([`ScopeHandle::enter_on_this_thread`]) or read its counts.
    pub fn handle(&self) -> ScopeHandle {
        ScopeHandle {
            hold: self.hold.clone(),
        }
    }

    /// Enters this scope on the calling thread again (it is entered already where it was opened;
    /// a second entry counts nothing twice). Mostly useful on a handle.
    ///
    /// # Panics
    /// If [`MAX_SCOPE_DEPTH`] scopes are entered on the thread already.
    #[track_caller]
    pub fn enter_on_this_thread(&self) -> ScopeGuard {
        self.handle().enter_on_this_thread()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("slot", &self.hold.0)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A handle on a [`Scope`], which can be sent to other threads: entered there, it counts their
/// allocations in the scope until its guard is dropped. Keeps the scope's counts readable after
/// the scope itself is dropped; so `Scope::open().handle()` is a scope entered on no thread
/// until some thread enters it.
#[derive(Clone)]
pub struct ScopeHandle {
    hold: Hold,
}

impl ScopeHandle {
    /// Enters the scope on the calling thread until the guard is dropped.
    ///
    /// # Panics
    /// If [`MAX_SCOPE_DEPTH`] scopes are entered on the thread already
    /// ([`try_enter_on_this_thread`](Self::try_enter_on_this_thread) returns the error instead).
    #[track_caller]
    pub fn enter_on_this_thread(&self) -> ScopeGuard {
        match self.try_enter_on_this_thread() {
            Ok(g) => g,
            Err(e) => panic!("ScopeHandle::enter_on_this_thread: {e}"),
        }
    }

    /// [`enter_on_this_thread`](Self::enter_on_this_thread), or why not.
    pub fn try_enter_on_this_thread(&self) -> Result<ScopeGuard, ScopeError> {
        ScopeGuard::enter(self.hold.clone())
    }

    /// The counts so far.
    pub fn stats(&self) -> ScopeStats {
        self.hold.stats()
    }
}

impl fmt::Debug for ScopeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHandle")
            .field("slot", &self.hold.0)
            .finish()
    }
}

/// A scope entered on the thread that holds this guard (it is neither `Send` nor `Sync`), until
/// it is dropped.
pub struct ScopeGuard {
    hold: Hold,
    /// This entry's place in the thread's stack.
    index: usize,
    _on_this_thread: PhantomData<*const ()>,
}

impl ScopeGuard {
    fn enter(hold: Hold) -> Result<ScopeGuard, ScopeError> {
        let depth = DEPTH.with(Cell::get);
        if depth == MAX_SCOPE_DEPTH {
            return Err(ScopeError::TooDeep);
        }
        let number = hold.0 + 1;
        ENTERED.with(|stack| {
            let again = stack[..depth].iter().any(|e| e.get() == number);
            stack[depth].set(if again { AGAIN } else { number });
        });
        DEPTH.with(|d| d.set(depth + 1));
        Ok(ScopeGuard {
            hold,
            index: depth,
            _on_this_thread: PhantomData,
        })
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        ENTERED.with(|stack| {
            stack[self.index].set(EMPTY);
            // Guards dropped out of order leave empty entries under the top; they go with it.
            let mut depth = DEPTH.with(Cell::get);
            while depth > 0 && stack[depth - 1].get() == EMPTY {
                depth -= 1;
            }
            DEPTH.with(|d| d.set(depth));
        });
    }
}

impl fmt::Debug for ScopeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeGuard")
            .field("slot", &self.hold.0)
            .field("index", &self.index)
            .finish()
    }
}

/// The decorator that feeds [`Scope`]s: install it (as `#[global_allocator]` through
/// `AsGlobalAlloc`, or in a domain) over the allocator whose requests scopes should count. With
/// no scope entered on the calling thread it forwards every call as it is, after one compare;
/// its blocks are the inner allocator's own (no header), so `owns`, `usable_size` and the rest
/// are the inner allocator's answers.
#[derive(Debug, Default)]
pub struct Scoped<A> {
    inner: A,
}

impl<A> Scoped<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        Scoped { inner }
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: DomainAllocator> Scoped<A> {
    /// The size a block of the `malloc` family is counted at (see [`Scope`]).
    ///
    /// # Safety
    /// `p` is a live block of the inner allocator's `malloc` family.
    unsafe fn counted_size(&self, p: NonNull<u8>, requested: usize) -> usize {
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.usable_size(p) }.unwrap_or(requested)
    }

    #[cold]
    #[inline(never)]
    fn malloc_scoped(&self, size: usize, zeroed: Option<usize>) -> Option<NonNull<u8>> {
        let p = match zeroed {
            Some(nelem) => self.inner.calloc(nelem, size),
            None => self.inner.malloc(size),
        };
        let requested = size.saturating_mul(zeroed.unwrap_or(1));
        match p {
            // SAFETY: just made by the inner malloc family.
            Some(p) => count_alloc(true, unsafe { self.counted_size(p, requested) }),
            None => count_alloc(false, 0),
        }
        p
    }

    #[cold]
    #[inline(never)]
    fn aligned_scoped(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>> {
        let p = if zeroed {
            self.inner.calloc_aligned(layout)
        } else {
            self.inner.malloc_aligned(layout)
        };
        count_alloc(p.is_some(), layout.size());
        p
    }

    /// # Safety
    /// `ptr` is a live block of the inner `malloc` family, not used afterwards.
    #[cold]
    #[inline(never)]
    unsafe fn free_scoped(&self, ptr: NonNull<u8>) {
        // SAFETY: the caller's guarantee.
        unsafe {
            count_free(self.counted_size(ptr, 0));
            self.inner.free(ptr.as_ptr());
        }
    }

    /// # Safety
    /// As for `realloc`, with a scope entered.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_scoped(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        let Some(old) = NonNull::new(ptr) else {
            return self.malloc_scoped(new_size, None);
        };
        // SAFETY: the caller's guarantee: a live block of the inner malloc family.
        let old_size = unsafe { self.counted_size(old, 0) };
        // SAFETY: as above.
        let moved = unsafe { self.inner.realloc(ptr, new_size) };
        match moved {
            // SAFETY: the block the inner realloc just made.
            Some(p) => count_realloc(true, old_size, unsafe { self.counted_size(p, new_size) }),
            None => count_realloc(false, 0, 0),
        }
        moved
    }

    /// # Safety
    /// As for `free_aligned`, with a scope entered.
    #[cold]
    #[inline(never)]
    unsafe fn free_aligned_scoped(&self, ptr: NonNull<u8>, layout: Layout) {
        count_free(layout.size());
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.free_aligned(ptr, layout) }
    }

    /// # Safety
    /// As for `realloc_aligned`, with a scope entered.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_aligned_scoped(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller's guarantee.
        let moved = unsafe { self.inner.realloc_aligned(ptr, layout, new_size) };
        count_realloc(moved.is_some(), layout.size(), new_size);
        moved
    }
}

// SAFETY: every block is the inner allocator's, made, resized and released by the inner call of
// the same name with the caller's arguments; the decorator only counts around the calls.
unsafe impl<A: DomainAllocator> DomainAllocator for Scoped<A> {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        if any_entered() {
            return self.malloc_scoped(size, None);
        }
        self.inner.malloc(size)
    }
    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        if any_entered() {
            return self.malloc_scoped(elsize, Some(nelem));
        }
        self.inner.calloc(nelem, elsize)
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if any_entered() {
            // SAFETY: the caller's guarantee.
            return unsafe { self.realloc_scoped(ptr, new_size) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.realloc(ptr, new_size) }
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        let Some(p) = NonNull::new(ptr) else { return };
        if any_entered() {
            // SAFETY: the caller's guarantee: a live block, released once.
            return unsafe { self.free_scoped(p) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.free(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        if any_entered() {
            // Counted at the usable size, as its allocation was (see [`Scope`]).
            // SAFETY: the caller's guarantee: a live block of the malloc family, released once.
            return unsafe { self.free_scoped(ptr) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.free_sized(ptr, size) }
    }
    #[inline]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if any_entered() {
            return self.aligned_scoped(layout, false);
        }
        self.inner.malloc_aligned(layout)
    }
    #[inline]
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if any_entered() {
            return self.aligned_scoped(layout, true);
        }
        self.inner.calloc_aligned(layout)
    }
    #[inline]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if any_entered() {
            // SAFETY: the caller's guarantee.
            return unsafe { self.free_aligned_scoped(ptr, layout) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.free_aligned(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if any_entered() {
            // SAFETY: the caller's guarantee.
            return unsafe { self.realloc_aligned_scoped(ptr, layout, new_size) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.inner.realloc_aligned(ptr, layout, new_size) }
    }
    fn name(&self) -> &str {
        "scoped"
    }
    alloc_core::forward_to_inner!(inner: usable_size, ownership, origin, fork);
}
