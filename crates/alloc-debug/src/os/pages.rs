//! Address space for [`GuardPages`](crate::GuardPages): one reservation of inaccessible pages,
//! parts of which are made readable and writable and inaccessible again. mmap and mprotect on
//! unix, VirtualAlloc and VirtualProtect on Windows. None of these allocates.

use core::ptr::NonNull;

/// The size of a page (asked once of the OS; 4096 if it cannot say).
pub(crate) fn page_size() -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            let p = ask_page_size();
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

#[cfg(unix)]
fn ask_page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 && (p as usize).is_power_of_two() => p as usize,
        _ => 4096,
    }
}

#[cfg(windows)]
fn ask_page_size() -> usize {
    use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
    // SAFETY: SYSTEM_INFO is plain data; GetSystemInfo fills it.
    let mut info: SYSTEM_INFO = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { GetSystemInfo(&mut info) };
    match info.dwPageSize as usize {
        p if p > 0 && p.is_power_of_two() => p,
        _ => 4096,
    }
}

#[cfg(not(any(unix, windows)))]
fn ask_page_size() -> usize {
    4096
}

/// Reserves `len` bytes (a multiple of the page size) of inaccessible address space; `None` if
/// the OS refuses.
pub(crate) fn reserve(len: usize) -> Option<NonNull<u8>> {
    #[cfg(unix)]
    {
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(p.cast())
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{MEM_RESERVE, PAGE_NOACCESS, VirtualAlloc};
        // SAFETY: a fresh reservation at an address the OS chooses.
        let p = unsafe { VirtualAlloc(core::ptr::null(), len, MEM_RESERVE, PAGE_NOACCESS) };
        NonNull::new(p.cast())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = len;
        None
    }
}

/// Makes the `len` bytes at `addr` readable and writable (committing them on Windows); whether
/// the OS did.
///
/// # Safety
/// `addr..addr + len` is page-aligned and lies in a reservation made by [`reserve`] that is
/// still held.
pub(crate) unsafe fn open(addr: *mut u8, len: usize) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: the caller's guarantee: pages of our own reservation.
        unsafe { libc::mprotect(addr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{MEM_COMMIT, PAGE_READWRITE, VirtualAlloc};
        // SAFETY: the caller's guarantee: pages of our own reservation; committing pages that
        // are committed already only sets their protection.
        unsafe { !VirtualAlloc(addr.cast(), len, MEM_COMMIT, PAGE_READWRITE).is_null() }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (addr, len);
        false
    }
}

/// Makes the `len` bytes at `addr` inaccessible again (their contents stay); whether the OS did.
///
/// # Safety
/// As for [`open`], and the pages were opened by it (on Windows, only committed pages take a
/// protection).
pub(crate) unsafe fn close(addr: *mut u8, len: usize) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: the caller's guarantee: pages of our own reservation.
        unsafe { libc::mprotect(addr.cast(), len, libc::PROT_NONE) == 0 }
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{PAGE_NOACCESS, VirtualProtect};
        let mut old = 0u32;
        // SAFETY: the caller's guarantee: committed pages of our own reservation.
        unsafe { VirtualProtect(addr.cast(), len, PAGE_NOACCESS, &mut old) != 0 }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (addr, len);
        false
    }
}

/// Gives a reservation back to the OS.
///
/// # Safety
/// `addr` and `len` are those of a reservation made by [`reserve`]; nothing in it is used again.
pub(crate) unsafe fn release(addr: *mut u8, len: usize) {
    #[cfg(unix)]
    {
        // SAFETY: the caller's guarantee: the whole reservation, no longer used.
        unsafe { libc::munmap(addr.cast(), len) };
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{MEM_RELEASE, VirtualFree};
        let _ = len;
        // SAFETY: the caller's guarantee: the base of the whole reservation, no longer used.
        unsafe { VirtualFree(addr.cast(), 0, MEM_RELEASE) };
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (addr, len);
    }
}
