//! The domain handle ([`Domain`]), a `DomainAllocator` over the table, and the mem domain's
//! fast path into its standard pool (what the C library's `malloc` and `free` start with).

use super::*;

// The handle.

/// A domain as a [`DomainAllocator`], for generic code and for `#[global_allocator]` (through
/// [`GlobalFront`](crate::GlobalFront)): every call goes to the allocator the domain uses at that
/// moment, frees to the allocator that made the block.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_domains::MEM;
///
/// let p = MEM.malloc(64).unwrap(); // PyMem_Malloc
/// // SAFETY: a live block of the mem domain, freed once.
/// unsafe { MEM.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain(pub(crate) DomainId);

impl Domain {
    /// The handle of an existing domain.
    pub fn new(id: DomainId) -> Result<Domain, DomainError> {
        start();
        slot(id)?;
        Ok(Domain(id))
    }

    /// The domain's id.
    pub const fn id(self) -> DomainId {
        self.0
    }

    /// The allocator to allocate with: the domain's current one ([`VACANT`]'s for a stale id),
    /// and the domain's counters if it counts (`None` for a stale id, and for a bootstrap
    /// allocator, which forwards to a call that counts). For a user domain the block about to be
    /// made is counted live here (inside the section, through its slot); [`made`](Self::made)
    /// takes it back if the allocation fails.
    #[inline(always)]
    fn alloc_side(self) -> (&'static DynAllocator, Option<&'static Counters>) {
        mark_used(self.0);
        let (alloc, counters) = {
            let s = section();
            let rec = current(&s, self.0);
            if rec.generation != self.0.generation {
                return (&VACANT, None);
            }
            if self.counts() {
                s.count(self.0.index(), 1);
            }
            let counters = self.counters().filter(|_| !is_bootstrap(rec));
            (rec.alloc, counters)
        };
        // Only while the fast path is off: once on, these calls (the aligned family, which has
        // no fast path on every domain) must not take the writer lock each time.
        if self.0 == DomainId::MEM
            && FAST_MEM.load(Ordering::Relaxed) == NO_KEY
            && COUNTED_MEM.load(Ordering::Relaxed) == NO_KEY
            && is_current(DomainId::MEM, &REC_POOL)
        {
            enable_fast_mem();
        }
        if self.0 == DomainId::OBJECT
            && counters.is_none()
            && !FAST_OBJECT.load(Ordering::Relaxed)
            && is_current(DomainId::OBJECT, &REC_OBJECT_POOL)
        {
            enable_fast_object();
        }
        (alloc, counters)
    }

    /// The allocation `alloc` just made (or failed to make) through the domain: the user
    /// domain's count taken back on failure ([`made`](Self::made)), the block counted in the
    /// domain's statistics with the size `size` gives for it.
    #[inline(always)]
    fn made_counted(
        self,
        p: Option<NonNull<u8>>,
        counters: Option<&'static Counters>,
        size: impl FnOnce(NonNull<u8>) -> usize,
    ) -> Option<NonNull<u8>> {
        let p = self.made(p);
        if let (Some(c), Some(p)) = (counters, p) {
            c.made(size(p));
        }
        p
    }

    /// Whether this is a user domain, whose live blocks the table counts (for
    /// [`remove_domain`]).
    #[inline(always)]
    fn counts(self) -> bool {
        self.0.index() >= STANDARD_DOMAINS
    }

    /// Takes back the count [`alloc_side`](Self::alloc_side) made, if the allocation failed
    /// (not for a stale id, which counted nothing).
    #[inline(always)]
    fn made(self, p: Option<NonNull<u8>>) -> Option<NonNull<u8>> {
        if p.is_none() && self.counts() && slot(self.0).is_ok() {
            READERS.count(self.0.index(), u64::MAX);
        }
        p
    }

    /// The allocator to free `ptr` with, the block counted as freed (user domains); `None` for
    /// a stale id (a removed domain owned no live block: the pointer is none of its).
    #[inline(always)]
    fn freer(self, ptr: *const u8) -> Option<&'static DynAllocator> {
        let s = section();
        let rec = current(&s, self.0);
        if rec.generation != self.0.generation {
            return None;
        }
        if self.counts() {
            s.count(self.0.index(), u64::MAX);
        }
        Some(rec.owner(ptr))
    }

    /// The allocator that made `ptr` (as [`owner_of`]), and the domain's counters if it counts
    /// and the id is not stale.
    #[inline(always)]
    fn owner_counted(self, ptr: *const u8) -> (&'static DynAllocator, Option<&'static Counters>) {
        match live_owner_of(self.0, ptr) {
            Some(owner) => (owner, self.counters()),
            None => (REC_VACANT.alloc, None),
        }
    }

    /// `malloc_aligned` through the domain's current allocator, by dynamic dispatch: out of line,
    /// as the mem domain's common case is its standard pool, inlined into the caller; not `_slow`
    /// (cold), as it is every other domain's common case.
    #[inline(never)]
    fn malloc_aligned_dyn(self, layout: Layout) -> Option<NonNull<u8>> {
        if let Some((key, c)) = self.counted_key() {
            return counted_malloc_aligned(key, c, layout);
        }
        self.malloc_aligned_table(layout)
    }

    /// [`malloc_aligned_dyn`](Self::malloc_aligned_dyn) through the table (its own function, so
    /// that the counting path above it saves no registers).
    #[inline(never)]
    fn malloc_aligned_table(self, layout: Layout) -> Option<NonNull<u8>> {
        let (alloc, counters) = self.alloc_side();
        self.made_counted(alloc.malloc_aligned(layout), counters, |_| layout.size())
    }

    /// `free_aligned` through the allocator that made the block (out of line).
    ///
    /// # Safety
    /// As for `DomainAllocator::free_aligned`.
    #[inline(never)]
    unsafe fn free_aligned_dyn(self, ptr: NonNull<u8>, layout: Layout) {
        if let Some((_, c)) = self.counted_key() {
            // SAFETY: the caller's guarantee; with `COUNTED_MEM` set the pool made every block
            // of the domain.
            return unsafe { counted_free_aligned(c, ptr, layout) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_aligned_table(ptr, layout) }
    }

    /// [`free_aligned_dyn`](Self::free_aligned_dyn) through the table.
    ///
    /// # Safety
    /// As for `DomainAllocator::free_aligned`.
    #[inline(never)]
    unsafe fn free_aligned_table(self, ptr: NonNull<u8>, layout: Layout) {
        if let Some(owner) = self.freer(ptr.as_ptr()) {
            // SAFETY: the caller's guarantee; the block goes to the allocator that made it.
            unsafe { owner.free_aligned(ptr, layout) }
            if let Some(c) = self.counters() {
                c.freed(layout.size());
            }
        }
    }

    /// A free of a block of the malloc family (`free`, `free_sized`) through `owner`, the
    /// allocator that made it, counted with its usable size (asked before the free) if the
    /// domain counts.
    ///
    /// # Safety
    /// `ptr` is a live block of the malloc family that `owner` made, freed once by `free`.
    #[inline(always)]
    unsafe fn free_counted(
        self,
        owner: &'static DynAllocator,
        ptr: NonNull<u8>,
        free: impl FnOnce(&'static DynAllocator),
    ) {
        match self.counters() {
            None => free(owner),
            Some(c) => {
                // SAFETY: the caller's guarantee: a live block of the malloc family of `owner`.
                let bytes = unsafe { owner.usable_size(ptr) }.unwrap_or(0);
                free(owner);
                c.freed(bytes);
            }
        }
    }

    /// Whether this is the object domain on its standard pool (see `FAST_OBJECT`). Relaxed:
    /// `OBJECT_POOL` is a static, so there is nothing to acquire.
    #[inline(always)]
    fn fast_object(self) -> bool {
        self.0 == DomainId::OBJECT && FAST_OBJECT.load(Ordering::Relaxed)
    }

    /// Whether this is the mem domain on its standard pool (see `FAST_MEM`). Relaxed: `POOL` is
    /// a static, so there is nothing to acquire.
    #[inline(always)]
    fn fast_mem(self) -> bool {
        self.fast_key() != NO_KEY
    }

    /// [`malloc`](DomainAllocator::malloc) past the mem domain's fast path: the counting path
    /// into the pool, or the allocator the table names (out of line, as `free_dispatched`).
    #[inline(always)]
    fn malloc_dispatched(self, size: usize) -> Option<NonNull<u8>> {
        if let Some((key, c)) = self.counted_key() {
            // SAFETY: the key `COUNTED_MEM` holds is the pool's fast key.
            if let Some(p) = unsafe { POOL.malloc_fast(size, key) } {
                c.made(fast_block_size(size, p));
                return Some(p);
            }
            let p = POOL.malloc(size)?;
            c.made(pool_usable(p));
            return Some(p);
        }
        let (alloc, counters) = self.alloc_side();
        self.made_counted(alloc.malloc(size), counters, |p| usable(alloc, p))
    }

    /// [`free`](DomainAllocator::free) past the mem domain's fast path: the counting path into
    /// the pool, or the allocator the table names (out of line, so that the fast path keeps no
    /// register of its own).
    ///
    /// # Safety
    /// As for `free`.
    #[inline(always)]
    unsafe fn free_dispatched(self, ptr: *mut u8) {
        let Some(block) = NonNull::new(ptr) else {
            return;
        };
        if let Some((_, c)) = self.counted_key() {
            let bytes = pool_usable(block);
            // SAFETY: the caller's guarantee; with `COUNTED_MEM` set the pool made every block
            // of the domain.
            unsafe { POOL.free(ptr) };
            c.freed(bytes);
            return;
        }
        if let Some(owner) = self.freer(ptr) {
            // SAFETY: the caller's guarantee; the block goes to the allocator that made it.
            unsafe { self.free_counted(owner, block, |o| o.free(ptr)) }
        }
    }

    /// The standard pool's fast-path key if this is the mem domain on it (see `FAST_MEM`),
    /// [`NO_KEY`] otherwise.
    #[inline(always)]
    fn fast_key(self) -> u32 {
        if self.0 == DomainId::MEM {
            FAST_MEM.load(Ordering::Relaxed)
        } else {
            NO_KEY
        }
    }

    /// The standard pool's fast-path key and the domain's counters if this is the mem domain on
    /// it, counting its statistics (see `COUNTED_MEM`): the counting path calls `POOL` directly.
    #[inline(always)]
    fn counted_key(self) -> Option<(u32, &'static Counters)> {
        if self.0 != DomainId::MEM {
            return None;
        }
        let key = COUNTED_MEM.load(Ordering::Relaxed);
        if key == NO_KEY {
            return None;
        }
        Some((key, &STATS[DomainId::MEM.index()]))
    }
}

/// The mem domain's standard pool and the key of its fast paths (`PoolAllocator::malloc_fast`,
/// `free_fast`): the pool's key while it is the domain's only allocator and has served it,
/// [`NO_KEY`] otherwise (after any `set` or `hook` of the mem domain, under another preset, and
/// before the domain's first allocation), which sends every fast call the long way. The C
/// library's `malloc` and `free` start here.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_domains::{MEM, mem_fast_path};
///
/// let p = MEM.malloc(64).unwrap();
/// let (pool, key) = mem_fast_path();
/// // SAFETY: the key is the pool's (or `NO_KEY`); `p` is a live block of the mem domain, freed
/// // once: by the pool's fast path, or else by the domain.
/// unsafe {
///     if !pool.free_fast(p.as_ptr(), key) {
///         MEM.free(p.as_ptr());
///     }
/// }
/// ```
#[inline(always)]
pub fn mem_fast_path() -> (&'static MemPool, u32) {
    (&POOL, FAST_MEM.load(Ordering::Relaxed))
}

/// The mem domain's `malloc`, out of line (so that the fast path keeps no register of its own,
/// and a caller that names another domain inlines no part of it): the standard pool's fast path
/// while `FAST_MEM` holds its key, then the pool's `malloc`; otherwise the table's dispatch.
#[inline(never)]
fn mem_malloc(size: usize) -> Option<NonNull<u8>> {
    let key = FAST_MEM.load(Ordering::Relaxed);
    if key != NO_KEY {
        // SAFETY: the key `FAST_MEM` holds is the pool's fast key.
        if let Some(p) = unsafe { POOL.malloc_fast(size, key) } {
            return Some(p);
        }
        return malloc_in_pool(size);
    }
    mem_malloc_dispatched(size)
}

/// [`mem_malloc`] while the fast path is off: the table's dispatch, out of line.
#[inline(never)]
fn mem_malloc_dispatched(size: usize) -> Option<NonNull<u8>> {
    MEM.malloc_dispatched(size)
}

/// The object domain's `malloc`, out of line (as [`mem_malloc`]): the standard object pool's
/// while `FAST_OBJECT` holds, the table's dispatch otherwise, each a tail call of a function of
/// its own (so that neither path saves registers for the other).
#[inline(never)]
fn object_malloc(size: usize) -> Option<NonNull<u8>> {
    if FAST_OBJECT.load(Ordering::Relaxed) {
        return object_pool_malloc(size);
    }
    object_malloc_dispatched(size)
}

/// The standard object pool's `malloc`, out of line: [`object_malloc`] with `FAST_OBJECT`.
#[inline(never)]
fn object_pool_malloc(size: usize) -> Option<NonNull<u8>> {
    OBJECT_POOL.malloc(size)
}

/// [`object_malloc`] without `FAST_OBJECT`: the table's dispatch, out of line.
#[inline(never)]
fn object_malloc_dispatched(size: usize) -> Option<NonNull<u8>> {
    OBJECT.malloc_dispatched(size)
}

/// The object domain's `free`, out of line, as [`object_malloc`].
///
/// # Safety
/// As for [`DomainAllocator::free`] of the object domain.
#[inline(never)]
unsafe fn object_free(ptr: *mut u8) {
    if FAST_OBJECT.load(Ordering::Relaxed) {
        // SAFETY: with `FAST_OBJECT` set the object pool made every block of the domain (it
        // takes null); the caller's guarantee.
        return unsafe { object_pool_free(ptr) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { object_free_dispatched(ptr) }
}

/// The standard object pool's `free`, out of line: [`object_free`] with `FAST_OBJECT`.
///
/// # Safety
/// `ptr` is null or a live block of the standard object pool, freed once.
#[inline(never)]
unsafe fn object_pool_free(ptr: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { OBJECT_POOL.free(ptr) }
}

/// [`object_free`] without `FAST_OBJECT`: the table's dispatch, out of line.
///
/// # Safety
/// As for [`object_free`].
#[inline(never)]
unsafe fn object_free_dispatched(ptr: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { OBJECT.free_dispatched(ptr) }
}

/// The standard pool's `malloc`, out of line: [`mem_malloc`] past its fast path.
#[inline(never)]
fn malloc_in_pool(size: usize) -> Option<NonNull<u8>> {
    POOL.malloc(size)
}

/// The mem domain's `free`, out of line (as [`mem_malloc`]): first the C library's `free`'s fast
/// path, with no registry (a block of the standard pool's reservation on a thread with a heap of
/// the pool, while `FAST_FREE` holds the pool's free word: only while `FAST_MEM` holds its key);
/// then, while `FAST_MEM` holds the key, the pool's `free` (null included: no reservation is at
/// address 0); otherwise the table's dispatch.
///
/// # Safety
/// As for [`DomainAllocator::free`] of the mem domain.
#[inline(never)]
unsafe fn mem_free(ptr: *mut u8) {
    let word = FAST_FREE.load(Ordering::Relaxed);
    // SAFETY: the mem domain's free word for its pool (or the off word); `ptr` is null or a live
    // block of the domain, freed once: with the word on, the pool is the domain's only allocator
    // and made it (a thread that read the word just before a replacement frees into the pool, as
    // one that loaded the old record does).
    if unsafe { POOL.free_fast_word(ptr, word) } == alloc_arena::WordFree::Done {
        return;
    }
    if FAST_MEM.load(Ordering::Relaxed) != NO_KEY {
        // SAFETY: with `FAST_MEM` set the pool made every block of the domain (the pool's free
        // takes null).
        return unsafe { mem_free_standard(ptr) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { mem_free_dispatched(ptr) }
}

/// [`mem_free`] while the fast path is off: the table's dispatch, out of line.
///
/// # Safety
/// As for [`mem_free`].
#[inline(never)]
unsafe fn mem_free_dispatched(ptr: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { MEM.free_dispatched(ptr) }
}

/// [`mem_free`] past its fast path while `FAST_MEM` holds the key: the C library's long way
/// (`free_standard_owned`: the block's pool by the registry, with the hardened default's whole
/// check), out of line. So a bad pointer gets the same report through `MEM.free` as through the
/// C library's `free`: one in the pools' reservation where no arena is, or in another
/// allocator's arenas (a block of the object domain, say), is reported, never handed to the
/// large-block chain and glibc.
///
/// # Safety
/// `FAST_MEM` holds the key (so the standard pools are the domain's allocator); `ptr` is null or
/// a live block of the domain, freed once, or a bad pointer the checks report.
#[inline(never)]
unsafe fn mem_free_standard(ptr: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { free_standard_owned(ptr, NO_KEY) }
}

/// The word of the C library's `free`: the standard pool's free word
/// ([`alloc_arena::free_word`]: its reservation of arenas with its fast key in bits 48 to 61)
/// while the mem domain's fast path is on ([`mem_fast_path`] gives a key), a value that passes
/// no test otherwise. `PoolAllocator::free_fast_word` tests a pointer with it and the calling
/// thread's cache in one go: in the reservation, whose every 1 MiB chunk is an arena of the pool
/// or reads as zeros (no other allocator takes arenas there), with a heap of the pool on the
/// thread. [`in_mem_reservation`] tells the first alone.
///
/// ```
/// use alloc_arena::WordFree;
/// use alloc_core::DomainAllocator;
/// use alloc_domains::{MEM, in_mem_reservation, mem_fast_free};
///
/// let p = MEM.malloc(64).unwrap();
/// let (pool, word) = mem_fast_free();
/// // The mem domain on its standard pool (its first allocation turned the fast path on), whose
/// // blocks lie in its reservation (where the OS granted one).
/// # #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
/// assert!(in_mem_reservation(p.as_ptr(), word));
/// // SAFETY: the word is the pool's; `p` is a live block of the mem domain, freed once: by the
/// // pool's fast path, or else by the domain.
/// let freed = unsafe { pool.free_fast_word(p.as_ptr(), word) };
/// # #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
/// assert_eq!(freed, WordFree::Done);
/// if freed != WordFree::Done {
///     // SAFETY: as above: not freed yet.
///     unsafe { MEM.free(p.as_ptr()) };
/// }
/// ```
#[inline(always)]
pub fn mem_fast_free() -> (&'static MemPool, u64) {
    (&POOL, FAST_FREE.load(Ordering::Relaxed))
}

/// Whether `ptr` lies in the address space the standard pool reserved for its arenas (in an
/// arena or not): a pointer there is never the C library's.
pub fn in_reserved_arenas(ptr: *const u8) -> bool {
    RESERVED.contains(ptr)
}

/// Whether `ptr` lies in the reservation that `word` (from [`mem_fast_free`]) names, with the
/// fast path on.
#[inline(always)]
pub fn in_mem_reservation(ptr: *const u8, word: u64) -> bool {
    alloc_arena::free_word_covers(ptr, word)
}

/// Whether the mem domain counts its statistics while its standard pool is its only allocator
/// (and has served it): then [`mem_fast_path`] gives no key, the handle's counting path calls
/// the pool directly, and the C library sends the pools' blocks ([`check_standard_live`]) to
/// [`MEM`](crate::MEM), which counts, and other pointers to glibc.
#[inline]
pub fn mem_counts_on_pool() -> bool {
    COUNTED_MEM.load(Ordering::Relaxed) != NO_KEY
}

/// The C library's `free` while the mem domain counts its statistics on its standard pools
/// ([`mem_counts_on_pool`]): as [`free_standard_checked`] (the hardened default's checks, glibc's
/// `free` for a pointer outside domalloc's arenas), the block counted as freed with its usable
/// size (asked before the free, as the domain's counting path asks it).
///
/// # Safety
/// As for [`free_standard_checked`], while [`mem_counts_on_pool`] holds.
pub unsafe fn free_standard_counted(ptr: *mut u8) {
    let Some(block) = NonNull::new(ptr) else {
        return;
    };
    let owner = standard_owner(ptr);
    let bytes = match owner {
        Standard::Outside if RESERVED.contains(ptr) => alloc_arena::report_no_arena("free", ptr),
        Standard::Outside => None,
        Standard::Other => alloc_arena::report_other_allocator("free", ptr),
        // The pool's usable size routes by the registry to the pool, or allocator below it,
        // that made the block, with the hardened default's check.
        _ => Some(pool_usable(block)),
    };
    // SAFETY: the caller's guarantee; each pool is handed only a pointer in its own arenas (the
    // small pool's into the thread's bin when it can, as the C library's fast path does), and
    // the spans take their own and hand anything else to glibc.
    unsafe {
        let done = match owner {
            Standard::Small => POOL.free_fast_in_arenas(ptr) || POOL.free_checked(ptr),
            Standard::Medium => MEDIUM.free_fast_in_arenas(ptr) || MEDIUM.free_checked(ptr),
            Standard::Large => LARGE.free_fast_in_arenas(ptr) || LARGE.free_checked(ptr),
            Standard::Other | Standard::Span | Standard::Outside => false,
        };
        if !done {
            SPANS.free(ptr);
        }
    }
    if let Some(bytes) = bytes {
        STATS[DomainId::MEM.index()].freed(bytes);
    }
}

/// The mem domain's sized free into its standard pool past the pool's sized fast path (a full
/// bin, another thread's block, a block above the small pool's threshold or aligned above 16
/// bytes): out of line and cold, so that the fast path inlined into every caller stays small
/// (cold: the inliner then keeps the fast path inlined whole; a free of a block above 1 KiB
/// pays a call for it, and saves the small pool's registry lookup: such a block is the medium
/// pool's chain's).
///
/// # Safety
/// As for `DomainAllocator::free_aligned` of the pool: a live block of it made with `layout`.
#[cold]
#[inline(never)]
unsafe fn pool_free_aligned_slow(ptr: NonNull<u8>, layout: Layout) {
    if layout.align() <= alloc_core::MIN_ALIGN && layout.size() > SMALL_POOL.threshold {
        // SAFETY: the caller's guarantee. The small pool serves a request of at most 16-byte
        // alignment above its threshold from its large-block allocator, the medium pool (whose
        // own chain goes on to the large pool and the spans), and never holds such a block
        // (realloc moves a block out of the pools when it grows past the threshold); so the
        // block is the medium pool's chain's, made with `layout`.
        return unsafe { MEDIUM.free_aligned(ptr, layout) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { POOL.free_aligned(ptr, layout) }
}

/// The C library's long way into the mem domain's standard pools, while they are its allocator
/// ([`mem_fast_path`] gives a key): `free` with the hardened default's whole check in whichever
/// of the three pools holds `ptr`, glibc's `free` for a pointer elsewhere.
///
/// # Safety
/// The mem domain's fast path is on; `ptr` is null, a live block of the mem domain, or a block
/// of glibc's; a bad pointer into the pools is caught (reported, then abort), not undefined.
pub unsafe fn free_standard_checked(ptr: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { free_standard_owned(ptr, NO_KEY) }
}

/// [`free_standard_checked`] given the registry's owner of `ptr`'s arena, as the pool's
/// `free_fast_routed` found it (0: no arena), or [`NO_KEY`] to look it up here: the C library's
/// `free` then reads the registry once.
///
/// # Safety
/// As for [`free_standard_checked`]; `owner` is `arena_owner(ptr)` or [`NO_KEY`].
pub unsafe fn free_standard_owned(ptr: *mut u8, owner: u32) {
    let owner = if owner == NO_KEY {
        alloc_arena::arena_owner(ptr)
    } else {
        owner
    };
    // SAFETY: the caller's guarantee; each pool is handed only a pointer in its own arenas, and
    // the spans take their own and hand anything else to glibc.
    unsafe {
        let done = match standard_of(owner) {
            Standard::Small => POOL.free_checked(ptr),
            Standard::Medium => MEDIUM.free_fast_in_arenas(ptr) || MEDIUM.free_checked(ptr),
            Standard::Large => LARGE.free_fast_in_arenas(ptr) || LARGE.free_checked(ptr),
            Standard::Other => alloc_arena::report_other_allocator("free", ptr),
            Standard::Outside if RESERVED.contains(ptr) => {
                alloc_arena::report_no_arena("free", ptr)
            }
            Standard::Span | Standard::Outside => false,
        };
        if !done {
            SPANS.free(ptr);
        }
    }
}

/// Whether the mem domain's medium pool serves `size` bytes (above the small pool's threshold, up
/// to its own): one compare of constants.
#[inline(always)]
const fn medium_size(size: usize) -> bool {
    size.wrapping_sub(SMALL_POOL.threshold + 1) < MEDIUM_POOL.threshold - SMALL_POOL.threshold
}

/// The C library's way to a block of the mem domain's medium pool for `size` bytes (1,025 to
/// 8,192), while the standard pools are the domain's allocator ([`mem_fast_path`] gives a
/// key): from the calling thread's bin of its class, with no call; `None`, having done
/// nothing, for any other size, a thread with no heap there yet, or an empty bin (then
/// [`malloc_standard_large`]).
#[inline(always)]
pub fn malloc_medium_fast(size: usize) -> Option<NonNull<u8>> {
    if !medium_size(size) {
        return None;
    }
    MEDIUM.malloc_bin_fast(size)
}

/// The C library's `realloc` of a block of the mem domain's medium pool to a size the medium
/// pool serves (1,025 bytes to 8 KiB), by the pool's fast realloc (in place within the class,
/// else moved within the medium pool, the old block freed into the thread's bin), after the
/// hardened default's whole check of the pointer, as the long way makes it: a pointer inside a
/// block or one of the last blocks freed into the thread's bin is reported there and the
/// process aborts. `None`, having done nothing, for any other pointer or size, or a thread with
/// no heap there (then the long way); `Some(None)` when there is no memory for the new block
/// (the old one is untouched).
///
/// # Safety
/// The mem domain's fast path is on; `ptr` is a live block of the mem domain or of glibc's, or a
/// bad pointer the checks refuse; on a `Some(Some(_))` answer other than `ptr`, `ptr` is not used
/// again.
#[inline]
pub unsafe fn realloc_medium_fast(ptr: *mut u8, size: usize) -> Option<Option<NonNull<u8>>> {
    if !medium_size(size) {
        return None;
    }
    // The hardened default's whole check, as the long way makes it (`check_standard_live`): a
    // pointer that does not start a block of a pool in use, or one among the last blocks freed
    // into the thread's bin, is reported here; false for a pointer outside the medium pool.
    if !MEDIUM.check_live(ptr, "realloc") {
        return None;
    }
    // SAFETY: the registry places `ptr` in the medium pool's arenas (`check_live`); the
    // caller's guarantee; a block that moves gets a medium block (the size is the pool's).
    unsafe { MEDIUM.realloc_in_arenas(ptr, size) }
}

/// The C library's way for a block of the mem domain's medium pool (1,025 bytes to 8 KiB), whose
/// arena the registry gave as `owner` on `free`'s fast path: into the calling thread's bin by the
/// pool's fast free, with its checks; false, having done nothing, for any other owner, and for
/// what that fast free refuses (then [`free_standard_owned`] takes it whole).
///
/// # Safety
/// As for [`free_standard_owned`].
#[inline(always)]
pub unsafe fn free_medium_owned(ptr: *mut u8, owner: u32) -> bool {
    // SAFETY: the registry places `ptr` in the medium pool's arenas (its id is the owner, which
    // is never 0); the caller's guarantee.
    owner != 0 && owner == MEDIUM.registry_id() && unsafe { MEDIUM.free_fast_in_arenas(ptr) }
}

/// The C library's long way into the mem domain's standard pools for a request above the
/// small pool's 1 KiB, while they are its allocator ([`mem_fast_path`] gives a key): the
/// pool of its size directly, not through each pool's large-block routing.
pub fn malloc_standard_large(size: usize) -> Option<NonNull<u8>> {
    if size <= MEDIUM_POOL.threshold {
        MEDIUM.malloc(size)
    } else if size <= LARGE_POOL.threshold {
        LARGE.malloc(size)
    } else {
        SPANS.malloc(size)
    }
}

/// The hardened default's whole check of a pointer the C library is handed (`realloc`,
/// `malloc_usable_size`: `op`) in the mem domain's standard pools and spans; returns whether the
/// pointer lies there (one registry lookup routes it), false for a pointer elsewhere (glibc's,
/// or another domain's). See [`free_standard_checked`].
pub fn check_standard_live(ptr: *const u8, op: &str) -> bool {
    match standard_owner(ptr) {
        Standard::Small => POOL.check_live(ptr, op),
        Standard::Medium => MEDIUM.check_live(ptr, op),
        Standard::Large => LARGE.check_live(ptr, op),
        Standard::Span => true,
        Standard::Other => alloc_arena::report_other_allocator(op, ptr),
        Standard::Outside => false,
    }
}

/// Turns the mem domain's fast path on now if the domain uses its standard pool alone (marking
/// the domain as having allocated, as its first allocation would): for a caller about to allocate
/// through the pool directly before any allocation went through the domain (the C library's
/// aligned entry points). Returns the key, [`NO_KEY`] if the domain has another allocator.
#[cold]
pub fn enable_mem_fast_path() -> u32 {
    start();
    if is_current(DomainId::MEM, &REC_POOL) {
        mark_used(DomainId::MEM);
        enable_fast_mem();
    }
    FAST_MEM.load(Ordering::Relaxed)
}

/// Whether `rec` is the current record of domain `id` (a comparison of addresses: nothing is
/// read from the record).
#[inline]
pub(super) fn is_current(id: DomainId, rec: &'static Installed) -> bool {
    ptr::eq(TABLE[id.index()].current.load(Ordering::Relaxed), rec)
}

/// The mem domain's `malloc_aligned` on its standard pool while it counts (`COUNTED_MEM` holds
/// `key`): the pool's fast path first, as with `FAST_MEM`, the request's size counted. Out of
/// line, so that the handle's inlined paths stay small.
#[inline(never)]
fn counted_malloc_aligned(key: u32, c: &Counters, layout: Layout) -> Option<NonNull<u8>> {
    let p = if layout.align() <= alloc_core::MIN_ALIGN
        // SAFETY: the key `COUNTED_MEM` holds is the pool's fast key.
        && let Some(p) = unsafe { POOL.malloc_fast(layout.size(), key) }
    {
        p
    } else {
        POOL.malloc_aligned(layout)?
    };
    c.made(layout.size());
    Some(p)
}

/// The mem domain's `free_aligned` on its standard pool while it counts (`COUNTED_MEM` holds a
/// key), the layout's size counted.
///
/// # Safety
/// As for `DomainAllocator::free_aligned`, on a block of the mem domain while `COUNTED_MEM`
/// holds a key (the pool made every block of the domain).
#[inline(never)]
unsafe fn counted_free_aligned(c: &Counters, ptr: NonNull<u8>, layout: Layout) {
    // SAFETY: the caller's guarantee.
    unsafe { POOL.free_aligned(ptr, layout) };
    c.freed(layout.size());
}

/// The size of the block `p` the pool's `malloc_fast` just returned for `size` bytes: the fast
/// key is only given to a pool of the fast paths' geometry (16-byte classes), whose block for
/// `size` (1 to the threshold: `malloc_fast` serves no other) holds `size` rounded up to the class
/// spacing, which is what its `usable_size` answers (checked in debug builds).
#[inline(always)]
fn fast_block_size(size: usize, p: NonNull<u8>) -> usize {
    let spacing = alloc_arena::PoolConfig::DEFAULT.spacing;
    let bytes = (size - 1) / spacing * spacing + spacing;
    debug_assert_eq!(bytes, pool_usable(p));
    bytes
}

/// The usable size of a live block of the mem domain's standard pool (its malloc family), for
/// the statistics: what the domain's ordinary path asks the pool for through its vtable.
#[inline]
fn pool_usable(p: NonNull<u8>) -> usize {
    // SAFETY: the callers pass a live block of the malloc family that `POOL` made.
    unsafe { POOL.usable_size(p) }.unwrap_or(0)
}

/// The usable size of a block of the malloc family that `alloc` made just now (0 if it cannot
/// tell), for the statistics.
#[inline]
fn usable(alloc: &'static DynAllocator, p: NonNull<u8>) -> usize {
    // SAFETY: `p` is a live block of the malloc family that `alloc` returned just now (its
    // caller's block, not freed before this call returns to it).
    unsafe { alloc.usable_size(p) }.unwrap_or(0)
}

/// Which of the mem domain's standard allocators holds a pointer, by one registry lookup.
pub(super) enum Standard {
    Small,
    Medium,
    Large,
    Span,
    /// Another allocator's arena (the object domain's pool, a user domain's).
    Other,
    /// No arena of domalloc's: glibc's.
    Outside,
}

pub(super) fn standard_owner(ptr: *const u8) -> Standard {
    standard_of(alloc_arena::arena_owner(ptr))
}

/// Which of the standard allocators has the registry id `owner` (0: none).
#[inline]
pub(super) fn standard_of(owner: u32) -> Standard {
    match owner {
        0 => Standard::Outside,
        o if o == POOL.registry_id() => Standard::Small,
        o if o == MEDIUM.registry_id() => Standard::Medium,
        o if o == LARGE.registry_id() => Standard::Large,
        o if o == SPANS.registry_id() => Standard::Span,
        _ => Standard::Other,
    }
}

/// Sets `FAST_OBJECT` if the object domain has served allocations through the standard object
/// pool, still uses it and does not count (the same rules as [`enable_fast_mem`]).
#[cold]
#[inline(never)]
fn enable_fast_object() {
    if let Some(_w) = WRITER.try_lock()
        && is_current(DomainId::OBJECT, &REC_OBJECT_POOL)
        && TABLE[DomainId::OBJECT.index()].used.load(Ordering::Relaxed)
        && !STATS[DomainId::OBJECT.index()].on()
    {
        FAST_OBJECT.store(true, Ordering::Relaxed);
    }
}

/// Sets `FAST_MEM` (`COUNTED_MEM` while the domain counts its statistics) if the mem domain has
/// served allocations through the standard pool and still uses it. A writer holding the lock (it
/// may allocate through this very domain) means "not now": the next allocation tries again.
#[cold]
#[inline(never)]
pub(super) fn enable_fast_mem() {
    if let Some(_w) = WRITER.try_lock()
        && is_current(DomainId::MEM, &REC_POOL)
        && TABLE[DomainId::MEM.index()].used.load(Ordering::Relaxed)
    {
        if STATS[DomainId::MEM.index()].on() {
            COUNTED_MEM.store(POOL.fast_key(), Ordering::Relaxed);
        } else {
            let key = POOL.fast_key();
            FAST_MEM.store(key, Ordering::Relaxed);
            FAST_FREE.store(fast_free_word(key), Ordering::Relaxed);
        }
    }
}

/// The raw domain (`PyMem_RawMalloc` and friends).
pub const RAW: Domain = Domain(DomainId::RAW);
/// The mem domain (`PyMem_Malloc` and friends).
pub const MEM: Domain = Domain(DomainId::MEM);
/// The object domain (`PyObject_Malloc` and friends).
pub const OBJECT: Domain = Domain(DomainId::OBJECT);

// SAFETY: every block comes from an allocator installed in the domain (each upholds the contract);
// every free, realloc and size query goes to the allocator that made the block, by the rule in the
// module documentation.
unsafe impl DomainAllocator for Domain {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        if self.0 == DomainId::MEM {
            return mem_malloc(size);
        }
        if self.0 == DomainId::OBJECT {
            return object_malloc(size);
        }
        self.malloc_dispatched(size)
    }
    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        if self.fast_mem() {
            return POOL.calloc(nelem, elsize);
        }
        if self.fast_object() {
            return OBJECT_POOL.calloc(nelem, elsize);
        }
        if let Some((_, c)) = self.counted_key() {
            let p = POOL.calloc(nelem, elsize)?;
            c.made(pool_usable(p));
            return Some(p);
        }
        let (alloc, counters) = self.alloc_side();
        self.made_counted(alloc.calloc(nelem, elsize), counters, |p| usable(alloc, p))
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        if self.fast_object() {
            // SAFETY: the caller's guarantee; with `FAST_OBJECT` set the object pool made every
            // block of the domain (it is the domain's only allocator).
            return unsafe { OBJECT_POOL.realloc(ptr, new_size) };
        }
        let key = self.fast_key();
        if key != NO_KEY {
            // SAFETY: the caller's guarantee; with `FAST_MEM` set, the pool made every block of
            // the domain (it is the domain's only allocator), and the key is its fast key.
            return unsafe {
                POOL.realloc_fast(ptr, new_size, key)
                    .unwrap_or_else(|| POOL.realloc(ptr, new_size))
            };
        }
        if let Some((_, c)) = self.counted_key() {
            // SAFETY: not null (checked above); with `COUNTED_MEM` set the pool made every block
            // of the domain (as with `FAST_MEM`).
            let old = pool_usable(unsafe { NonNull::new_unchecked(ptr) });
            // SAFETY: as above.
            let q = unsafe { POOL.realloc(ptr, new_size) }?;
            c.resized(old, pool_usable(q));
            return Some(q);
        }
        let (owner, counters) = self.owner_counted(ptr);
        let Some(c) = counters else {
            // SAFETY: the caller's guarantee; the block goes to the allocator that made it.
            return unsafe { owner.realloc(ptr, new_size) };
        };
        // SAFETY: the caller's guarantee: a live block of the malloc family, which `owner` made
        // (non-null: checked above).
        let old = unsafe { owner.usable_size(NonNull::new_unchecked(ptr)) }.unwrap_or(0);
        // SAFETY: as above.
        let q = unsafe { owner.realloc(ptr, new_size) }?;
        c.resized(old, usable(owner, q));
        Some(q)
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        if self.0 == DomainId::MEM {
            // SAFETY: the caller's guarantee.
            return unsafe { mem_free(ptr) };
        }
        if self.0 == DomainId::OBJECT {
            // SAFETY: the caller's guarantee.
            return unsafe { object_free(ptr) };
        }
        // SAFETY: the caller's guarantee.
        unsafe { self.free_dispatched(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        if self.fast_mem() {
            // SAFETY: as for realloc.
            return unsafe { POOL.free_sized(ptr, size) };
        }
        if let Some((_, c)) = self.counted_key() {
            let bytes = pool_usable(ptr);
            // SAFETY: as for realloc, with `COUNTED_MEM`.
            unsafe { POOL.free_sized(ptr, size) };
            c.freed(bytes);
            return;
        }
        if let Some(owner) = self.freer(ptr.as_ptr()) {
            // SAFETY: as for realloc.
            unsafe { self.free_counted(owner, ptr, |o| o.free_sized(ptr, size)) }
        }
    }
    #[inline(always)]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let key = self.fast_key();
        if key != NO_KEY {
            // The pool's own fast path first (the key is its), as the C library's `malloc` does.
            if layout.align() <= alloc_core::MIN_ALIGN
                // SAFETY: the key `FAST_MEM` holds is the pool's fast key.
                && let Some(p) = unsafe { POOL.malloc_fast(layout.size(), key) }
            {
                return Some(p);
            }
            return POOL.malloc_aligned(layout);
        }
        self.malloc_aligned_dyn(layout)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let (alloc, counters) = self.alloc_side();
        self.made_counted(alloc.calloc_aligned(layout), counters, |_| layout.size())
    }
    #[inline(always)]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        let key = self.fast_key();
        if key != NO_KEY {
            // The pool's sized fast path first (the key is its; it reads no registry, and no
            // geometry: the size gives the class), then its whole sized free.
            if layout.align() <= alloc_core::MIN_ALIGN
                // SAFETY: as for realloc; the key `FAST_MEM` holds is the pool's fast key; a
                // block of at most 16-byte alignment was made for `layout.size()` bytes by the
                // pool (the domain's only allocator).
                && unsafe { POOL.free_sized_fast(ptr, layout.size(), key) }
            {
                return;
            }
            // SAFETY: as for realloc.
            return unsafe { pool_free_aligned_slow(ptr, layout) };
        }
        // SAFETY: as for realloc.
        unsafe { self.free_aligned_dyn(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let key = self.fast_key();
        if key != NO_KEY && layout.align() <= alloc_core::MIN_ALIGN {
            // The pool's fast resize first (the key is its), as the C library's `realloc` does:
            // a block of at most 16-byte alignment is a plain block of the pools.
            // SAFETY: the caller's guarantee; with `FAST_MEM` set the pool made every block of
            // the domain; the key `FAST_MEM` holds is the pool's fast key.
            if let Some(q) = unsafe { POOL.realloc_fast(ptr.as_ptr(), new_size, key) } {
                return q;
            }
        }
        let (owner, counters) = self.owner_counted(ptr.as_ptr());
        // SAFETY: as for realloc.
        let q = unsafe { owner.realloc_aligned(ptr, layout, new_size) }?;
        if let Some(c) = counters {
            c.resized(layout.size(), new_size);
        }
        Some(q)
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        if self.fast_mem() {
            // SAFETY: as for realloc.
            return unsafe { POOL.usable_size(ptr) };
        }
        // SAFETY: as for realloc.
        unsafe { owner_of(self.0, ptr.as_ptr()).usable_size(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        chain_answer(self.0, |a| a.owns(ptr))
    }
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        chain_answer(self.0, |a| a.starts_block(ptr))
    }
    fn name(&self) -> &str {
        if slot(self.0).is_err() {
            return VACANT.name();
        }
        TABLE[self.0.index()].name()
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn core::fmt::Write) -> bool {
        owner_of(self.0, ptr).write_origin(ptr, out)
    }
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn core::fmt::Write,
    ) -> bool {
        owner_of(self.0, ptr).write_origin_aligned(ptr, layout, out)
    }
}
