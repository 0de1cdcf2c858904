//! Hearing of a thread's end, to give its reader slot back: alloc-arena's [`ExitKey`] (a pthread
//! key's destructor on unix, a fiber-local callback on windows); without an OS a slot is never
//! given back.

use alloc_arena::{ExitKey, ThreadExit};

/// The key whose value is the calling thread's slot index plus one.
static KEY: ExitKey<SlotEnds> = ExitKey::new();

/// What [`KEY`] does at a thread's end.
struct SlotEnds;

impl ThreadExit for SlotEnds {
    fn ended(value: *mut core::ffi::c_void) {
        // The value is the slot's index plus one (never null).
        crate::reclaim::READERS.release(value as usize - 1);
        // Sections after this one (other destructors freeing memory) use the shared counter.
        crate::reclaim::set_mine(crate::reclaim::SHARED);
    }
}

/// Arms the calling thread's exit call for slot `i`; without a key (none left, or no OS), the
/// slot stays taken after the thread ends (a slot lost, never a wrong answer).
pub(crate) fn watch(i: usize) {
    KEY.set((i + 1) as *mut core::ffi::c_void);
}
