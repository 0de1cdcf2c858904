//! Hearing of a thread's end, to give its reader slot back: a pthread key's destructor (unix), a
//! fiber-local callback (windows); elsewhere a slot is never given back.

/// Hearing of a thread's end, to give its slot back.
#[cfg(unix)]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// The pthread key plus one (0: not created yet).
    static KEY: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_thread_exit(value: *mut libc::c_void) {
        // The value is the slot's index plus one (never null).
        crate::reclaim::READERS.release(value as usize - 1);
        // Sections after this one (other destructors freeing memory) use the shared counter.
        crate::reclaim::set_mine(crate::reclaim::SHARED);
    }

    fn key() -> Option<libc::pthread_key_t> {
        let k = KEY.load(Ordering::Acquire);
        if k != 0 {
            return Some((k - 1) as libc::pthread_key_t);
        }
        let mut fresh: libc::pthread_key_t = 0;
        // SAFETY: a valid out-pointer and an `extern "C"` destructor.
        if unsafe { libc::pthread_key_create(&mut fresh, Some(on_thread_exit)) } != 0 {
            return None;
        }
        match KEY.compare_exchange(0, fresh as usize + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Some(fresh),
            Err(winner) => {
                // SAFETY: our key was never used.
                unsafe { libc::pthread_key_delete(fresh) };
                Some((winner - 1) as libc::pthread_key_t)
            }
        }
    }

    /// Arms the calling thread's exit destructor for slot `i`; without a key, the slot stays
    /// taken after the thread ends (a slot lost, never a wrong answer).
    pub(crate) fn watch(i: usize) {
        if let Some(k) = key() {
            // SAFETY: a created key; the value is a non-null tag, never dereferenced.
            unsafe { libc::pthread_setspecific(k, (i + 1) as *const libc::c_void) };
        }
    }
}

/// Hearing of a thread's end, to give its slot back.
#[cfg(windows)]
mod imp {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use windows_sys::Win32::System::Threading::{
        FLS_OUT_OF_INDEXES, FlsAlloc, FlsFree, FlsSetValue,
    };

    /// The fiber-local index plus one (0: not made yet).
    static KEY: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "system" fn on_thread_exit(value: *const core::ffi::c_void) {
        if !value.is_null() {
            crate::reclaim::READERS.release(value as usize - 1);
            crate::reclaim::set_mine(crate::reclaim::SHARED);
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

    /// Arms the calling thread's exit callback for slot `i`.
    pub(crate) fn watch(i: usize) {
        if let Some(k) = key() {
            // SAFETY: a made index; the value is a non-null tag, never dereferenced.
            unsafe { FlsSetValue(k, (i + 1) as *const core::ffi::c_void) };
        }
    }
}

/// Elsewhere, a thread's slot is never given back: a slot lost per thread, then the shared
/// counter.
#[cfg(not(any(unix, windows)))]
mod imp {
    pub(crate) fn watch(_i: usize) {}
}

pub(crate) use imp::watch;
