//! Capturing the calling stack as return addresses, without allocating: by the platform's
//! unwinder, or by following frame pointers where the program keeps them.
//!
//! The unwinder (`backtrace::trace_unsynchronized`: libgcc's `_Unwind_Backtrace`, or
//! `RtlVirtualUnwind` on 64-bit Windows) works for any code with unwind tables, and reads the
//! call-frame information of every frame it steps over: about 150 ns a frame, microseconds per
//! allocation. A program built with frame pointers (`-C force-frame-pointers=yes`; the standard
//! library of current toolchains keeps them already) links its frames into a chain, and walking
//! it is two loads a frame:
//!
//! ```text
//!   fp ──► [ saved fp of the caller | return address ] ──► [ saved fp | return address ] ──► ...
//! ```
//!
//! Whether the chain can be trusted is not known at compile time (a crate or a C library built
//! without frame pointers uses the register for data), so the first captures of a process
//! ([`CALIBRATION`] of them) are made both ways and compared: frame pointers are used from then on
//! only if every one agreed with the unwinder on its frames. [`set_capture_method`] overrides the
//! choice. The walk itself never leaves the thread's stack: each frame must lie above the
//! previous one and below the stack's top (from the C library, once per thread), so a frame
//! without a frame pointer ends the walk early instead of reading outside the stack.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::frames::PLUMBING_FRAMES;

/// Captures compared both ways before frame pointers are trusted.
pub const CALIBRATION: usize = 8;

/// Frames at the outer end of a stack that the unwinder reports and the frame-pointer chain may
/// not reach: the C library's entry frames (`__libc_start_main` and `_start` under `main`'s
/// caller; `start_thread` and `clone3` for a thread), built without frame pointers.
const ENTRY_FRAMES: usize = 3;

/// How call stacks are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureMethod {
    /// Not decided yet: the next captures calibrate.
    Undecided,
    /// The platform's unwinder (always correct, slow).
    Unwind,
    /// The frame-pointer chain (fast; right only where every frame keeps its frame pointer).
    FramePointers,
}

const UNDECIDED: u8 = 0;
const UNWIND: u8 = 1;
const FRAME_POINTERS: u8 = 2;

static METHOD: AtomicU8 = AtomicU8::new(UNDECIDED);
static AGREED: AtomicUsize = AtomicUsize::new(0);

/// The method captures use now (decided by the first captures of the process, or set).
pub fn capture_method() -> CaptureMethod {
    match METHOD.load(Ordering::Relaxed) {
        UNWIND => CaptureMethod::Unwind,
        FRAME_POINTERS => CaptureMethod::FramePointers,
        _ => CaptureMethod::Undecided,
    }
}

/// Sets how call stacks are captured from now on: `Undecided` calibrates again. Setting
/// `FramePointers` for a program whose frames do not keep them gives short or wrong tracebacks,
/// never a crash (the walk stays on the thread's stack); on a platform without the walk, it means
/// `Unwind`.
pub fn set_capture_method(method: CaptureMethod) {
    let m = match method {
        CaptureMethod::Undecided => UNDECIDED,
        CaptureMethod::Unwind => UNWIND,
        CaptureMethod::FramePointers if fp::SUPPORTED => FRAME_POINTERS,
        CaptureMethod::FramePointers => UNWIND,
    };
    AGREED.store(0, Ordering::Relaxed);
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

    /// Keeps the frames of `buf[..n]` this traceback takes, in place; returns how many.
    fn filter(mut self, buf: &mut [usize], n: usize) -> usize {
        let mut k = 0;
        for i in 0..n {
            if self.done() {
                break;
            }
            if self.offer(buf[i]) {
                buf[k] = buf[i];
                k += 1;
            }
        }
        k
    }
}

/// Captures the traceback `keep` describes into `buf` (at least `depth + PLUMBING_FRAMES` long:
/// calibration fills it whole), most recent frame first; returns how many frames.
///
/// The chain is walked by the same call, from the same frame state, whether frame pointers are
/// trusted or still being calibrated, so that what calibration checks is what is used.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize], depth: usize) -> usize {
    let method = METHOD.load(Ordering::Relaxed);
    if method == UNWIND || !fp::SUPPORTED {
        return unwind(buf, Some(Keep::new(depth)));
    }
    let trusted = method == FRAME_POINTERS;
    // The depth travels as a word (0: the whole chain), not as a `Keep`: a struct passed
    // through memory is read back before its stores retire.
    let m = fp::walk(buf, if trusted { depth } else { 0 });
    // Keeps the walk an ordinary call (not a tail call), as it is on the calibrating path.
    let m = core::hint::black_box(m);
    if trusted {
        return m;
    }
    calibrate(buf, m, Keep::new(depth))
}

/// Compares the chain just walked whole (`buf[..m]`) with the unwinder's capture, and leaves the
/// unwinder's traceback in `buf`; decides once [`CALIBRATION`] captures agreed, or at the first
/// that did not.
#[inline(never)]
fn calibrate(buf: &mut [usize], m: usize, keep: Keep) -> usize {
    let mut walked = [0usize; super::frames::CAPTURE_WORDS];
    let m = m.min(walked.len());
    walked[..m].copy_from_slice(&buf[..m]);
    let n = unwind(buf, None);
    // The unwinder may report the frames of `capture` first; the chain starts at its caller.
    let skip = buf[..n.min(3)]
        .iter()
        .position(|&ip| m > 0 && ip == walked[0])
        .unwrap_or(n);
    // A frame without a frame pointer cuts the chain short (or sends it elsewhere): the chain
    // must reach as far as the unwinder, but for the last frames of a thread's entry (which the
    // C library builds without frame pointers), and agree on every frame it has.
    // (The unwinder ends on a null return address at the outermost frame: not a frame.)
    let outer = buf[..n].iter().rev().take_while(|&&ip| ip == 0).count();
    let want = (n - outer).saturating_sub(skip);
    let common = want.min(m);
    // The chain's first frame must be one of the unwinder's first (`skip < n`), or nothing
    // was compared.
    let agrees = m > 0
        && skip < n
        && m + ENTRY_FRAMES >= want
        && walked[..common] == buf[skip..skip + common];
    if !agrees {
        METHOD.store(UNWIND, Ordering::Relaxed);
    } else if AGREED.fetch_add(1, Ordering::Relaxed) + 1 >= CALIBRATION {
        let _ = METHOD.compare_exchange(
            UNDECIDED,
            FRAME_POINTERS,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    // The frames of `capture` the unwinder reported before the chain's first are not the
    // program's (without a chain, the filter passes over them as the machinery's).
    let lead = if skip < n { skip } else { 0 };
    buf.copy_within(lead..n, 0);
    keep.filter(buf, n - lead)
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

/// Which return addresses belong to the allocation machinery, each resolved once per process.
///
/// An open-addressing table of words, `ip << 2 | class` (0: empty), written with a
/// compare-exchange and never cleared: a return address is resolved the first time a capture
/// meets it among a stack's leading frames (slow, once), then found in a few loads. Past the
/// table's room, addresses are taken for the program's (nothing is lost: resolution strips the
/// machinery's frames again when a report is made).
mod sites {
    use core::sync::atomic::{AtomicUsize, Ordering};

    const SLOTS: usize = 1 << 14;
    const PROBES: usize = 16;
    const PROGRAM: usize = 1;
    const PLUMBING: usize = 2;

    static TABLE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

    #[inline]
    fn home(ip: usize) -> usize {
        (ip as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_shr(50) as usize
            & (SLOTS - 1)
    }

    /// Whether the frame returning to `ip` belongs to the allocation machinery.
    #[inline]
    pub(super) fn is_plumbing(ip: usize) -> bool {
        if ip >> (usize::BITS - 2) != 0 {
            return false;
        }
        let start = home(ip);
        for k in 0..PROBES {
            let slot = &TABLE[(start + k) & (SLOTS - 1)];
            // Relaxed: an entry is one word, complete when seen.
            let e = slot.load(Ordering::Relaxed);
            if e == 0 {
                return learn(ip, start);
            }
            if e >> 2 == ip {
                return e & 3 == PLUMBING;
            }
        }
        false
    }

    /// Resolves `ip` and records what it is, in the first free slot from `start`.
    #[cold]
    fn learn(ip: usize, start: usize) -> bool {
        let plumbing = super::super::frames::frame_is_plumbing(ip);
        let entry = ip << 2 | if plumbing { PLUMBING } else { PROGRAM };
        for k in 0..PROBES {
            let slot = &TABLE[(start + k) & (SLOTS - 1)];
            match slot.compare_exchange(0, entry, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(e) if e >> 2 == ip => break,
                Err(_) => {}
            }
        }
        plumbing
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod fp {
    use core::cell::Cell;

    pub(super) const SUPPORTED: bool = true;

    std::thread_local! {
        /// This thread's stack as `(lowest, highest)` address; `(0, 0)` until first asked,
        /// `(1, 0)` where it could not be had.
        static BOUNDS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// The calling thread's stack from the C library. `pthread_getattr_np` may allocate through
    /// `malloc` (for the main thread it reads `/proc/self/maps`), which may be this very
    /// allocator under `LD_PRELOAD`: Tracing's busy flag keeps that allocation untraced.
    #[cold]
    fn bounds() -> (usize, usize) {
        let _busy = super::super::frames::Busy::enter();
        let mut found = (1, 0);
        // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read, and destroyed
        // once; the out-pointers are valid locals.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
                let mut addr: *mut libc::c_void = core::ptr::null_mut();
                let mut size: libc::size_t = 0;
                if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 && !addr.is_null()
                {
                    found = (addr as usize, addr as usize + size);
                }
                libc::pthread_attr_destroy(&mut attr);
            }
        }
        found
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
    #[inline(never)]
    /// `depth` 0 walks the whole chain (for calibration); otherwise the walk keeps the traceback
    /// [`Keep`](super::Keep) describes.
    pub(super) fn walk(buf: &mut [usize], depth: usize) -> usize {
        let mut keep = (depth > 0).then(|| super::Keep::new(depth));
        let mut fp = frame_pointer();
        let mut skip_own = true;
        let marker = 0u8;
        let sp = core::ptr::addr_of!(marker) as usize;
        let (mut low, mut high) = BOUNDS.with(Cell::get);
        if high == 0 && low == 0 {
            (low, high) = bounds();
            BOUNDS.with(|b| b.set((low, high)));
        }
        // Not on the thread's stack (a signal's alternate stack), or no bounds: no walk.
        if !(low..high).contains(&sp) {
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
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod fp {
    pub(super) const SUPPORTED: bool = false;

    pub(super) fn walk(_buf: &mut [usize], _depth: usize) -> usize {
        0
    }
}
