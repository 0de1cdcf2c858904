//! `Guarded<A>`: CPython's debug hooks (`PyMem_SetupDebugHooks`) as a decorator.
//!
//! Every block gets a header and a trailer around the bytes the caller asked for, laid out as
//! CPython's debug allocator does (S is the word size, 8 bytes here):
//!
//! ```text
//!   raw                                  p (returned)                 tail = p + n
//!   |  size n (S bytes, big-endian) | id | 0xFD x (S-1) | n bytes: 0xCD on malloc | 0xFD x S | serial (S bytes) |
//!                                   ^ API id byte ('r', 'm', 'o', ...)
//! ```
//!
//! * new memory is filled with `CLEAN_BYTE` (0xCD), freed memory with `DEAD_BYTE` (0xDD);
//! * on every free and realloc the block is checked: the API id (a block freed through another
//!   domain than the one that made it), the leading pad (buffer underflow), the trailing pad (buffer
//!   overflow), the freed pattern (double free), and whether the inner allocator owns the block at
//!   all (a pointer it never made), plus the size on a sized free;
//! * a violation produces a report naming what was violated, the address, the requested size, the
//!   serial number, the API ids, the damaged guard bytes with their offsets, the first and last bytes
//!   of the block and, when a tracing allocator is stacked under it, where the block was allocated;
//!   then the configured [`Action`]: abort (default), panic, or record and continue;
//! * optionally a bounded quarantine keeps freed blocks (filled with 0xDD) out of the inner allocator
//!   for a while; a write into one is found when it leaves the quarantine, and a double free of a
//!   quarantined block is always recognised.

use core::alloc::Layout;
use core::cell::Cell;
use core::fmt::{self, Write as _};
use core::ptr::{self, NonNull};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use alloc_core::{DomainAllocator, MIN_ALIGN, Ownership};

use alloc_core::lock::Lock;

use crate::instance::InstanceId;

mod check;
mod layout;
mod quarantine;
mod report;
mod serials;

use layout::*;
use quarantine::*;
use report::*;
pub use report::{Violation, ViolationKind};
pub use serials::SERIAL_BATCH;

/// The guard bytes around every block (CPython's `FORBIDDENBYTE`).
pub const FORBIDDEN_BYTE: u8 = 0xFD;
/// The fill of newly allocated memory (CPython's `CLEANBYTE`).
pub const CLEAN_BYTE: u8 = 0xCD;
/// The fill of freed memory (CPython's `DEADBYTE`).
pub const DEAD_BYTE: u8 = 0xDD;

const WORD: usize = size_of::<usize>();
/// Bytes before the block: size, API id, `WORD - 1` forbidden bytes.
const HEADER: usize = 2 * WORD;
/// Bytes after the block: `WORD` forbidden bytes, then the serial number.
const TRAILER: usize = 2 * WORD;
/// The most blocks a quarantine can hold.
pub const MAX_QUARANTINE: usize = 256;
/// Violations kept by [`Action::Record`] (the oldest are dropped first; all are counted).
pub const RECORDED_VIOLATIONS: usize = 16;
const REPORT_BYTES: usize = 2048;
/// Sizes up to this are trusted without asking the inner allocator for the block's usable size.
const SIZE_TRUSTED: usize = 4096;
/// No aligned prefix is larger than this (alignments past it are refused).
const MAX_ALIGN_PREFIX: usize = 1 << 20;
const _: () = assert!(HEADER == MIN_ALIGN, "the header keeps blocks 16-aligned");

/// What a [`Guarded`] allocator does after reporting a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Write the report to standard error and abort the process (CPython's behaviour).
    #[default]
    Abort,
    /// Panic with the report as the message. Not for `#[global_allocator]`: a global allocator
    /// must not unwind.
    Panic,
    /// Keep the report (see [`Guarded::violations`]) and continue. The damaged block is withheld
    /// from the inner allocator, whose own structures it might corrupt, until
    /// [`Guarded::release_withheld`] or the drop of the allocator.
    Record,
}

/// CPython's debug hooks around any allocator: guard bytes, fill patterns, serial numbers and API
/// ids, checked on every free and realloc. See the module documentation for the layout.
///
/// ```
/// use alloc_core::{DomainAllocator, System};
/// use alloc_debug::{Action, Guarded, ViolationKind};
///
/// let mem = Guarded::new(System).with_api(b'm').with_action(Action::Record);
/// let p = mem.malloc(16).unwrap();
/// // SAFETY: deliberately one byte past the block, then freed once.
/// unsafe {
///     p.as_ptr().add(16).write(b'x');
///     mem.free(p.as_ptr());
/// }
/// let v = &mem.violations()[0];
/// assert_eq!(v.kind, ViolationKind::BufferOverflow);
/// assert!(v.report().contains("at tail+0: 0x78 *** OUCH"));
/// ```
pub struct Guarded<A: DomainAllocator> {
    inner: A,
    claims: crate::claims::Claims,
    api: u8,
    action: Action,
    quarantine_capacity: usize,
    /// Serial numbers handed out so far, in batches of [`SERIAL_BATCH`] (see [`Serials`]).
    serial: AtomicU64,
    /// Names this decorator in a thread's batch of serials.
    id: InstanceId,
    records: Lock<Records>,
    quarantine: Lock<Quarantine>,
}

impl<A: DomainAllocator> Guarded<A> {
    /// Guards `inner` with API id `'m'`, the abort action and no quarantine.
    pub const fn new(inner: A) -> Self {
        Guarded {
            inner,
            claims: crate::claims::Claims::new(),
            api: b'm',
            action: Action::Abort,
            quarantine_capacity: 0,
            serial: AtomicU64::new(0),
            id: InstanceId::new(),
            records: Lock::new(Records {
                ring: [const { None }; RECORDED_VIOLATIONS],
                next: 0,
                total: 0,
                released: 0,
            }),
            quarantine: Lock::new(Quarantine {
                slots: [None; MAX_QUARANTINE],
                head: 0,
                len: 0,
            }),
        }
    }

    /// The API id byte written into every block (`'r'`, `'m'`, `'o'` for CPython's raw, mem and
    /// object domains); a block freed through a `Guarded` with another id is reported.
    pub const fn with_api(mut self, api: u8) -> Self {
        self.api = api;
        self
    }

    /// What to do after reporting a violation.
    pub const fn with_action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }

    /// Keeps up to `blocks` freed blocks (at most [`MAX_QUARANTINE`]) filled with 0xDD before
    /// giving them back to the inner allocator: writes after free are then detected, and a double
    /// free of a quarantined block is always recognised.
    pub const fn with_quarantine(mut self, blocks: usize) -> Self {
        self.quarantine_capacity = if blocks > MAX_QUARANTINE {
            MAX_QUARANTINE
        } else {
            blocks
        };
        self
    }

    /// Answers [`owns`](DomainAllocator::owns) exactly from the first block, as
    /// [`track_ownership`](DomainAllocator::track_ownership) would from the call on: every live
    /// block is remembered, at two atomic read-modify-writes per block. A domain turns this on
    /// when it installs the decorator; use it for a static that a domain will install.
    pub const fn with_ownership_tracking(mut self) -> Self {
        self.claims.track_from_start();
        self
    }

    /// The API id byte.
    pub fn api(&self) -> u8 {
        self.api
    }

    /// The wrapped allocator.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// The violations kept under [`Action::Record`], oldest first (at most
    /// [`RECORDED_VIOLATIONS`]; see [`violation_count`](Self::violation_count) for all).
    pub fn violations(&self) -> Vec<Violation> {
        let r = self.records.lock();
        (0..RECORDED_VIOLATIONS)
            .filter_map(|i| r.ring[(r.next + i) % RECORDED_VIOLATIONS].clone())
            .collect()
    }

    /// Every violation found so far, including those no longer kept.
    pub fn violation_count(&self) -> u64 {
        self.records.lock().total
    }

    /// Damaged blocks withheld under [`Action::Record`] that went back to the inner allocator
    /// because their record was pushed out of the ring (the oldest first).
    pub fn withheld_released_early(&self) -> u64 {
        self.records.lock().released
    }
}

impl<A: DomainAllocator> Guarded<A> {
    #[inline(always)]
    fn alloc_plain(&self, n: usize, zeroed: bool) -> Option<NonNull<u8>> {
        if n > SIZE_MASK {
            return None;
        }
        let total = n + HEADER + TRAILER;
        let raw = if zeroed {
            self.inner.calloc(1, total)?
        } else {
            self.inner.malloc(total)?
        };
        // SAFETY: `raw` is a fresh block of `total` bytes.
        unsafe {
            let data = raw.as_ptr().add(HEADER);
            self.dress(data, n, MIN_ALIGN, !zeroed);
            if !self.claim(data) {
                self.inner.free_sized(raw, total);
                return None;
            }
            Some(NonNull::new_unchecked(data))
        }
    }
}

impl<A: DomainAllocator> Drop for Guarded<A> {
    fn drop(&mut self) {
        // Quarantined and withheld blocks go back to the inner allocator.
        self.flush_quarantine();
        self.release_withheld();
    }
}

// SAFETY: data blocks lie inside inner blocks of `n + 32` bytes (or `prefix + n + 16` for aligned
// ones) from an allocator that upholds the contract; the data starts 16 bytes (or the alignment)
// into a block aligned to 16 (or the alignment), so it keeps the alignment; realloc copies
// `min(old, new)` bytes into a fresh block; calloc's data comes from the inner calloc, zeroed;
// usable_size answers the requested size.
unsafe impl<A: DomainAllocator> DomainAllocator for Guarded<A> {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.alloc_plain(size, false)
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        let size = alloc_core::checked_array_size(nelem, elsize).ok()?;
        self.alloc_plain(size, true)
    }

    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        // SAFETY: the program passes a block of ours (the contract); `verify` checks it.
        let (n, prefix) = unsafe { self.verify("realloc", ptr, None, HEADER) }?;
        // Always move, as a fresh serial and a fresh address catch stale pointers sooner.
        let new = self.malloc(new_size)?;
        // SAFETY: both blocks are live and distinct; `n` bytes are readable at `ptr`.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new.as_ptr(), n.min(new_size));
            self.bury_found(ptr, n, prefix);
        }
        Some(new)
    }

    unsafe fn free(&self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the program passes a block of ours (the contract); `verify` checks it.
        if let Some((n, prefix)) = unsafe { self.verify("free", ptr, None, HEADER) } {
            // SAFETY: a checked live block.
            unsafe { self.bury_found(ptr, n, prefix) };
        }
    }

    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        let p = ptr.as_ptr();
        // SAFETY: the program passes a block of ours (the contract); `verify` checks it.
        if let Some((n, prefix)) = unsafe { self.verify("free", p, Some(size), HEADER) } {
            // SAFETY: a checked live block.
            unsafe { self.bury_found(p, n, prefix) };
        }
    }

    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        // Small alignments are `malloc` blocks here (zeroed by `calloc`, not 0xCD first).
        alloc_core::calloc_aligned_via_calloc(self, layout)
    }

    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            return self.malloc(layout.size());
        }
        if layout.align() > MAX_ALIGN_PREFIX || layout.size() > SIZE_MASK {
            return None;
        }
        let prefix = aligned_prefix(layout.align());
        let inner = aligned_inner(layout.size(), layout.align())?;
        let raw = self.inner.malloc_aligned(inner)?;
        // SAFETY: a fresh block of `inner.size()` bytes; the data lies `prefix` bytes in.
        unsafe {
            raw.as_ptr().write_bytes(FORBIDDEN_BYTE, prefix - HEADER);
            let data = raw.as_ptr().add(prefix);
            self.dress(data, layout.size(), layout.align(), true);
            if !self.claim(data) {
                self.inner.free_aligned(raw, inner);
                return None;
            }
            Some(NonNull::new_unchecked(data))
        }
    }

    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: small alignments come from malloc.
            return unsafe { self.free_sized(ptr, layout.size()) };
        }
        let p = ptr.as_ptr();
        // Above MIN_ALIGN (checked above), so more than the header alone.
        let prefix = aligned_prefix(layout.align());
        // SAFETY: the program passes a block of ours made with `layout`; `verify` checks it.
        if let Some((n, _)) = unsafe { self.verify("free", p, Some(layout.size()), prefix) } {
            let inner = aligned_inner(n, layout.align());
            // SAFETY: a checked live block starting `prefix` bytes before `p`.
            unsafe { self.bury(p.sub(prefix), p, prefix + n + TRAILER, inner) };
        }
    }

    // `realloc_aligned` is the provided one: allocate, copy, `free_aligned` (which checks).

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        // Checked like a free (CPython's hooks do not, but a size read from a freed or damaged
        // header would be wrong): a block freed before, another API's, or a damaged one is
        // reported; the answer is the size the program asked for.
        // SAFETY: the program passes a block of ours (the contract); `verify` checks it.
        unsafe { self.verify("malloc_usable_size", ptr.as_ptr(), None, HEADER) }.map(|(n, _)| n)
    }

    /// Once ownership is tracked ([`track_ownership`](DomainAllocator::track_ownership), or
    /// [`with_ownership_tracking`](Guarded::with_ownership_tracking)), exact and reading no
    /// memory: every live block this allocator made is remembered, so a block the inner allocator
    /// made directly (before this one was stacked on it), or another decorator's, is never
    /// claimed; domains route frees by this answer. Before, `Unknown`.
    fn owns(&self, ptr: *const u8) -> Ownership {
        self.claims.owns(ptr)
    }

    fn track_ownership(&self) -> bool {
        // Both: a block whose inner block's ownership is known is checked for being foreign.
        let inner = self.inner.track_ownership();
        self.claims.track() && inner
    }

    fn name(&self) -> &str {
        "guarded"
    }

    /// For a block of the `malloc` family (whose inner block starts the header before it); a
    /// block of the aligned family with a larger alignment starts its inner block further back,
    /// which [`write_origin_aligned`](DomainAllocator::write_origin_aligned) finds by its layout.
    fn write_origin(&self, ptr: *const u8, out: &mut dyn fmt::Write) -> bool {
        self.inner.write_origin(ptr.wrapping_sub(HEADER), out)
    }

    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn fmt::Write,
    ) -> bool {
        if layout.align() <= MIN_ALIGN {
            // Small alignments are `malloc` blocks here.
            return self.write_origin(ptr, out);
        }
        let prefix = aligned_prefix(layout.align());
        aligned_inner(layout.size(), layout.align()).is_some_and(|inner| {
            self.inner
                .write_origin_aligned(ptr.wrapping_sub(prefix), inner, out)
        })
    }
    fn prepare_fork(&self) {
        // The three locks are leaves (none is held while another is taken, or while the inner
        // allocator is called), so any order is deadlock-free; inner last.
        self.records.acquire_for_fork();
        self.quarantine.acquire_for_fork();
        self.claims.prepare_fork();
        self.inner.prepare_fork();
    }
    unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee: on the thread that ran `prepare_fork`.
        unsafe {
            self.inner.after_fork_parent();
            self.claims.after_fork();
            self.quarantine.release_after_fork();
            self.records.release_after_fork();
        }
    }
    unsafe fn after_fork_child(&self) {
        // SAFETY: as in `after_fork_parent`, in the child.
        unsafe {
            self.inner.after_fork_child();
            self.claims.after_fork();
            self.quarantine.release_after_fork();
            self.records.release_after_fork();
        }
    }
}
