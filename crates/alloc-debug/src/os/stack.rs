//! The calling thread's stack, from the C library (`pthread_getattr_np`).

/// The calling thread's stack as `(lowest address, one past the highest)`, or `None` where the C
/// library cannot say. `pthread_getattr_np` may allocate through `malloc` (for the main thread
/// it reads `/proc/self/maps`): callers that trace allocations set their busy flag first.
pub(crate) fn thread_stack() -> Option<(usize, usize)> {
    let mut found = None;
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read, and destroyed
    // once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
            let mut addr: *mut libc::c_void = core::ptr::null_mut();
            let mut size: libc::size_t = 0;
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 && !addr.is_null() {
                found = Some((addr as usize, addr as usize + size));
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    found
}
