//! The platform calls of the crate, in one place: reading the environment without allocating,
//! ending the process without running exit handlers (here), a thread's reader slot in a
//! thread-local (`thread_slot`), hearing of a thread's end (`thread_exit`), and the expedited
//! process-wide barrier the table's reclamation uses (`membarrier`).

#[cfg(not(loom))]
pub(crate) mod membarrier;
#[cfg(not(loom))]
pub(crate) mod thread_exit;
#[cfg(not(loom))]
pub(crate) mod thread_slot;

/// Copies the value of environment variable `name` into `buf` (as much as fits) without
/// allocating; returns how many bytes were copied and the value's full length (more than
/// `buf.len()` when it was cut), or `None` if the variable is unset.
pub(crate) fn getenv(name: &core::ffi::CStr, buf: &mut [u8]) -> Option<(usize, usize)> {
    #[cfg(unix)]
    {
        // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated string that stays
        // valid while the environment is not modified (start-up: nothing modifies it yet).
        let value = unsafe { libc::getenv(name.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: as above.
        let bytes = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some((n, bytes.len()))
    }
    #[cfg(windows)]
    {
        let mut big = [0u8; 256];
        // SAFETY: a NUL-terminated name and a buffer of the given length.
        let n = unsafe {
            windows_sys::Win32::System::Environment::GetEnvironmentVariableA(
                name.as_ptr().cast(),
                big.as_mut_ptr(),
                big.len() as u32,
            )
        } as usize;
        if n == 0 {
            return None;
        }
        // Too long for the buffer: nothing was copied, only the length needed came back.
        let copied = if n >= big.len() { 0 } else { n };
        let shown = copied.min(buf.len());
        buf[..shown].copy_from_slice(&big[..shown]);
        Some((shown, n))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (name, buf);
        None
    }
}

/// Ends the process with `status` at once: no exit handler runs (one would allocate, and come
/// back into a start-up in progress).
pub(crate) fn exit_now(status: i32) -> ! {
    #[cfg(unix)]
    // SAFETY: ends the process; nothing of it is used afterwards.
    unsafe {
        libc::_exit(status)
    }
    #[cfg(not(unix))]
    {
        let _ = status;
        std::process::abort()
    }
}
