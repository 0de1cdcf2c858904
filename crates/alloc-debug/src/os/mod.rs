//! What the decorators ask of the operating system, off their fast paths: whether memory is
//! mapped (below), the pages and the fault handler of `GuardPages` (`pages`, `faults`), and, for
//! Tracing's stack walks, the loaded objects (`loaded`) and the thread's stack (`stack`).

pub(crate) mod faults;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod loaded;
pub(crate) mod pages;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(crate) mod stack;

/// Whether the `len` bytes at `addr` lie in mapped memory, so that reading them cannot fault:
/// asked of the kernel on unix (`mincore` fails for a range with an unmapped page); assumed
/// elsewhere (as CPython's debug hooks assume of every pointer they are given). Only a debug
/// report asks, for a pointer that is no live block (a block freed already may have gone back to
/// the OS).
pub(crate) fn mapped(addr: *const u8, len: usize) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: `sysconf` has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let start = addr as usize & !(page - 1);
        let Some(end) = (addr as usize).checked_add(len) else {
            return false;
        };
        // One byte per page; a header spans at most two.
        let mut pages = [0u8; 4];
        if (end - start).div_ceil(page) > pages.len() {
            return false;
        }
        // SAFETY: `start` is page-aligned and `pages` has room for a byte per page of the range;
        // `mincore` only reports, it touches no page.
        unsafe {
            libc::mincore(
                start as *mut libc::c_void,
                end - start,
                pages.as_mut_ptr().cast(),
            ) == 0
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (addr, len);
        true
    }
}
