//! windows: `VirtualAlloc`, `VirtualFree`.

use crate::sync::{AtomicUsize, Ordering};
use core::ffi::c_void;
use core::ptr::{self, NonNull};

use alloc_core::ArenaError;
use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_NOACCESS, PAGE_READWRITE,
    VirtualAlloc, VirtualFree,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, GetTickCount64, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::SwitchToThread;

fn last_error() -> i32 {
    // SAFETY: GetLastError has no preconditions.
    unsafe { GetLastError() as i32 }
}

/// The page size, the unit of commit and decommit.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: SYSTEM_INFO is plain data; GetSystemInfo fills it.
    let p = unsafe {
        let mut info: SYSTEM_INFO = core::mem::zeroed();
        GetSystemInfo(&mut info);
        info.dwPageSize as usize
    };
    let p = if p > 0 { p } else { 4096 };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Reserves `size + align` bytes to find an aligned address, releases the reservation and maps
/// exactly `size` bytes there; another thread may take the address in between, so it retries.
pub(crate) fn map_aligned(size: usize, align: usize) -> Result<NonNull<u8>, ArenaError> {
    let len = size.checked_add(align).ok_or(ArenaError::Unsupported {
        size,
        align,
        reason: "size plus alignment overflows the address space",
    })?;
    for _ in 0..16 {
        // SAFETY: a reservation at an address of the system's choosing has no preconditions.
        let probe = unsafe { VirtualAlloc(ptr::null(), len, MEM_RESERVE, PAGE_NOACCESS) };
        if probe.is_null() {
            return Err(ArenaError::Os {
                operation: "map",
                size,
                code: last_error(),
            });
        }
        let aligned = (probe as usize).next_multiple_of(align);
        // SAFETY: `probe` is the reservation just made; releasing it needs size 0.
        unsafe { VirtualFree(probe, 0, MEM_RELEASE) };
        // SAFETY: asking for a fixed address that was free a moment ago; failure means another
        // thread took it, and the loop tries again.
        let p = unsafe {
            VirtualAlloc(
                aligned as *const c_void,
                size,
                MEM_RESERVE | MEM_COMMIT,
                PAGE_READWRITE,
            )
        };
        if let Some(p) = NonNull::new(p.cast::<u8>()) {
            return Ok(p);
        }
    }
    Err(ArenaError::Os {
        operation: "map",
        size,
        code: last_error(),
    })
}

/// # Safety
/// `ptr` is a mapping made by `map_aligned`, no longer used.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, _size: usize) {
    // SAFETY: the caller's guarantee; MEM_RELEASE takes the base address and size 0.
    unsafe { VirtualFree(ptr.as_ptr().cast(), 0, MEM_RELEASE) };
}

/// # Safety
/// The page-aligned range lies in a live mapping and its contents are no longer needed.
pub(crate) unsafe fn decommit(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: the caller's guarantee.
    unsafe { VirtualFree(ptr.as_ptr().cast(), len, MEM_DECOMMIT) != 0 }
}

/// # Safety
/// The range lies in a live mapping.
pub(crate) unsafe fn commit(ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
    // SAFETY: the caller's guarantee; committing a reserved range of our own mapping.
    let p = unsafe { VirtualAlloc(ptr.as_ptr().cast(), len, MEM_COMMIT, PAGE_READWRITE) };
    if p.is_null() {
        return Err(ArenaError::Os {
            operation: "commit",
            size: len,
            code: last_error(),
        });
    }
    Ok(())
}

pub(crate) fn advise_huge(_ptr: NonNull<u8>, _len: usize) {}

/// Writes `line` to stderr and ends the process (no allocation, no unwinding).
pub(crate) fn fatal(line: &[u8]) -> ! {
    use windows_sys::Win32::Storage::FileSystem::WriteFile;
    use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
    let mut written = 0u32;
    // SAFETY: the standard error handle (or an invalid one, which WriteFile refuses) and a valid
    // buffer; FailFast-style termination after it.
    unsafe {
        WriteFile(
            GetStdHandle(STD_ERROR_HANDLE),
            line.as_ptr(),
            line.len() as u32,
            &mut written,
            core::ptr::null_mut(),
        );
        windows_sys::Win32::System::Threading::ExitProcess(3)
    }
}

/// 64 bits for the secure pools' keys: the tick count and an address mixed (not cryptographic).
pub(crate) fn random_u64() -> u64 {
    let local = 0u8;
    // SAFETY: GetTickCount64 has no preconditions.
    let t = unsafe { GetTickCount64() };
    t.rotate_left(29) ^ (core::ptr::addr_of!(local) as u64)
}

pub(crate) fn yield_now() {
    // SAFETY: SwitchToThread has no preconditions.
    unsafe { SwitchToThread() };
}

/// A coarse monotonic clock in milliseconds (for purge delays; read only on rare paths).
pub(crate) fn now_ms() -> u64 {
    // SAFETY: GetTickCount64 has no preconditions.
    unsafe { GetTickCount64() }
}

/// The OS's fiber-local slot for the calling thread's cache (an FLS index), whose callback tells
/// `threads` that the thread ended.
pub(crate) mod thread_key {
    use crate::sync::{AtomicUsize, Ordering};
    use crate::threads::ThreadCache;
    use windows_sys::Win32::System::Threading::{
        FLS_OUT_OF_INDEXES, FlsAlloc, FlsFree, FlsGetValue, FlsSetValue,
    };

    /// The fiber-local index plus one (0: not made yet).
    static KEY: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "system" fn on_thread_exit(value: *const core::ffi::c_void) {
        if !value.is_null() {
            // SAFETY: the OS passes the value this thread stored: its cache; the thread is ending.
            unsafe { crate::threads::thread_ended(value.cast_mut().cast()) }
        }
    }

    fn key() -> Option<u32> {
        let k = KEY.load(Ordering::Acquire);
        if k != 0 {
            return Some((k - 1) as u32);
        }
        // SAFETY: registers a plain callback.
        let fresh = unsafe { FlsAlloc(Some(on_thread_exit)) };
        if fresh == FLS_OUT_OF_INDEXES {
            return None;
        }
        match KEY.compare_exchange(0, fresh as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                // SAFETY: our index was never used.
                unsafe { FlsFree(fresh) };
                Some((winner - 1) as u32)
            }
        }
    }

    #[cfg_attr(feature = "std", allow(dead_code))]
    #[inline]
    pub(crate) fn get() -> *mut ThreadCache {
        let k = KEY.load(Ordering::Relaxed);
        if k == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: an index made by `key()`.
        unsafe { FlsGetValue((k - 1) as u32).cast() }
    }

    /// Makes `c` the calling thread's cache (null: forget it).
    pub(crate) fn set(c: *mut ThreadCache) -> bool {
        let Some(k) = key() else { return false };
        // SAFETY: a made index; the value is this thread's cache.
        unsafe { FlsSetValue(k, c.cast_const().cast()) != 0 }
    }
}
