//! Capturing the calling stack as return addresses, without allocating: by the platform's
//! unwinder, by the unwind tables read once per return address, or by following frame pointers
//! where the program keeps them.
//!
//! The unwinder (`backtrace::trace_unsynchronized`: libgcc's `_Unwind_Backtrace`, or
//! `RtlVirtualUnwind` on 64-bit Windows) works for any code with unwind tables, and reads the
//! call-frame information of every frame it steps over: about 150 ns a frame, microseconds per
//! allocation. Two faster walks give the same frames where they apply:
//!
//! * **Unwind tables, cached** (x86-64 Linux). What the unwinder finds for a return address (where
//!   the caller's stack pointer is, whether the frame pointer was saved) depends on that address
//!   alone, so it is read once (by [`cfi`](super::cfi)) and kept beside the address's
//!   classification in one table: a frame then costs a lookup and a load or two, in any build.
//!   A one-frame capture first tries a single step from the frame it is inlined into (Tracing's
//!   entry), by the rule at the current instruction, as the same table and the same step give
//!   it: where the caller is the program's, that is the traceback, with no call made.
//! * **Frame pointers.** A program built with frame pointers (`-C force-frame-pointers=yes`; the
//!   standard library of current toolchains keeps them already) links its frames into a chain,
//!   and walking it is two loads a frame:
//!
//! ```text
//!   fp ──► [ saved fp of the caller | return address ] ──► [ saved fp | return address ] ──► ...
//! ```
//!
//! Whether either walk can be trusted is not known at compile time (a crate or a C library built
//! without frame pointers uses the register for data; code may use rules the cached walk does not
//! follow), so the first captures of a process ([`CALIBRATION`] of them) are made every way and
//! compared: frame pointers are used from then on if every one of their walks agreed with the
//! unwinder frame for frame, else the cached tables if theirs did, else the unwinder.
//! [`set_capture_method`] overrides the choice. The walks never leave the thread's stack: each
//! frame must lie above the previous one and below the stack's top (from the C library, once per
//! thread), so a frame they cannot follow ends the walk early instead of reading outside the
//! stack (and the cached walk then hands the capture to the unwinder).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use super::frames::{CAPTURE_WORDS, PLUMBING_FRAMES};

/// Captures compared both ways before frame pointers are trusted.
pub const CALIBRATION: usize = 8;

/// Frames at the outer end of a stack that the unwinder reports and the frame-pointer chain may
/// not reach: the C library's entry frames (`__libc_start_main` and `_start` under `main`'s
/// caller; `start_thread` and `clone3` for a thread), built without frame pointers.
const ENTRY_FRAMES: usize = 3;

/// How call stacks are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureMethod {
    /// Not decided yet: the next captures calibrate.
    Undecided,
    /// The platform's unwinder (always correct, slow).
    Unwind,
    /// The frame-pointer chain (fast; right only where every frame keeps its frame pointer).
    FramePointers,
    /// The unwind tables, read once per return address and kept (fast in any build with unwind
    /// tables; x86-64 Linux).
    UnwindTables,
}

const UNDECIDED: u8 = 0;
const UNWIND: u8 = 1;
const FRAME_POINTERS: u8 = 2;
const TABLES: u8 = 3;

static METHOD: AtomicU8 = AtomicU8::new(UNDECIDED);
/// Calibrating captures made since the method was last undecided.
static CALIBRATED: AtomicUsize = AtomicUsize::new(0);
/// Whether a calibrating capture found the frame-pointer chain, or the cached tables' walk,
/// disagreeing with the unwinder.
static CHAIN_FAILED: AtomicBool = AtomicBool::new(false);
static TABLES_FAILED: AtomicBool = AtomicBool::new(!fp::TABLES);

/// The method captures use now (decided by the first captures of the process, or set).
pub fn capture_method() -> CaptureMethod {
    match METHOD.load(Ordering::Relaxed) {
        UNWIND => CaptureMethod::Unwind,
        FRAME_POINTERS => CaptureMethod::FramePointers,
        TABLES => CaptureMethod::UnwindTables,
        _ => CaptureMethod::Undecided,
    }
}

/// Sets how call stacks are captured from now on: `Undecided` calibrates again. Setting
/// `FramePointers` for a program whose frames do not keep them gives short or wrong tracebacks,
/// never a crash (the walk stays on the thread's stack). On a platform without the walk asked
/// for, it means `Unwind`.
pub fn set_capture_method(method: CaptureMethod) {
    let m = match method {
        CaptureMethod::Undecided => UNDECIDED,
        CaptureMethod::Unwind => UNWIND,
        CaptureMethod::FramePointers if fp::SUPPORTED => FRAME_POINTERS,
        CaptureMethod::UnwindTables if fp::TABLES => TABLES,
        CaptureMethod::FramePointers | CaptureMethod::UnwindTables => UNWIND,
    };
    CALIBRATED.store(0, Ordering::Relaxed);
    CHAIN_FAILED.store(false, Ordering::Relaxed);
    TABLES_FAILED.store(!fp::TABLES, Ordering::Relaxed);
    METHOD.store(m, Ordering::Relaxed);
}

/// Which frames a traceback keeps: the leading frames of the allocation machinery (at most
/// [`PLUMBING_FRAMES`] of them) are passed over, then `depth` frames are kept, so that the walk
/// stops as soon as the traceback is complete.
#[derive(Clone, Copy)]
pub(crate) struct Keep {
    depth: usize,
    skipped: usize,
    kept: usize,
}

impl Keep {
    pub(crate) fn new(depth: usize) -> Self {
        Keep {
            depth,
            skipped: 0,
            kept: 0,
        }
    }

    /// Whether the frame returning to `ip`, the next one out, belongs in the traceback.
    #[inline]
    fn offer(&mut self, ip: usize) -> bool {
        if self.kept == 0 && self.skipped < PLUMBING_FRAMES && sites::is_plumbing(ip) {
            self.skipped += 1;
            return false;
        }
        self.kept += 1;
        true
    }

    /// Whether the traceback has its frames.
    #[inline]
    fn done(&self) -> bool {
        self.kept >= self.depth
    }

    /// Copies the frames of `from` this traceback takes into `into`; returns how many.
    fn filter(mut self, from: &[usize], into: &mut [usize]) -> usize {
        let mut k = 0;
        for &ip in from {
            if self.done() || k == into.len() {
                break;
            }
            if self.offer(ip) {
                into[k] = ip;
                k += 1;
            }
        }
        k
    }
}

/// Where a frame was when [`here_fast`] could not answer: its instruction, stack and frame
/// pointers, for [`here_checked`] to step from (while that frame is live: from a function it
/// calls).
#[derive(Clone, Copy)]
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)]
pub(crate) struct Place {
    pc: usize,
    sp: usize,
    bp: usize,
}

/// The one-frame traceback of the frame this is inlined into, by the default method, where this
/// thread stepped from the same instruction to the same caller before: the caller's return
/// address, found with no call and no lookup. Otherwise (or by another method) the place to
/// step from, checked, by [`here_checked`]; `None` where the default method is not chosen.
#[inline(always)]
pub(crate) fn here_fast() -> Result<usize, Option<Place>> {
    if METHOD.load(Ordering::Relaxed) != TABLES {
        return Err(None);
    }
    fp::here_fast()
}

/// [`here_fast`]'s step made with every check (and the thread's note of it kept, so that the
/// next one from there is quick): `None` where the step cannot be made or leads past the
/// machinery's frames.
///
/// # Safety
///
/// `place` came from [`here_fast`] in a frame that is still live: this function's caller, or
/// one of its callers.
#[inline(always)]
pub(crate) unsafe fn here_checked(place: Place) -> Option<usize> {
    // SAFETY: the caller's guarantee.
    unsafe { fp::here_checked(place) }
}

/// Captures the traceback of `depth` frames into `buf` (at least `depth` long), most recent frame
/// first; returns how many frames.
///
/// Each walk is made by the same call, from the same frame state, whether it is trusted or still
/// being calibrated, so that what calibration checks is what is used. Inlined into the caller, so
/// that the walks step out of one frame fewer.
#[inline(always)]
pub(crate) fn capture(buf: &mut [usize], depth: usize) -> usize {
    // The default depth by the default method, tested before anything else: a step from here,
    // without a call, where it can be made. (The method is loaded again below: compared with one
    // value, it would be compared with every method in turn, this one last.)
    if METHOD.load(Ordering::Relaxed) == TABLES
        && depth == 1
        && !buf.is_empty()
        && let Some(ip) = fp::walk_here_one()
    {
        buf[0] = ip;
        return 1;
    }
    let method = METHOD.load(Ordering::Relaxed);
    // The depth travels as a word (0: the whole chain), not as a `Keep`: a struct passed
    // through memory is read back before its stores retire.
    if method == TABLES {
        // Black boxes keep each walk an ordinary call (not a tail call), as on the calibrating
        // path.
        if let Some(n) = core::hint::black_box(fp::walk_tables(buf, depth)) {
            return n;
        }
        // A frame the cached rules do not follow: this capture is the unwinder's.
        return unwind(buf, Some(Keep::new(depth)));
    }
    if method == UNWIND || !fp::SUPPORTED {
        return unwind(buf, Some(Keep::new(depth)));
    }
    if method == FRAME_POINTERS {
        return core::hint::black_box(fp::walk(buf, depth));
    }
    let mut chain = [0usize; CAPTURE_WORDS];
    let m = core::hint::black_box(fp::walk(&mut chain, 0));
    let mut tables = [0usize; CAPTURE_WORDS];
    let t = core::hint::black_box(fp::walk_tables(&mut tables, 0)).unwrap_or(0);
    calibrate(buf, &chain[..m], &tables[..t], Keep::new(depth))
}

/// Compares the walks just made whole (the frame-pointer chain, and the cached tables' walk) with
/// the unwinder's capture, and leaves the unwinder's traceback in `buf`. Decides once
/// [`CALIBRATION`] captures were made (or as soon as both walks failed one).
#[inline(never)]
fn calibrate(buf: &mut [usize], chain: &[usize], tables: &[usize], keep: Keep) -> usize {
    let mut all = [0usize; CAPTURE_WORDS];
    let n = unwind(&mut all, None);
    let unwound = &all[..n];
    if !agrees(chain, unwound) {
        CHAIN_FAILED.store(true, Ordering::Relaxed);
    }
    if !agrees(tables, unwound) {
        TABLES_FAILED.store(true, Ordering::Relaxed);
    }
    let chain_failed = CHAIN_FAILED.load(Ordering::Relaxed);
    let tables_failed = TABLES_FAILED.load(Ordering::Relaxed);
    let decided = if chain_failed && tables_failed {
        Some(UNWIND)
    } else if CALIBRATED.fetch_add(1, Ordering::Relaxed) + 1 >= CALIBRATION {
        Some(if !chain_failed {
            FRAME_POINTERS
        } else {
            TABLES
        })
    } else {
        None
    };
    if let Some(method) = decided {
        let _ = METHOD.compare_exchange(UNDECIDED, method, Ordering::Relaxed, Ordering::Relaxed);
    }
    // The frames of `capture` the unwinder reported before the walks' first are not the
    // program's (without a walk, the filter passes over them as the machinery's).
    let lead = lead(chain, unwound).or_else(|| lead(tables, unwound));
    keep.filter(&unwound[lead.unwrap_or(0)..], buf)
}

/// Where the walk's first frame is among the unwinder's first: the unwinder may report the frames
/// of `capture` first, and a walk starts at its caller.
fn lead(walked: &[usize], unwound: &[usize]) -> Option<usize> {
    let first = *walked.first()?;
    unwound[..unwound.len().min(3)]
        .iter()
        .position(|&ip| ip == first)
}

/// Whether a walk agrees with the unwinder: it must reach as far as the unwinder, but for the last
/// frames of a thread's entry (which the C library builds without frame pointers), and agree on
/// every frame it has. The walk's first frame must be one of the unwinder's first, or nothing
/// was compared. (The unwinder ends on a null return address at the outermost frame: not a
/// frame.)
fn agrees(walked: &[usize], unwound: &[usize]) -> bool {
    let Some(skip) = lead(walked, unwound) else {
        return false;
    };
    let outer = unwound.iter().rev().take_while(|&&ip| ip == 0).count();
    let want = (unwound.len() - outer).saturating_sub(skip);
    let common = want.min(walked.len());
    walked.len() + ENTRY_FRAMES >= want && walked[..common] == unwound[skip..skip + common]
}

/// The unwinder's capture, filtered by `keep` (or whole); the frames of the unwinder and of the
/// function this is inlined into are skipped.
#[inline(always)]
fn unwind(buf: &mut [usize], mut keep: Option<Keep>) -> usize {
    let marker = 0u8;
    let here = core::ptr::addr_of!(marker) as usize;
    let mut n = 0;
    // The callback neither panics nor allocates (classifying a frame the first time resolves
    // it, which allocates untraced: `frames::frame_is_plumbing`).
    // SAFETY: the unwinder behind `trace_unsynchronized` (libgcc's `_Unwind_Backtrace`, or
    // `RtlVirtualUnwind` on 64-bit Windows) is safe to call from several threads at once.
    unsafe {
        backtrace::trace_unsynchronized(|f| {
            // Frames of the unwinder and of this function lie below `marker`.
            let sp = f.sp() as usize;
            if sp != 0 && sp <= here {
                return true;
            }
            let ip = f.ip() as usize;
            if n < buf.len() && keep.as_mut().is_none_or(|k| k.offer(ip)) {
                buf[n] = ip;
                n += 1;
            }
            n < buf.len() && !keep.as_ref().is_some_and(Keep::done)
        });
    }
    core::hint::black_box(&marker);
    n
}

/// What is known of each return address a capture has met, each learned once per process: whether
/// it belongs to the allocation machinery, and (for the cached tables' walk) how to find its
/// caller's frame. The table and its protocol are [`crate::addresses`]'s (a loom model checks
/// them); past the table's room, addresses are taken for the program's and have no rule (nothing
/// is lost: resolution strips the machinery's frames again when a report is made, and a frame
/// without a rule is the unwinder's).
// Only x86-64 Linux builds the cached tables' walk, which asks for rules.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)]
mod sites {
    use crate::addresses::{Addresses, Slot};

    // The known bits: the class (2 bits), then whether there is a rule (2 bits), and the rule
    // itself from bit 16 (never 0: a rule has an offset, or is the outermost frame's).
    const CLASS: u64 = 0b11;
    const PROGRAM: u64 = 0b01;
    const PLUMBING: u64 = 0b10;
    const NO_RULE: u64 = 0b01 << 2;
    const HAS_RULE: u64 = 0b10 << 2;

    static TABLE: Addresses<{ 1 << 14 }> = Addresses::new();

    /// What is known of a return address: its slot, or nothing where the table has no room.
    #[derive(Clone, Copy)]
    pub(super) struct Site(Option<&'static Slot>);

    /// The site of return address `ip`.
    #[inline]
    pub(super) fn slot(ip: usize) -> Site {
        Site(TABLE.slot(ip))
    }

    /// Whether the frame returning to `ip` belongs to the allocation machinery.
    #[inline]
    pub(super) fn is_plumbing(ip: usize) -> bool {
        slot(ip).is_plumbing(ip)
    }

    impl Site {
        #[inline]
        fn known(self) -> u64 {
            self.0.map_or(PROGRAM | NO_RULE, Slot::known)
        }

        /// Whether the frame returning to `ip` (this site's address) belongs to the allocation
        /// machinery.
        #[inline]
        pub(super) fn is_plumbing(self, ip: usize) -> bool {
            match self.known() & CLASS {
                PLUMBING => true,
                PROGRAM => false,
                _ => self.classify(ip),
            }
        }

        #[cold]
        fn classify(self, ip: usize) -> bool {
            let plumbing = super::super::frames::frame_is_plumbing(ip);
            if let Some(slot) = self.0 {
                slot.learn(if plumbing { PLUMBING } else { PROGRAM });
            }
            plumbing
        }

        /// How to find the caller of the frame that returns to `ip` (this site's address),
        /// packed as [`rules`](super::rules) says; 0 where the walk cannot follow it.
        #[inline]
        pub(super) fn rule(self, ip: usize) -> u64 {
            let known = self.known();
            if known & HAS_RULE != 0 {
                return known >> 16;
            }
            if known & NO_RULE != 0 {
                return 0;
            }
            self.learn_rule(ip)
        }

        #[cold]
        fn learn_rule(self, ip: usize) -> u64 {
            // The rule at the call (the return address may begin the next function's rows).
            let packed = super::rules::at(ip.wrapping_sub(1)).unwrap_or(0);
            if let Some(slot) = self.0 {
                slot.learn(if packed == 0 {
                    NO_RULE
                } else {
                    HAS_RULE | packed << 16
                });
            }
            packed
        }
    }
}

/// A call-frame rule in one word, for the cached tables' walk: bit 0, the CFA is the frame
/// pointer (else the stack pointer) plus the offset in bits 16..32; bit 1, the caller's frame
/// pointer is saved the offset in bits 32..48 below the CFA (else unchanged); bit 2, the frame
/// is the stack's outermost (nothing beyond it).
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(dead_code)
)]
mod rules {
    pub(super) const FROM_FRAME_POINTER: u64 = 1;
    pub(super) const SAVES_FRAME_POINTER: u64 = 2;
    pub(super) const OUTERMOST: u64 = 4;

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn at(pc: usize) -> Option<u64> {
        let r = super::super::cfi::rule_at(pc)?;
        if r.outermost {
            return Some(OUTERMOST);
        }
        let mut packed = u64::from(r.cfa_offset) << 16;
        if r.from_frame_pointer {
            packed |= FROM_FRAME_POINTER;
        }
        if let Some(k) = r.saved_frame_pointer {
            packed |= SAVES_FRAME_POINTER | u64::from(k) << 32;
        }
        Some(packed)
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub(super) fn at(_pc: usize) -> Option<u64> {
        None
    }

    #[inline]
    pub(super) fn cfa_offset(packed: u64) -> usize {
        (packed >> 16) as u16 as usize
    }

    #[inline]
    pub(super) fn saved_at(packed: u64) -> usize {
        (packed >> 32) as u16 as usize
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod fp {
    use core::cell::Cell;

    use super::rules;

    pub(super) const SUPPORTED: bool = true;
    /// Whether the cached tables' walk is built.
    pub(super) const TABLES: bool = cfg!(target_arch = "x86_64");

    std::thread_local! {
        /// This thread's stack as `(lowest address, room)`, the room being the size less 7 (so
        /// that `sp - lowest < room` says that the word at `sp` lies on the stack); `(0, 0)` until
        /// first asked, `(1, 0)` where it could not be had.
        static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    #[cfg(target_arch = "x86_64")]
    std::thread_local! {
        /// What this thread's last one-frame walk from here looked up ([`Here`]).
        static HERE: Cell<Here> = const { Cell::new(Here { pc: 0, rule: 0, first: 0 }) };
    }

    /// The two lookups of a one-frame walk from the current frame ([`walk_here_one`]), kept per
    /// thread so that the next walk from the same place to the same caller makes neither: the
    /// rule at `pc`, and that `first`, the return address one frame out, is the program's. Both
    /// are facts about the addresses alone (as the shared table's), so a walk that uses them
    /// steps exactly as one that looks them up; kept only after a step from `pc` was checked
    /// within the stack, they also let the next step from `pc` skip the checks (`here_fast`).
    #[cfg(target_arch = "x86_64")]
    #[derive(Clone, Copy)]
    struct Here {
        /// Where the walk was made (0: nothing kept).
        pc: usize,
        /// The rule there: never 0 nor the outermost frame's.
        rule: u64,
        /// The return address one frame out, the program's.
        first: usize,
    }

    /// The calling thread's stack from the C library. `pthread_getattr_np` may allocate through
    /// `malloc` (for the main thread it reads `/proc/self/maps`), which may be this very
    /// allocator under `LD_PRELOAD`: Tracing's busy flag keeps that allocation untraced.
    #[cold]
    fn bounds() -> (usize, usize) {
        let _busy = super::super::frames::Busy::enter();
        crate::os::stack::thread_stack().unwrap_or((1, 0))
    }

    /// The top of this thread's stack, if the word at `sp` lies on it (else 0): one compare,
    /// once the bounds are known.
    #[inline]
    pub(super) fn stack_top(sp: usize) -> usize {
        let (low, room) = BOUNDS.with(Cell::get);
        if sp.wrapping_sub(low) < room {
            return low + room + 7;
        }
        stack_top_first(sp, low, room)
    }

    /// [`stack_top`] where the word at `sp` is not within the bounds known: asks for them the
    /// first time.
    #[cold]
    #[inline(never)]
    fn stack_top_first(sp: usize, low: usize, room: usize) -> usize {
        if (low, room) != (0, 0) {
            return 0;
        }
        let (low, high) = bounds();
        let room = if low < high && high - low >= 8 {
            high - low - 7
        } else {
            0
        };
        // Unknowable bounds are kept as (1, 0), so that they are not asked for again.
        BOUNDS.with(|b| b.set(if room == 0 { (1, 0) } else { (low, room) }));
        if sp.wrapping_sub(low) < room {
            low + room + 7
        } else {
            0
        }
    }

    /// The frame pointer register (inlined into `walk`: its own frame, where it keeps one).
    #[inline(always)]
    fn frame_pointer() -> usize {
        let fp: usize;
        // SAFETY: reads a register; touches no memory.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
            #[cfg(target_arch = "aarch64")]
            core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
        }
        fp
    }

    /// Follows the frame-pointer chain from the frame of its caller (its own record, whose
    /// return address points into the caller, is passed over), within the thread's stack.
    /// `depth` 0 walks the whole chain (for calibration); otherwise the walk keeps the traceback
    /// [`Keep`](super::Keep) describes.
    #[inline(never)]
    pub(super) fn walk(buf: &mut [usize], depth: usize) -> usize {
        let mut keep = (depth > 0).then(|| super::Keep::new(depth));
        let mut fp = frame_pointer();
        let mut skip_own = true;
        let marker = 0u8;
        let sp = core::ptr::addr_of!(marker) as usize;
        let high = stack_top(sp);
        // Not on the thread's stack (a signal's alternate stack), or no bounds: no walk.
        if high == 0 {
            return 0;
        }
        let mut n = 0;
        while n < buf.len() {
            // A frame record is two aligned words between here and the top of the stack.
            if fp < sp || !fp.is_multiple_of(16) || fp > high - 16 {
                break;
            }
            // SAFETY: `[fp, fp + 16)` lies within this thread's stack (checked above), which is
            // mapped and readable for as long as the thread runs.
            let (next, ret) = unsafe {
                let rec = fp as *const usize;
                (rec.read(), rec.add(1).read())
            };
            if ret == 0 {
                break;
            }
            if skip_own {
                skip_own = false;
            } else if keep.as_mut().is_none_or(|k| k.offer(ret)) {
                buf[n] = ret;
                n += 1;
                if keep.as_ref().is_some_and(super::Keep::done) {
                    break;
                }
            }
            // The chain runs towards the top of the stack; anything else is not a chain.
            if next <= fp {
                break;
            }
            fp = next;
        }
        core::hint::black_box(&marker);
        n
    }

    /// Walks the stack by the cached unwind tables from the frame of its caller (whose own return
    /// address, into the caller's caller, is the first it can keep), within the thread's stack.
    /// `depth` 0 walks as far as the rules go (for calibration), and gives what it found;
    /// otherwise the walk keeps the traceback [`Keep`](super::Keep) describes (inline: the class
    /// and the rule of a frame come from one lookup), and gives `None` if it met a frame it cannot
    /// follow before the traceback was complete.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn walk_tables(buf: &mut [usize], depth: usize) -> Option<usize> {
        // SAFETY: `buf` is valid for `buf.len()` writes of words, and `tables_entry` is called
        // from this (inlined) function's caller, whose frame is where the walk begins.
        let n = unsafe { tables_entry(buf.as_mut_ptr(), buf.len(), depth) };
        (n != usize::MAX).then_some(n)
    }

    /// The tables walk's entry: passes the stack pointer at the call (where the return address
    /// into the caller is) and the caller's frame pointer, untouched, to [`walk_from`], which
    /// returns to the caller in its place.
    ///
    /// # Safety
    ///
    /// As [`walk_from`] for `buf`, `len` and `depth`.
    #[cfg(target_arch = "x86_64")]
    #[unsafe(naked)]
    unsafe extern "sysv64" fn tables_entry(buf: *mut usize, len: usize, depth: usize) -> usize {
        core::arch::naked_asm!(
            "mov rcx, rsp",
            "mov r8, rbp",
            "jmp {walk}",
            walk = sym walk_from,
        )
    }

    /// The instruction pointer, stack pointer and frame pointer register where this is inlined.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn registers() -> (usize, usize, usize) {
        let (pc, sp, bp): (usize, usize, usize);
        // SAFETY: reads registers; touches no memory. The frame pointer is read first: where
        // the function keeps none, an output may be given its register.
        unsafe {
            core::arch::asm!(
                "mov {bp}, rbp",
                "mov {sp}, rsp",
                "lea {pc}, [rip]",
                pc = out(reg) pc,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        (pc, sp, bp)
    }

    /// A one-frame traceback walked by the cached tables from the frame this is inlined into:
    /// one step, by the rule at the current instruction, to the return address into the caller,
    /// kept if it is the program's. `None` where the step cannot be made there, or the caller is
    /// the allocation machinery's (the whole walk passes over it then).
    ///
    /// The common capture (Tracing's default depth, from `traced`): no call, and per thread
    /// ([`Here`]) neither lookup of the last walk from the same place to the same caller.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn walk_here_one() -> Option<usize> {
        match here_fast() {
            Ok(next) => Some(next),
            // SAFETY: the place is this frame's, live.
            Err(place) => unsafe { here_checked(place?) },
        }
    }

    /// [`super::here_fast`] once the method is known to be the tables'.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn here_fast() -> Result<usize, Option<super::Place>> {
        let (pc, sp, bp) = registers();
        let memo = HERE.with(Cell::get);
        if pc == memo.pc {
            // SAFETY: this thread stepped out of this very instruction before, by its rule, to
            // a CFA the checks found within this frame's stack (`memo` is kept only after
            // them). The rule is the instruction's (the shared table's, learned once), and at
            // one instruction of one function the frame has one layout: its CFA is again this
            // frame's own top, and the word below it the return address the call into it
            // pushed, on this thread's live stack while this frame runs.
            let next = unsafe { own_return_address(memo.rule, sp, bp) };
            if next == memo.first {
                return Ok(next);
            }
        }
        Err(Some(super::Place { pc, sp, bp }))
    }

    /// [`super::here_checked`].
    ///
    /// # Safety
    ///
    /// As there.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) unsafe fn here_checked(place: super::Place) -> Option<usize> {
        let super::Place { pc, sp, bp } = place;
        // The checks below make no assumption about the place but that its frame is live.
        walk_here_one_checked(pc, sp, bp, HERE.with(Cell::get))
    }

    /// [`walk_here_one`] where the thread's note does not answer: the bounds of the stack and
    /// of the step checked, the rule and the caller looked up where they are not the note's.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn walk_here_one_checked(pc: usize, sp: usize, bp: usize, memo: Here) -> Option<usize> {
        let high = stack_top(sp);
        if high == 0 {
            return None;
        }
        let known = pc == memo.pc;
        let rule = if known { memo.rule } else { rule_here(pc)? };
        // SAFETY: `sp` is this frame's stack pointer, whose word lies on this thread's stack
        // (`stack_top`), and `high` the stack's top: `[sp, high)` is live stack.
        let next = unsafe { return_address(rule, sp, bp, high) }?;
        if next == 0 {
            return None;
        }
        if !known || next != memo.first {
            if super::sites::slot(next).is_plumbing(next) {
                // SAFETY: as above.
                return unsafe { walk_on(rule, sp, bp, high) };
            }
            HERE.with(|h| {
                h.set(Here {
                    pc,
                    rule,
                    first: next,
                })
            });
        }
        Some(next)
    }

    /// [`walk_here_one`] past a first caller of the machinery's: steps on, frame by frame by
    /// the shared table, over at most [`PLUMBING_FRAMES`](super::PLUMBING_FRAMES) of them, to
    /// the first return address of the program's; `None` where a step cannot be made (or past
    /// them: the whole walk keeps a machinery frame there). Out of line, from a frame below the
    /// ones it reads, which stay live while it runs.
    ///
    /// # Safety
    ///
    /// `rule` is the rule at the frame whose stack and frame pointer are `sp` and `bp`, and
    /// `[sp, high)` is live stack of this thread.
    #[cfg(target_arch = "x86_64")]
    #[cold]
    #[inline(never)]
    unsafe fn walk_on(rule: u64, sp: usize, bp: usize, high: usize) -> Option<usize> {
        let (mut rule, mut sp, mut bp) = (rule, sp, bp);
        for _ in 0..=super::PLUMBING_FRAMES {
            // SAFETY: `[sp, high)` is live stack: the caller's guarantee at first, then each
            // frame `step` found above the last and below `high`.
            let (next, cfa, saved) = unsafe { step(rule, sp, bp, high) }?;
            if next == 0 {
                return None;
            }
            let slot = super::sites::slot(next);
            if !slot.is_plumbing(next) {
                return Some(next);
            }
            rule = slot.rule(next);
            if rule == 0 || rule & rules::OUTERMOST != 0 {
                return None;
            }
            (sp, bp) = (cfa, saved);
        }
        None
    }

    /// The rule at `pc`, if it leads to a caller: learned in the shared table under `pc + 1`,
    /// as a return address whose call is at `pc` would be (the rule asked for is the same).
    #[cfg(target_arch = "x86_64")]
    #[cold]
    #[inline(never)]
    fn rule_here(pc: usize) -> Option<u64> {
        let key = pc.wrapping_add(1);
        let rule = super::sites::slot(key).rule(key);
        (rule != 0 && rule & rules::OUTERMOST == 0).then_some(rule)
    }

    /// The CFA of a frame by its `rule` (its stack pointer `sp`, frame pointer `bp`), if the
    /// rule leads to a frame above this one and below the stack's top `high` (the base it
    /// counts from not below `sp`): then `[cfa - 8, cfa)`, the return address into the caller,
    /// lies within `[sp, high)`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn cfa(rule: u64, sp: usize, bp: usize, high: usize) -> Option<usize> {
        let (base, cfa) = cfa_unchecked(rule, sp, bp);
        (cfa > sp && cfa <= high && base >= sp).then_some(cfa)
    }

    /// The register a frame's `rule` counts its CFA from (`bp` or `sp`), and the CFA, unchecked.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn cfa_unchecked(rule: u64, sp: usize, bp: usize) -> (usize, usize) {
        let base = if rule & rules::FROM_FRAME_POINTER != 0 {
            bp
        } else {
            sp
        };
        (base, base.wrapping_add(rules::cfa_offset(rule)))
    }

    /// The return address of the frame `rule`, `sp` and `bp` describe, read without checks.
    ///
    /// # Safety
    ///
    /// `rule` is the rule at the calling frame's current instruction, and a step by it from
    /// there was checked before ([`cfa`]): the word below the CFA is then this frame's return
    /// address.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn own_return_address(rule: u64, sp: usize, bp: usize) -> usize {
        let (_, cfa) = cfa_unchecked(rule, sp, bp);
        // SAFETY: the caller's guarantee.
        unsafe { ((cfa - 8) as *const usize).read() }
    }

    /// The return address one step out of a frame by its `rule` gives, as [`step`] finds it
    /// (the same checks), without the caller's frame pointer: for a walk that stops there.
    ///
    /// # Safety
    ///
    /// As [`step`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn return_address(rule: u64, sp: usize, bp: usize, high: usize) -> Option<usize> {
        let cfa = cfa(rule, sp, bp, high)?;
        // SAFETY: `[cfa - 8, cfa)` lies within `[sp, high)` (`cfa`), live stack (the caller's
        // guarantee).
        Some(unsafe { ((cfa - 8) as *const usize).read() })
    }

    /// One step out of a frame by its `rule`: the frame's stack pointer `sp`, frame pointer `bp`
    /// and the stack's top `high` give the caller's return address, stack pointer (the frame's
    /// CFA) and frame pointer; `None` where the rule does not lead to a frame above this one and
    /// within the stack (the saved frame pointer, where there is one, between the two).
    ///
    /// # Safety
    ///
    /// `[sp, high)` lies within this thread's live stack.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn step(rule: u64, sp: usize, bp: usize, high: usize) -> Option<(usize, usize, usize)> {
        let cfa = cfa(rule, sp, bp, high)?;
        // SAFETY: `[cfa - 8, cfa)` lies within `[sp, high)` (`cfa`), live stack (the caller's
        // guarantee), mapped and readable for as long as the thread runs.
        let next = unsafe { ((cfa - 8) as *const usize).read() };
        let mut bp = bp;
        if rule & rules::SAVES_FRAME_POINTER != 0 {
            let at = cfa.wrapping_sub(rules::saved_at(rule));
            if at < sp || at > cfa - 8 {
                return None;
            }
            // SAFETY: `[at, at + 8)` lies within `[sp, cfa)`, on the live stack as above.
            bp = unsafe { (at as *const usize).read() };
        }
        Some((next, cfa, bp))
    }

    /// The tables walk from a call's entry: `entry_sp` is the stack pointer just after the call
    /// (the return address into the caller lies there), `entry_bp` the caller's frame pointer.
    /// Returns how many frames it wrote to `buf`, or `usize::MAX` for `None`.
    ///
    /// # Safety
    ///
    /// `buf` is valid for `len` writes of words; `entry_sp` and `entry_bp` are the registers at
    /// the entry of a call made on this thread, whose caller has not returned (only
    /// [`tables_entry`] calls this, and nothing else may).
    #[cfg(target_arch = "x86_64")]
    unsafe extern "sysv64" fn walk_from(
        buf: *mut usize,
        len: usize,
        depth: usize,
        entry_sp: usize,
        entry_bp: usize,
    ) -> usize {
        const STUCK: usize = usize::MAX;
        let whole = depth == 0;
        let want = if whole { len } else { depth.min(len) };
        let high = stack_top(entry_sp);
        if want == 0 {
            return 0;
        }
        // `None` where the walk could not follow a frame before it had the traceback.
        let stuck = |n| if whole { n } else { STUCK };
        // (A nonzero top means the word at `entry_sp` lies on the stack.)
        if high == 0 {
            return stuck(0);
        }
        // SAFETY: `[entry_sp, entry_sp + 8)` lies on this thread's stack (checked above): the
        // return address the call pushed.
        let mut ret = unsafe { (entry_sp as *const usize).read() };
        // The caller's registers as they are after the call returns.
        let mut sp = entry_sp + 8;
        let mut bp = entry_bp;
        let mut slot = super::sites::slot(ret);
        // Passing over (for a traceback) the machinery's leading frames.
        let mut skipping = !whole;
        let mut skipped = 0;
        let mut n = 0;
        loop {
            // Steps out of the frame `ret` returns into.
            let rule = slot.rule(ret);
            if rule == 0 {
                return stuck(n);
            }
            if rule & rules::OUTERMOST != 0 {
                break;
            }
            // SAFETY: `sp` is the stack pointer of a live frame on this thread's stack (the
            // entry's, then each caller's, checked by `step`), `high` the stack's top.
            let Some((next, cfa, saved)) = (unsafe { step(rule, sp, bp, high) }) else {
                return stuck(n);
            };
            bp = saved;
            sp = cfa;
            if next == 0 {
                break;
            }
            ret = next;
            slot = super::sites::slot(ret);
            if skipping && skipped < super::PLUMBING_FRAMES && slot.is_plumbing(ret) {
                skipped += 1;
            } else {
                skipping = false;
                // SAFETY: `n < want <= len`: within `buf` (the caller's guarantee).
                unsafe { buf.add(n).write(ret) };
                n += 1;
                if n == want {
                    break;
                }
            }
        }
        n
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn walk_tables(_buf: &mut [usize], _depth: usize) -> Option<usize> {
        None
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn walk_here_one() -> Option<usize> {
        None
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn here_fast() -> Result<usize, Option<super::Place>> {
        Err(None)
    }

    /// # Safety
    ///
    /// As [`super::here_checked`].
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn here_checked(_place: super::Place) -> Option<usize> {
        None
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod fp {
    pub(super) const SUPPORTED: bool = false;
    pub(super) const TABLES: bool = false;

    pub(super) fn walk(_buf: &mut [usize], _depth: usize) -> usize {
        0
    }

    pub(super) fn walk_tables(_buf: &mut [usize], _depth: usize) -> Option<usize> {
        None
    }

    pub(super) fn walk_here_one() -> Option<usize> {
        None
    }

    pub(super) fn here_fast() -> Result<usize, Option<super::Place>> {
        Err(None)
    }

    /// # Safety
    ///
    /// As [`super::here_checked`].
    pub(super) unsafe fn here_checked(_place: super::Place) -> Option<usize> {
        None
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The stack pointer (a local's address may lie elsewhere: AddressSanitizer keeps locals in
    /// frames of its own, off the thread's stack).
    #[inline(always)]
    fn stack_pointer() -> usize {
        let sp: usize;
        // SAFETY: reads a register; touches no memory.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
        sp
    }

    /// The stack's top is found for a word on this thread's stack (the first time and after),
    /// and not for a word elsewhere: the heap, another thread's stack, or the last 7 bytes below
    /// the top (a word there would cross it).
    #[test]
    fn the_stack_top_bounds_only_this_threads_stack() {
        let at = stack_pointer();
        let top = fp::stack_top(at);
        assert!(top > at, "{top:#x} above {at:#x}");
        assert_eq!(fp::stack_top(at), top, "the same once known");
        assert_eq!(fp::stack_top(top - 8), top, "the last word");
        assert_eq!(fp::stack_top(top - 7), 0, "a word crossing the top");
        let heap = Box::new(0u64);
        assert_eq!(fp::stack_top(core::ptr::addr_of!(*heap) as usize), 0);
        let other = std::thread::spawn(|| core::hint::black_box(stack_pointer()))
            .join()
            .unwrap();
        assert_eq!(fp::stack_top(other), 0, "another thread's stack");
    }

    /// The cached tables' walk of this thread's whole stack, asked for more frames than there
    /// are (as a deep traceback does) and walked as far as it goes (as calibration does).
    #[inline(never)]
    fn walk_both() -> (Option<usize>, Option<usize>, Vec<usize>, Vec<usize>) {
        let mut asked = [0usize; 256];
        let mut whole = [0usize; 256];
        let a = core::hint::black_box(fp::walk_tables(&mut asked, 200));
        let w = core::hint::black_box(fp::walk_tables(&mut whole, 0));
        (a, w, asked.to_vec(), whole.to_vec())
    }

    #[test]
    fn the_tables_walk_reaches_the_outermost_frame_without_the_unwinder() {
        let (asked, whole, a, w) = walk_both();
        let whole = whole.expect("a walk as far as it goes gives what it found");
        let asked = asked.expect("a stack shallower than asked is complete at its outermost frame");
        assert!(whole > 3, "{whole} frames");
        // The same frames but for the machinery's leading ones, which a traceback passes over.
        assert!(asked <= whole);
        assert_eq!(a[..asked], w[whole - asked..whole]);
        let mut unwound = Vec::new();
        backtrace::trace(|f| {
            unwound.push(f.ip() as usize);
            true
        });
        assert!(
            unwound.ends_with(&w[whole - 3..whole])
                || unwound[..unwound.len() - 1].ends_with(&w[whole - 3..whole]),
            "the walk ends where the unwinder does: {:#x?} vs {:#x?}",
            &w[..whole],
            unwound
        );
    }
}
