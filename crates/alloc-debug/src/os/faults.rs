//! The fault handler of [`GuardPages`](crate::GuardPages): a SIGSEGV (and SIGBUS) handler on unix,
//! a vectored exception handler on Windows, installed once per process. It hands the faulting
//! address to `guard_pages::report_fault`, which writes a report if the address lies in a guard
//! page or a freed slot, and then lets the fault take its course: on unix the previous handler
//! runs (or, where there was none, the default action is restored and the faulting instruction
//! runs again, so the process dies by SIGSEGV as it would have); on Windows the search for a
//! handler goes on.
//!
//! Everything here is async-signal-safe: no allocation, no lock; the report is written with
//! `write(2)` (`WriteFile` on Windows) from a buffer on the stack.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What the faulting instruction did, where the platform says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Read,
    Write,
    Unknown,
}

const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const INSTALLED: u8 = 2;
const FAILED: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(NOT_INSTALLED);
/// Set once a report was written: a fault that comes back (a previous handler that returns)
/// is not reported again.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler, once per process; whether it is installed. Allocates nothing (it is
/// called on an allocation path).
pub(crate) fn install() -> bool {
    match STATE.compare_exchange(
        NOT_INSTALLED,
        INSTALLING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            let ok = platform::install();
            STATE.store(if ok { INSTALLED } else { FAILED }, Ordering::Release);
            ok
        }
        Err(_) => loop {
            match STATE.load(Ordering::Acquire) {
                INSTALLING => core::hint::spin_loop(),
                s => return s == INSTALLED,
            }
        },
    }
}

/// The handler's work, common to the platforms: a report if the address is a guard page's or a
/// freed slot's (the first time only).
fn on_fault(addr: usize, access: Access) {
    if REPORTED.load(Ordering::Relaxed) {
        return;
    }
    if crate::guard_pages::report_fault(addr, access) {
        REPORTED.store(true, Ordering::Relaxed);
    }
}

/// Writes `bytes` to standard error, whole (retrying short writes), without allocating.
pub(crate) fn write_stderr(bytes: &[u8]) {
    platform::write_stderr(bytes);
}

#[cfg(unix)]
mod platform {
    use core::cell::UnsafeCell;
    use core::ffi::{c_int, c_void};
    use core::mem::MaybeUninit;

    use super::{Access, on_fault};

    /// The signals a guard page's fault can arrive as (SIGBUS on some BSDs and macOS).
    const SIGNALS: [c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

    /// The actions that were in place before ours: written once, by `sigaction` as ours is
    /// installed, read by the handler.
    struct Previous(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
    // SAFETY: written only while installing (once, before any guard page can be hit), read
    // afterwards.
    unsafe impl Sync for Previous {}
    static PREVIOUS: Previous = Previous(UnsafeCell::new([MaybeUninit::uninit(); 2]));

    pub(super) fn install() -> bool {
        // SAFETY: a zeroed sigaction is a valid value to fill in.
        let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa_mask` is a valid signal set to empty.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: the previous action goes to its slot in `PREVIOUS` (written here only,
            // once); the new one is a valid action whose handler is async-signal-safe.
            let ok = unsafe {
                let slot = PREVIOUS.0.get().cast::<libc::sigaction>().add(i);
                libc::sigaction(sig, &action, slot) == 0
            };
            if !ok {
                return false;
            }
        }
        true
    }

    extern "C" fn handler(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler; `si_addr` is the
        // faulting address for SIGSEGV and SIGBUS.
        let addr = unsafe { (*info).si_addr() } as usize;
        on_fault(addr, access(context));
        // SAFETY: `info` and `context` are the kernel's, passed on unchanged.
        unsafe { chain(sig, info, context) };
    }

    /// Whether the faulting instruction wrote: the page-fault error code's write bit, on x86-64
    /// Linux.
    fn access(context: *mut c_void) -> Access {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            if context.is_null() {
                return Access::Unknown;
            }
            // SAFETY: a SA_SIGINFO handler's third argument is the interrupted thread's
            // `ucontext_t`.
            let err = unsafe {
                (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_ERR as usize]
            };
            if err & 2 != 0 {
                Access::Write
            } else {
                Access::Read
            }
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = context;
            Access::Unknown
        }
    }

    /// Passes the signal to the action that was in place before ours; where that was the
    /// default (or to ignore it, which a fault cannot be), restores the default action and
    /// returns, so that the faulting instruction runs again and the process dies by the signal.
    ///
    /// # Safety
    /// The handler's arguments, unchanged.
    unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
        let i = if sig == libc::SIGSEGV { 0 } else { 1 };
        // SAFETY: written at installation, before the handler could run.
        let prev = unsafe { &*PREVIOUS.0.get().cast::<libc::sigaction>().add(i) };
        let h = prev.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            // SAFETY: a zeroed sigaction with SIG_DFL is the default action.
            let mut dfl: libc::sigaction = unsafe { core::mem::zeroed() };
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid action; the old one is not asked for.
            unsafe { libc::sigaction(sig, &dfl, core::ptr::null_mut()) };
            return;
        }
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO the handler has this signature.
            let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { core::mem::transmute(h) };
            f(sig, info, context);
        } else {
            // SAFETY: without SA_SIGINFO the handler takes the signal number alone.
            let f: extern "C" fn(c_int) = unsafe { core::mem::transmute(h) };
            f(sig);
        }
    }

    pub(super) fn write_stderr(mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is valid for its length; write(2) is async-signal-safe.
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            if n > 0 {
                bytes = &bytes[n as usize..];
            } else if n < 0
                // SAFETY: this thread's errno.
                && unsafe { *errno() } == libc::EINTR
            {
                continue;
            } else {
                return;
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe fn errno() -> *mut c_int {
        // SAFETY: no preconditions.
        unsafe { libc::__errno_location() }
    }
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe fn errno() -> *mut c_int {
        // SAFETY: no preconditions.
        unsafe { libc::__error() }
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd"
    )))]
    unsafe fn errno() -> *mut c_int {
        // Unknown errno location: a failed write is not retried.
        static mut NONE: c_int = 0;
        &raw mut NONE
    }
}

#[cfg(windows)]
mod platform {
    use windows_sys::Win32::Foundation::EXCEPTION_ACCESS_VIOLATION;
    use windows_sys::Win32::Storage::FileSystem::WriteFile;
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
    use windows_sys::Win32::System::Diagnostics::Debug::{
        AddVectoredExceptionHandler, EXCEPTION_CONTINUE_SEARCH, EXCEPTION_POINTERS,
    };

    use super::{Access, on_fault};

    pub(super) fn install() -> bool {
        // SAFETY: a handler that only reads the exception record and writes to stderr.
        !unsafe { AddVectoredExceptionHandler(1, Some(handler)) }.is_null()
    }

    unsafe extern "system" fn handler(pointers: *mut EXCEPTION_POINTERS) -> i32 {
        // SAFETY: the system passes valid exception pointers to a vectored handler.
        let record = unsafe { &*(*pointers).ExceptionRecord };
        if record.ExceptionCode == EXCEPTION_ACCESS_VIOLATION && record.NumberParameters >= 2 {
            let access = match record.ExceptionInformation[0] {
                0 => Access::Read,
                1 => Access::Write,
                _ => Access::Unknown,
            };
            on_fault(record.ExceptionInformation[1], access);
        }
        EXCEPTION_CONTINUE_SEARCH
    }

    pub(super) fn write_stderr(mut bytes: &[u8]) {
        // SAFETY: no preconditions.
        let h = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
        while !bytes.is_empty() {
            let mut n = 0u32;
            let len = bytes.len().min(u32::MAX as usize) as u32;
            // SAFETY: `bytes` is valid for `len` bytes; `n` receives the count written.
            let ok = unsafe { WriteFile(h, bytes.as_ptr(), len, &mut n, core::ptr::null_mut()) };
            if ok == 0 || n == 0 {
                return;
            }
            bytes = &bytes[n as usize..];
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod platform {
    pub(super) fn install() -> bool {
        let _ = super::on_fault;
        false
    }
    pub(super) fn write_stderr(bytes: &[u8]) {
        let _ = bytes;
    }
}
