//! windows: `VirtualAlloc`, `VirtualFree`.

use crate::sync::{AtomicUsize, Ordering};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use alloc_core::ArenaError;
use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_DECOMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_NOACCESS, PAGE_READWRITE,
    VirtualAlloc, VirtualFree,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, GetTickCount64, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    FLS_OUT_OF_INDEXES, FlsAlloc, FlsFree, FlsGetValue, FlsSetValue, SwitchToThread,
};

use super::ThreadExit;

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

/// A fiber-local index whose callback calls `H::ended` (see [`ExitKey`](super::ExitKey)).
pub struct ExitKey<H> {
    /// The fiber-local index plus one (0: not made yet). A plain atomic, not the loom shim's: a
    /// handle made once, in no protocol the models check.
    key: core::sync::atomic::AtomicUsize,
    handler: PhantomData<fn() -> H>,
}

impl<H: ThreadExit> ExitKey<H> {
    /// An index not made yet (it is, at the first [`set`](Self::set)).
    pub const fn new() -> Self {
        ExitKey {
            key: core::sync::atomic::AtomicUsize::new(0),
            handler: PhantomData,
        }
    }

    unsafe extern "system" fn callback(value: *const c_void) {
        // Windows calls the callback for every fiber-local index, null values included.
        if !value.is_null() {
            H::ended(value.cast_mut());
        }
    }

    fn key(&self) -> Option<u32> {
        use core::sync::atomic::Ordering;
        let k = self.key.load(Ordering::Acquire);
        if k != 0 {
            return Some((k - 1) as u32);
        }
        // SAFETY: registers a plain callback.
        let fresh = unsafe { FlsAlloc(Some(Self::callback)) };
        if fresh == FLS_OUT_OF_INDEXES {
            return None;
        }
        match self
            .key
            .compare_exchange(0, fresh as usize + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(fresh),
            Err(winner) => {
                // SAFETY: our index was never used.
                unsafe { FlsFree(fresh) };
                Some((winner - 1) as u32)
            }
        }
    }

    /// The calling thread's value (null if it set none, or if the index was never made).
    #[inline]
    pub fn get(&self) -> *mut c_void {
        let k = self.key.load(core::sync::atomic::Ordering::Relaxed);
        if k == 0 {
            return ptr::null_mut();
        }
        // SAFETY: an index made by `key()`.
        unsafe { FlsGetValue((k - 1) as u32).cast() }
    }

    /// Stores the calling thread's value (null: no call at its end); false if the OS has no
    /// index left, or refused the value.
    pub fn set(&self, value: *mut c_void) -> bool {
        let Some(k) = self.key() else { return false };
        // SAFETY: a made index; the value is only handed back (to `get` and `H::ended`).
        unsafe { FlsSetValue(k, value.cast_const()) != 0 }
    }
}
