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

/// Captures up to `buf.len()` return addresses of the calling stack, most recent first (the
/// first is the return address into this function's caller); returns how many.
///
/// The chain is walked by the same call, from the same frame state, whether frame pointers are
/// trusted or still being calibrated, so that what calibration checks is what is used.
#[inline(never)]
pub(crate) fn capture(buf: &mut [usize]) -> usize {
    let method = METHOD.load(Ordering::Relaxed);
    if method == UNWIND || !fp::SUPPORTED {
        return unwind(buf);
    }
    let m = fp::walk(buf);
    // Keeps the walk an ordinary call (not a tail call), as it is on the calibrating path.
    let m = core::hint::black_box(m);
    if method == FRAME_POINTERS {
        return m;
    }
    calibrate(buf, m)
}

/// Compares the chain just walked (`buf[..m]`) with the unwinder's capture, which it leaves in
/// `buf`; decides once [`CALIBRATION`] captures agreed, or at the first that did not.
#[inline(never)]
fn calibrate(buf: &mut [usize], m: usize) -> usize {
    let mut walked = [0usize; super::frames::CAPTURE_WORDS];
    let m = m.min(walked.len());
    walked[..m].copy_from_slice(&buf[..m]);
    let n = unwind(buf);
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
    let agrees = m > 0 && m + ENTRY_FRAMES >= want && walked[..common] == buf[skip..skip + common];
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
    n
}

/// The unwinder's capture; the frames of the unwinder and of the function this is inlined into
/// are skipped.
#[inline(always)]
fn unwind(buf: &mut [usize]) -> usize {
    let marker = 0u8;
    let here = core::ptr::addr_of!(marker) as usize;
    let mut n = 0;
    // SAFETY: on the platforms domalloc builds for, the unwinder behind `trace_unsynchronized`
    // (libgcc's `_Unwind_Backtrace`, or `RtlVirtualUnwind` on 64-bit Windows) is safe to call
    // from several threads at once; the callback neither panics nor allocates.
    unsafe {
        backtrace::trace_unsynchronized(|f| {
            // Frames of the unwinder and of this function lie below `marker`.
            let sp = f.sp() as usize;
            if sp != 0 && sp <= here {
                return true;
            }
            if n < buf.len() {
                buf[n] = f.ip() as usize;
                n += 1;
            }
            n < buf.len()
        });
    }
    core::hint::black_box(&marker);
    n
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
    pub(super) fn walk(buf: &mut [usize]) -> usize {
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
            } else {
                buf[n] = ret;
                n += 1;
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

    pub(super) fn walk(_buf: &mut [usize]) -> usize {
        0
    }
}
