//! The expedited process-wide barrier (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, Linux):
//! once registered, a writer's barrier makes every running thread run a full fence, so the
//! table's readers need only a compiler fence. Elsewhere `expedited` answers false and the
//! readers use `SeqCst` fences.

use core::sync::atomic::{AtomicBool, Ordering};

/// Set once the process registered for `MEMBARRIER_CMD_PRIVATE_EXPEDITED`.
static MEMBARRIER: AtomicBool = AtomicBool::new(false);

#[inline(always)]
pub(crate) fn registered() -> bool {
    MEMBARRIER.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(target_os = "linux")]
const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Registers the process for expedited private barriers and switches readers to compiler
/// fences; called at start-up (the first allocation) and in a child after `fork` (the
/// registration is not inherited). Makes a system call, allocates nothing.
pub(crate) fn init() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the membarrier system call with a command and no pointer arguments.
        let r =
            unsafe { libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) };
        // Release: the registration precedes every reader that reads the mode as set.
        MEMBARRIER.store(r == 0, Ordering::Release);
    }
}

/// One expedited barrier: every running thread of the process has run a full fence when it
/// returns true.
pub(crate) fn expedited() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `init`.
        unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}
