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
/// The header's size word holds the requested size below this bit and, above it, the base-2
/// logarithm of the alignment of a block of the aligned family (0 for `malloc`'s blocks, whose
/// header is CPython's): a free that is not given the layout (the C library's `free` of a
/// `posix_memalign` block) finds the inner block by it. Larger sizes are refused.
const SHIFT_AT: u32 = 56;
const SIZE_MASK: usize = (1 << SHIFT_AT) - 1;

/// The size and the prefix (the distance from the inner block's start to the data) a size word
/// records; `None` for an alignment no block of ours has (a damaged header).
fn split_size_word(word: usize) -> (usize, Option<usize>) {
    let n = word & SIZE_MASK;
    let prefix = match (word >> SHIFT_AT) as u32 {
        0 => Some(HEADER),
        s if (MIN_ALIGN.trailing_zeros() + 1..=MAX_ALIGN_PREFIX.trailing_zeros()).contains(&s) => {
            Some(aligned_prefix(1 << s))
        }
        _ => None,
    };
    (n, prefix)
}

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

/// What was violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// The bytes after the block were overwritten.
    BufferOverflow,
    /// The bytes before the block were overwritten.
    BufferUnderflow,
    /// The block was made through one API (domain) and freed or resized through another.
    ApiMismatch {
        /// The API id byte in the block's header.
        allocated: u8,
        /// The API id of the allocator that checked it.
        verified: u8,
    },
    /// The block was already freed.
    DoubleFree,
    /// The pointer is no live block of this allocator: it never made it (another allocator's
    /// block, a pointer inside a block), or it was freed where the freed pattern cannot be read.
    ForeignPointer,
    /// A freed block (in the quarantine) was written to.
    UseAfterFree,
    /// A sized free gave another size than the one the block was made with.
    WrongSize {
        /// The size recorded in the block's header.
        recorded: usize,
        /// The size the caller passed.
        given: usize,
    },
}

impl ViolationKind {
    /// CPython's words for it, as in its fatal error line.
    pub fn describe(&self) -> &'static str {
        match self {
            ViolationKind::BufferOverflow => "bad trailing pad byte (buffer overflow)",
            ViolationKind::BufferUnderflow => "bad leading pad byte (buffer underflow)",
            ViolationKind::ApiMismatch { .. } => "bad ID (API misuse)",
            ViolationKind::DoubleFree => "the block was already freed (double free)",
            ViolationKind::ForeignPointer => {
                "the pointer is not a live block of this allocator (never allocated by it, or freed)"
            }
            ViolationKind::UseAfterFree => "a freed block was written to (use after free)",
            ViolationKind::WrongSize { .. } => "sized free with a size the block was not made with",
        }
    }
}

/// One detected violation: the facts, and the report as text.
#[derive(Clone)]
pub struct Violation {
    /// What was violated.
    pub kind: ViolationKind,
    /// The block's address (the pointer the program holds).
    pub address: usize,
    /// The size originally requested, when the header could be trusted (0 otherwise).
    pub size: usize,
    /// The block's serial number (the Nth call to malloc/realloc of this allocator), when known.
    pub serial: u64,
    /// The API id of the allocator that found it.
    pub api: u8,
    text: [u8; REPORT_BYTES],
    text_len: usize,
    /// The damaged block, withheld from the inner allocator under [`Action::Record`] until
    /// [`Guarded::release_withheld`] (or the drop of the allocator).
    withheld: Option<Quarantined>,
}

// SAFETY: a violation's only pointer is the withheld block handle, used only by the allocator that
// recorded it, under its lock; a copy handed to the program is plain data.
unsafe impl Send for Violation {}
// SAFETY: as above; a shared violation is only read.
unsafe impl Sync for Violation {}

impl Violation {
    /// The full report, as written to standard error under [`Action::Abort`].
    pub fn report(&self) -> &str {
        core::str::from_utf8(&self.text[..self.text_len]).unwrap_or("<report not UTF-8>")
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Violation")
            .field("kind", &self.kind)
            .field("address", &format_args!("{:#x}", self.address))
            .field("size", &self.size)
            .field("serial", &self.serial)
            .field("api", &(self.api as char))
            .finish()
    }
}

/// A fixed buffer the report is formatted into: reporting must not allocate (the allocator may be
/// the global one, or broken). Text past the end is cut.
struct Text {
    buf: [u8; REPORT_BYTES],
    len: usize,
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = REPORT_BYTES - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

// SAFETY: the only pointer in a record is a withheld block, owned by the record (nothing else
// refers to it); whichever thread holds the records' lock may release it.
unsafe impl Send for Records {}

struct Records {
    ring: [Option<Violation>; RECORDED_VIOLATIONS],
    next: usize,
    total: u64,
    /// Withheld blocks released because their record left the ring.
    released: u64,
}

#[derive(Clone, Copy)]
struct Quarantined {
    raw: *mut u8,
    data: *mut u8,
    /// Bytes filled with `DEAD_BYTE`, from `raw`.
    total: usize,
    /// The inner layout for aligned blocks (`None`: a plain block of `total` bytes).
    aligned: Option<Layout>,
}

struct Quarantine {
    slots: [Option<Quarantined>; MAX_QUARANTINE],
    head: usize,
    len: usize,
}

// SAFETY: the pointers are blocks owned by the quarantine (freed by the program, not yet given to
// the inner allocator); whichever thread holds the lock may release them.
unsafe impl Send for Quarantine {}

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

/// Big-endian, as CPython writes the size and serial.
///
/// # Safety
/// `at` is valid for `WORD` byte writes.
#[inline]
unsafe fn write_word(at: *mut u8, value: u64) {
    let bytes = (value as usize).to_be_bytes();
    // SAFETY: the caller's guarantee.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), at, WORD) };
}

/// # Safety
/// `at` is valid for `WORD` byte reads.
#[inline]
unsafe fn read_word(at: *const u8) -> usize {
    let mut bytes = [0u8; WORD];
    // SAFETY: the caller's guarantee.
    unsafe { ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), WORD) };
    usize::from_be_bytes(bytes)
}

/// # Safety
/// `[at, at + len)` is readable; for `len == 7` (the lead guard) so is the byte before `at`.
#[inline]
unsafe fn all_are(at: *const u8, len: usize, byte: u8) -> bool {
    let pattern = u64::from_ne_bytes([byte; 8]);
    // The guards checked on every free are 7 and 8 bytes long: one unaligned word each.
    if len == WORD {
        // SAFETY: the caller's guarantee: `len` readable bytes at `at`.
        return unsafe { at.cast::<u64>().read_unaligned() } == pattern;
    }
    if len == WORD - 1 {
        // The lead guard: the byte before it is the API id, in the same header, so the word that
        // ends with the guard is readable; the id is compared as equal to itself.
        // SAFETY: the caller's guarantee, and the header byte before `at` (see above).
        let w = unsafe { at.sub(1).cast::<[u8; 8]>().read_unaligned() };
        let mut want = [byte; 8];
        want[0] = w[0];
        return w == want;
    }
    // SAFETY: the caller's guarantee.
    let bytes = unsafe { core::slice::from_raw_parts(at, len) };
    let mut chunks = bytes.chunks_exact(8);
    chunks.all(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])) == pattern)
        && chunks.remainder().iter().all(|&b| b == byte)
}

/// The prefix before the data of an aligned block: the alignment itself (the header is its last
/// 16 bytes, the rest forbidden bytes).
fn aligned_prefix(align: usize) -> usize {
    align.max(HEADER)
}

/// The inner block of an aligned block of `size` bytes made with `align` (above `MIN_ALIGN`): the
/// prefix, the data and the trailer, aligned as asked; `None` past the address space.
fn aligned_inner(size: usize, align: usize) -> Option<Layout> {
    let total = aligned_prefix(align)
        .checked_add(size)?
        .checked_add(TRAILER)?;
    Layout::from_size_align(total, align).ok()
}

/// Serial numbers are taken from a decorator's counter this many at a time, by each thread.
pub const SERIAL_BATCH: u64 = 64;

/// A thread's batch of serial numbers: `next..end` of the decorator numbered `owner`.
#[derive(Clone, Copy)]
struct Serials {
    owner: u64,
    next: u64,
    end: u64,
}

std::thread_local! {
    // `const`, `Copy`, no destructor: reading it never allocates, even during thread exit.
    static SERIALS: Cell<Serials> = const { Cell::new(Serials { owner: 0, next: 0, end: 0 }) };
}

impl<A: DomainAllocator> Guarded<A> {
    /// The next serial number: unique to this decorator, increasing along each thread, and, in a
    /// program with one allocating thread, exactly the count of calls to malloc and realloc
    /// (CPython's "call #N"). Each thread takes [`SERIAL_BATCH`] numbers at a time from the
    /// shared counter (one atomic read-modify-write per batch, not per block), so with several
    /// threads the numbers interleave by batch, and a thread that alternates between decorators
    /// skips the rest of its batch at each change.
    #[inline]
    fn next_serial(&self) -> u64 {
        let id = self.id.get();
        SERIALS.with(|cell| {
            let mut b = cell.get();
            if b.owner != id || b.next == b.end {
                let start = self.serial.fetch_add(SERIAL_BATCH, Ordering::Relaxed) + 1;
                b = Serials {
                    owner: id,
                    next: start,
                    end: start + SERIAL_BATCH,
                };
            }
            let serial = b.next;
            b.next += 1;
            cell.set(b);
            serial
        })
    }

    /// Writes header, fill and trailer around `n` bytes at `data` (`n` at most `SIZE_MASK`),
    /// a block of the aligned family if `align` is above `MIN_ALIGN`.
    ///
    /// # Safety
    /// `[data - HEADER, data + n + TRAILER)` is a fresh block of ours.
    #[inline]
    unsafe fn dress(&self, data: *mut u8, n: usize, align: usize, fill: bool) {
        let serial = self.next_serial();
        let shift = if align > MIN_ALIGN {
            align.trailing_zeros()
        } else {
            0
        };
        // SAFETY: the caller's guarantee covers every byte written.
        unsafe {
            write_word(data.sub(HEADER), (n | (shift as usize) << SHIFT_AT) as u64);
            *data.sub(WORD) = self.api;
            data.sub(WORD - 1).write_bytes(FORBIDDEN_BYTE, WORD - 1);
            if fill {
                data.write_bytes(CLEAN_BYTE, n);
            }
            data.add(n).write_bytes(FORBIDDEN_BYTE, WORD);
            write_word(data.add(n + WORD), serial);
        }
    }

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

    /// Remembers `data` as a live block of ours (see `claims`); false if there was no memory to
    /// remember it by.
    fn claim(&self, data: *mut u8) -> bool {
        self.claims.made(data as usize)
    }

    /// Checks the block at `data`: ownership, freed pattern, API id, leading and trailing pads, and
    /// the size of a sized free. Returns the requested size and the block's prefix (the distance
    /// from its inner block's start to `data`), or what is wrong.
    ///
    /// `prefix` is the prefix the caller's family implies: `HEADER` for the `malloc` family, which
    /// also takes a block of the aligned family (its header records its alignment), the
    /// alignment's for `free_aligned`, which must match the block's. `plain` says the size may be
    /// compared with the inner block's (a block of the `malloc` family given to its own calls).
    ///
    /// # Safety
    /// If the inner allocator does not disown it, `data - HEADER` starts a readable header and, if
    /// the size in it is sane, the trailer after it is readable.
    #[inline(always)]
    unsafe fn check(
        &self,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
        plain: bool,
    ) -> Result<(usize, usize), ViolationKind> {
        let raw = data.wrapping_sub(HEADER);
        let remembered = match self.claims.live(data) {
            // A live block of ours (remembered): its header is readable.
            Ownership::Owned => true,
            // Not a live block of ours: freed already, another allocator's, or no block at all.
            // SAFETY: `not_live` reads only memory known to be mapped.
            Ownership::NotOwned => return Err(unsafe { self.not_live(data) }),
            // Blocks are not remembered: where the inner allocator says none of its blocks starts
            // where ours would, this is no block of ours either.
            Ownership::Unknown => {
                // A `malloc`-family call may be given a block of the aligned family, whose header
                // (in the inner allocator's memory, so readable) says where its inner block starts.
                let start = if prefix == HEADER && self.inner.owns(raw) == Ownership::Owned {
                    // SAFETY: the inner allocator's memory is mapped.
                    split_size_word(unsafe { read_word(raw) })
                        .1
                        .unwrap_or(HEADER)
                } else {
                    prefix
                };
                if self.inner.starts_block(data.wrapping_sub(start)) == Ownership::NotOwned {
                    // SAFETY: as above.
                    return Err(unsafe { self.not_live(data) });
                }
                false
            }
        };
        // SAFETY: the caller's guarantee.
        unsafe {
            let (n, recorded) = split_size_word(read_word(raw));
            // The `malloc` family's calls take blocks of both families; `free_aligned` only its
            // own alignment's.
            let found = recorded.filter(|&r| prefix == HEADER || r == prefix);
            let plain = plain && found == Some(HEADER);
            // The common case in one compare: the API id and the lead pad intact.
            let intact = u64::from_ne_bytes({
                let mut w = [FORBIDDEN_BYTE; WORD];
                w[0] = self.api;
                w
            });
            if let Some(found) = found
                && data.sub(WORD).cast::<u64>().read_unaligned() == intact
                && self.size_is_sane(data, n, plain)
                && all_are(data.add(n), WORD, FORBIDDEN_BYTE)
            {
                return match given {
                    Some(given) if given != n => {
                        Err(ViolationKind::WrongSize { recorded: n, given })
                    }
                    _ => Ok((n, found)),
                };
            }
            let id = *data.sub(WORD);
            if id == DEAD_BYTE && all_are(raw, WORD, DEAD_BYTE) {
                return Err(ViolationKind::DoubleFree);
            }
            if id != self.api {
                // Not remembered, with neither an API id nor a lead pad: nothing says a debug
                // hook made it (a pointer of another allocator; or a header overwritten whole).
                if !remembered && !all_are(data.sub(WORD - 1), WORD - 1, FORBIDDEN_BYTE) {
                    return Err(self.not_live(data));
                }
                return Err(ViolationKind::ApiMismatch {
                    allocated: id,
                    verified: self.api,
                });
            }
            if !all_are(data.sub(WORD - 1), WORD - 1, FORBIDDEN_BYTE) {
                return Err(ViolationKind::BufferUnderflow);
            }
            // A size or an alignment that cannot be right means the header itself was
            // overwritten.
            let Some(found) = recorded else {
                return Err(ViolationKind::BufferUnderflow);
            };
            if !self.size_is_sane(data, n, plain) {
                return Err(ViolationKind::BufferUnderflow);
            }
            if !all_are(data.add(n), WORD, FORBIDDEN_BYTE) {
                return Err(ViolationKind::BufferOverflow);
            }
            // An intact block of the other family, or of another alignment, given to
            // `free_aligned`: freed with a layout it was not made with.
            if found != prefix && prefix != HEADER {
                return Err(ViolationKind::WrongSize {
                    recorded: n,
                    given: given.unwrap_or(0),
                });
            }
            if let Some(given) = given
                && given != n
            {
                return Err(ViolationKind::WrongSize { recorded: n, given });
            }
            Ok((n, found))
        }
    }

    /// What a pointer that is no live block of ours is, read from its header where that is
    /// mapped memory (the inner allocator's, or a page the OS says is mapped): a block freed
    /// already (the freed pattern), another API's block (an API id and an intact lead pad), or
    /// none of ours ([`ViolationKind::ForeignPointer`]: never allocated here, or a pointer inside
    /// a block).
    ///
    /// # Safety
    /// None beyond the pointer being any value: nothing unmapped is read.
    #[cold]
    #[inline(never)]
    unsafe fn not_live(&self, data: *mut u8) -> ViolationKind {
        let raw = data.wrapping_sub(HEADER);
        let readable = (data as usize) >= HEADER
            && (self.inner.owns(raw) == Ownership::Owned || crate::os::mapped(raw, HEADER));
        if !readable {
            return ViolationKind::ForeignPointer;
        }
        // SAFETY: the header's 16 bytes are mapped (above).
        unsafe {
            let id = *data.sub(WORD);
            let lead = data.sub(WORD - 1);
            if id == DEAD_BYTE && all_are(lead, WORD - 1, DEAD_BYTE) {
                return ViolationKind::DoubleFree;
            }
            if id != self.api && id.is_ascii_graphic() && all_are(lead, WORD - 1, FORBIDDEN_BYTE) {
                return ViolationKind::ApiMismatch {
                    allocated: id,
                    verified: self.api,
                };
            }
        }
        ViolationKind::ForeignPointer
    }

    /// Whether `n` can be the size of the block at `data`: below `isize::MAX`, and, for a plain
    /// block (made by `malloc`, so `data - HEADER` is the inner block) within the inner block's
    /// usable size where the inner allocator knows it.
    ///
    /// # Safety
    /// For a plain block, `data - HEADER` is a live inner block.
    #[inline]
    unsafe fn size_is_sane(&self, data: *mut u8, n: usize, plain: bool) -> bool {
        if n > isize::MAX as usize - HEADER - TRAILER - MAX_ALIGN_PREFIX {
            return false;
        }
        // Small sizes are read without asking the inner allocator (as CPython always does): the
        // trailer then lies within a page or so of the block. Larger ones must fit the inner
        // block, so a header overwritten with a huge size cannot send the check into unmapped
        // memory.
        if !plain || n <= SIZE_TRUSTED {
            return true;
        }
        // SAFETY: the caller's guarantee.
        let usable = unsafe {
            self.inner
                .usable_size(NonNull::new_unchecked(data.sub(HEADER)))
        };
        usable.is_none_or(|usable| n + HEADER + TRAILER <= usable)
    }

    /// Formats the report of `kind` at `data`, reading the block only where it is safe.
    ///
    /// # Safety
    /// As for [`check`](Self::check), for the parts `kind` says are intact.
    unsafe fn report(
        &self,
        op: &str,
        kind: ViolationKind,
        data: *mut u8,
        prefix: usize,
        inner: Option<Layout>,
    ) -> Violation {
        let plain = prefix == HEADER;
        let mut t = Text {
            buf: [0; REPORT_BYTES],
            len: 0,
        };
        let api = self.api as char;
        let mut size = 0;
        let mut serial = 0;
        let _ = match kind {
            ViolationKind::ForeignPointer => writeln!(
                t,
                "Debug memory block at address p={data:p}: not a live block of this allocator \
                 (API '{api}'): never allocated by it, freed already, or not where a block starts"
            ),
            ViolationKind::DoubleFree => writeln!(
                t,
                "Debug memory block at address p={data:p}: API '{api}'\n    \
                 the block was already freed: its header holds the freed pattern \
                 ({DEAD_BYTE:#04x})"
            ),
            ViolationKind::UseAfterFree => Ok(()), // written by the quarantine
            _ => {
                // SAFETY: the header is readable (the caller); the trailer only with a sane size.
                unsafe { self.dump(&mut t, data, plain, &mut size, &mut serial) }
            }
        };
        if !matches!(kind, ViolationKind::ForeignPointer) {
            let _ = write!(t, "    ");
            // The inner block starts the prefix before the data; an aligned one is asked about
            // with its layout.
            let raw = data.wrapping_sub(prefix);
            let found = match inner {
                Some(layout) => self.inner.write_origin_aligned(raw, layout, &mut t),
                None => self.inner.write_origin(raw, &mut t),
            };
            if found {
                let _ = writeln!(t);
            } else {
                let _ = writeln!(
                    t,
                    "Stack a tracing allocator under this one to see where the block was allocated."
                );
            }
        }
        let _ = writeln!(t);
        let _ = match kind {
            ViolationKind::ApiMismatch {
                allocated,
                verified,
            } => writeln!(
                t,
                "Fatal error in debug {op}: bad ID: Allocated using API '{}', verified using API '{}'",
                allocated as char, verified as char
            ),
            ViolationKind::WrongSize { recorded, given } => writeln!(
                t,
                "Fatal error in debug {op}: {} ({given} bytes given, {recorded} bytes requested)",
                kind.describe()
            ),
            _ => writeln!(t, "Fatal error in debug {op}: {}", kind.describe()),
        };
        Violation {
            kind,
            address: data as usize,
            size,
            serial,
            api: self.api,
            text: t.buf,
            text_len: t.len,
            withheld: None,
        }
    }

    /// The block dump of CPython's `_PyObject_DebugDumpAddress`, in its words.
    ///
    /// # Safety
    /// The header at `data - HEADER` is readable; the trailer is read only if the size is sane.
    unsafe fn dump(
        &self,
        t: &mut Text,
        data: *mut u8,
        plain: bool,
        size: &mut usize,
        serial: &mut u64,
    ) -> fmt::Result {
        // SAFETY: the caller's guarantee for the header; the trailer and data are read only when
        // the size fits the inner block.
        unsafe {
            let raw = data.sub(HEADER);
            let (n, _) = split_size_word(read_word(raw));
            let id = *data.sub(WORD) as char;
            writeln!(t, "Debug memory block at address p={data:p}: API '{id}'")?;
            writeln!(t, "    {n} bytes originally requested")?;
            let lead = data.sub(WORD - 1);
            if all_are(lead, WORD - 1, FORBIDDEN_BYTE) {
                writeln!(
                    t,
                    "    The {} pad bytes at p-{} are FORBIDDENBYTE, as expected.",
                    WORD - 1,
                    WORD - 1
                )?;
            } else {
                writeln!(
                    t,
                    "    The {} pad bytes at p-{} are not all FORBIDDENBYTE ({FORBIDDEN_BYTE:#04x}):",
                    WORD - 1,
                    WORD - 1
                )?;
                for i in (1..WORD).rev() {
                    let b = *data.sub(i);
                    let ouch = if b == FORBIDDEN_BYTE { "" } else { " *** OUCH" };
                    writeln!(t, "        at p-{i}: {b:#04x}{ouch}")?;
                }
            }
            if !self.size_is_sane(data, n, plain) {
                writeln!(
                    t,
                    "    The size in the header cannot be right: the header was overwritten."
                )?;
                return Ok(());
            }
            *size = n;
            let tail = data.add(n);
            if all_are(tail, WORD, FORBIDDEN_BYTE) {
                writeln!(
                    t,
                    "    The {WORD} pad bytes at tail={tail:p} are FORBIDDENBYTE, as expected."
                )?;
            } else {
                writeln!(
                    t,
                    "    The {WORD} pad bytes at tail={tail:p} are not all FORBIDDENBYTE \
                     ({FORBIDDEN_BYTE:#04x}):"
                )?;
                for i in 0..WORD {
                    let b = *tail.add(i);
                    let ouch = if b == FORBIDDEN_BYTE { "" } else { " *** OUCH" };
                    writeln!(t, "        at tail+{i}: {b:#04x}{ouch}")?;
                }
            }
            // The serial follows the pad; an overflow may have reached it too, and CPython prints
            // it anyway, so do we.
            *serial = read_word(tail.add(WORD)) as u64;
            writeln!(
                t,
                "    The block was made by call #{} to debug malloc/realloc.",
                *serial
            )?;
            write!(t, "    Data at p:")?;
            let shown = n.min(8);
            for i in 0..shown {
                write!(t, " {:02x}", *data.add(i))?;
            }
            if n > 16 {
                write!(t, " ...")?;
            }
            for i in shown.max(n.saturating_sub(8))..n {
                write!(t, " {:02x}", *data.add(i))?;
            }
            writeln!(t)
        }
    }

    /// Reports `v` and carries out the action.
    fn act(&self, v: Violation) {
        match self.action {
            Action::Abort => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(v.report().as_bytes());
                let _ = err.flush();
                std::process::abort();
            }
            Action::Panic => panic!("{}", v.report()),
            Action::Record => {
                let mut r = self.records.lock();
                let i = r.next;
                // A record pushed out of the ring can no longer be inspected: its withheld block
                // goes back to the inner allocator now.
                if let Some(b) = r.ring[i].as_mut().and_then(|old| old.withheld.take()) {
                    r.released += 1;
                    self.claims.given_up(b.data as usize);
                    // SAFETY: a withheld block is still allocated in the inner allocator and
                    // referred to by nothing else; it left its record above.
                    unsafe { self.release(b) };
                }
                r.ring[i] = Some(v);
                r.next = (i + 1) % RECORDED_VIOLATIONS;
                r.total += 1;
            }
        }
    }

    /// Checks a block about to be released or resized; on a violation reports it and returns
    /// `None` (under [`Action::Record`]; the other actions do not return).
    ///
    /// # Safety
    /// `data` is a pointer the program passed to free/realloc of this allocator.
    #[inline]
    unsafe fn verify(
        &self,
        op: &str,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
    ) -> Option<(usize, usize)> {
        // A plain block (from `malloc`) has only the header before its data; an aligned one, a
        // prefix of its alignment.
        let plain = prefix == HEADER;
        // SAFETY: the caller's guarantee; `check` reads only what ownership allows.
        match unsafe { self.check(data, given, prefix, plain) } {
            Ok(found) => Some(found),
            // SAFETY: the caller's guarantee.
            Err(kind) => unsafe { self.violated(op, kind, data, given, prefix) },
        }
    }

    /// Reports the violation `kind` that [`verify`](Self::verify) found, withholds the block where
    /// it can, and acts; `None` under [`Action::Record`] (the other actions do not return).
    ///
    /// # Safety
    /// As for [`verify`](Self::verify).
    #[cold]
    #[inline(never)]
    unsafe fn violated(
        &self,
        op: &str,
        kind: ViolationKind,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
    ) -> Option<(usize, usize)> {
        // Where the header's id and lead pad were found intact, its size word says which family
        // the block is of (a `malloc`-family call takes both).
        let header_read = matches!(
            kind,
            ViolationKind::BufferOverflow
                | ViolationKind::BufferUnderflow
                | ViolationKind::WrongSize { .. }
        );
        let mut prefix = prefix;
        if header_read && prefix == HEADER {
            // SAFETY: the header was read by `check` for these kinds.
            let (_, recorded) = split_size_word(unsafe { read_word(data.sub(HEADER)) });
            prefix = recorded.unwrap_or(HEADER);
        }
        let plain = prefix == HEADER;
        // An aligned block's inner block, from the size its free gave, or its header's.
        let inner = if plain {
            None
        } else {
            given
                .or_else(|| {
                    // SAFETY: as above.
                    let (n, _) = split_size_word(unsafe { read_word(data.sub(HEADER)) });
                    header_read.then_some(n)
                })
                .and_then(|n| aligned_inner(n, prefix))
        };
        // SAFETY: the caller's guarantee; `report` reads only the parts `kind` says are intact.
        let mut v = unsafe { self.report(op, kind, data, prefix, inner) };
        // A damaged block of ours with a known size is withheld (not leaked silently):
        // the program can release it after inspecting the report. (After a wrong size
        // the block is intact and still the program's, to free with the right one.) A
        // plain block's size is the header's, where the report could read it; an aligned
        // one's, its free's.
        let size = if plain {
            v.size
        } else {
            given.unwrap_or(v.size)
        };
        if size > 0
            && (plain || inner.is_some())
            && matches!(
                kind,
                ViolationKind::BufferOverflow | ViolationKind::BufferUnderflow
            )
        {
            v.withheld = Some(Quarantined {
                raw: data.wrapping_sub(prefix),
                data,
                total: prefix + size + TRAILER,
                aligned: inner,
            });
        }
        self.act(v);
        None
    }

    /// [`bury`](Self::bury) for a block `check` found: `n` bytes at `data`, `prefix` bytes after
    /// its inner block's start (`HEADER` for the `malloc` family).
    ///
    /// # Safety
    /// As for `bury`: a checked live block of ours.
    #[inline]
    unsafe fn bury_found(&self, data: *mut u8, n: usize, prefix: usize) {
        let inner = if prefix == HEADER {
            None
        } else {
            aligned_inner(n, prefix)
        };
        // SAFETY: the caller's guarantee.
        unsafe { self.bury(data.sub(prefix), data, prefix + n + TRAILER, inner) };
    }

    /// Fills a checked block with 0xDD and releases it, through the quarantine if there is one.
    ///
    /// # Safety
    /// `raw..raw + total` is a checked live block of ours starting at `raw`, with `data` its data
    /// pointer; `aligned` is its inner layout if it came from `malloc_aligned`.
    #[inline]
    unsafe fn bury(&self, raw: *mut u8, data: *mut u8, total: usize, aligned: Option<Layout>) {
        self.claims.given_up(data as usize);
        // SAFETY: the caller's guarantee.
        unsafe { raw.write_bytes(DEAD_BYTE, total) };
        let entry = Quarantined {
            raw,
            data,
            total,
            aligned,
        };
        if self.quarantine_capacity == 0 {
            // SAFETY: the caller's guarantee: a live block of the inner allocator.
            unsafe { self.release(entry) };
            return;
        }
        // SAFETY: as above.
        unsafe { self.quarantine(entry) }
    }

    /// Puts a freed, filled block in the quarantine, and releases the one it evicts.
    ///
    /// # Safety
    /// As for [`bury`](Self::bury), with `entry` filled.
    #[inline(never)]
    unsafe fn quarantine(&self, entry: Quarantined) {
        let evicted = {
            let mut q = self.quarantine.lock();
            let evicted = if q.len == self.quarantine_capacity {
                let head = q.head;
                let e = q.slots[head].take();
                q.head = (head + 1) % MAX_QUARANTINE;
                q.len -= 1;
                e
            } else {
                None
            };
            let tail = (q.head + q.len) % MAX_QUARANTINE;
            q.slots[tail] = Some(entry);
            q.len += 1;
            evicted
        };
        if let Some(e) = evicted {
            // SAFETY: the evicted block left the quarantine, which owned it.
            unsafe { self.leave_quarantine(e) };
        }
    }

    /// Checks that a quarantined block still holds only 0xDD, reports it if not, and releases it.
    ///
    /// # Safety
    /// `e` was in the quarantine and has left it.
    unsafe fn leave_quarantine(&self, e: Quarantined) {
        // SAFETY: the quarantine kept the block allocated, so it is readable.
        let bytes = unsafe { core::slice::from_raw_parts(e.raw, e.total) };
        if let Some(off) = bytes.iter().position(|&b| b != DEAD_BYTE) {
            let mut t = Text {
                buf: [0; REPORT_BYTES],
                len: 0,
            };
            let data_off = off as isize - HEADER as isize;
            let _ = writeln!(
                t,
                "Debug memory block at address p={:p}: API '{}'\n    \
                 the block was written after it was freed (it should hold only {DEAD_BYTE:#04x}):",
                e.data, self.api as char
            );
            let end = bytes.len().min(off + 8);
            for (i, &b) in bytes[off..end].iter().enumerate() {
                let ouch = if b == DEAD_BYTE { "" } else { " *** OUCH" };
                let _ = writeln!(t, "        at p{:+}: {b:#04x}{ouch}", data_off + i as isize);
            }
            let _ = writeln!(
                t,
                "\nFatal error in debug free: {}",
                ViolationKind::UseAfterFree.describe()
            );
            self.act(Violation {
                kind: ViolationKind::UseAfterFree,
                address: e.data as usize,
                size: 0,
                serial: 0,
                api: self.api,
                text: t.buf,
                text_len: t.len,
                withheld: None,
            });
        }
        // SAFETY: the block is still allocated in the inner allocator, and leaves us here.
        unsafe { self.release(e) };
    }

    /// # Safety
    /// `e` describes a live block of the inner allocator that nothing refers to any more.
    #[inline]
    unsafe fn release(&self, e: Quarantined) {
        // SAFETY: the caller's guarantee; the entry records which family made the block.
        unsafe {
            let raw = NonNull::new_unchecked(e.raw);
            match e.aligned {
                Some(layout) => self.inner.free_aligned(raw, layout),
                None => self.inner.free_sized(raw, e.total),
            }
        }
    }

    /// Whether `ptr` is not a live block of this allocator: it holds the freed pattern, its guards
    /// are broken, it is quarantined, or the inner allocator disowns it (CPython's
    /// `_PyObject_IsFreed`). Never reports, never aborts.
    ///
    /// It reads the block's header, so it must still be mapped: true for pointers this allocator
    /// made over a pool allocator, and for any pointer while it is quarantined; over the C library,
    /// enable the quarantine before asking about freed blocks.
    pub fn is_freed(&self, ptr: *const u8) -> bool {
        let data = ptr.cast_mut();
        {
            let q = self.quarantine.lock();
            if (0..q.len)
                .any(|i| q.slots[(q.head + i) % MAX_QUARANTINE].is_some_and(|e| e.data == data))
            {
                return true;
            }
        }
        // SAFETY: `check` reads nothing the inner allocator disowns; for other pointers the
        // documented requirement (still mapped) applies.
        unsafe { self.check(data, None, HEADER, false) }.is_err()
    }

    /// Gives the damaged blocks withheld under [`Action::Record`] back to the inner allocator and
    /// returns how many. Do it once the reports have been read: a block whose damage reached past
    /// its guard bytes may still upset an inner allocator that keeps its metadata next to blocks
    /// (the C library); the pool keeps its metadata apart. The drop of the allocator does it too.
    pub fn release_withheld(&self) -> usize {
        let blocks: Vec<Quarantined> = {
            let mut r = self.records.lock();
            r.ring
                .iter_mut()
                .flatten()
                .filter_map(|v| v.withheld.take())
                .collect()
        };
        for &b in &blocks {
            self.claims.given_up(b.data as usize);
            // SAFETY: a withheld block is still allocated in the inner allocator and referred to
            // by nothing else; it leaves the record above, so it is released once.
            unsafe { self.release(b) };
        }
        blocks.len()
    }

    /// Gives every quarantined block back to the inner allocator (checking each first).
    pub fn flush_quarantine(&self) {
        loop {
            let e = {
                let mut q = self.quarantine.lock();
                if q.len == 0 {
                    return;
                }
                let head = q.head;
                q.head = (head + 1) % MAX_QUARANTINE;
                q.len -= 1;
                q.slots[head].take()
            };
            if let Some(e) = e {
                // SAFETY: the block left the quarantine, which owned it.
                unsafe { self.leave_quarantine(e) };
            }
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
