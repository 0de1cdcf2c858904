//! The functions `os` needs from an operating system, for targets that have none
//! (`target_os = "none"` and other targets that are neither unix nor windows): no memory is ever
//! mapped (arenas come from a [`RegionArenas`](crate::RegionArenas)), no clock, no thread key.

use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use alloc_core::ArenaError;

use super::ThreadExit;

/// The unit `map_forever` rounds to (nothing is mapped: see `map_aligned`).
pub(crate) fn page_size() -> usize {
    4096
}

/// There is no OS to map memory from: every request fails, so the registry's leaves come from
/// its reserved static ones only.
pub(crate) fn map_aligned(size: usize, align: usize) -> Result<NonNull<u8>, ArenaError> {
    Err(ArenaError::Unsupported {
        size,
        align,
        reason: "no operating system to map memory from",
    })
}

/// # Safety
/// Never called: `map_aligned` never hands out memory.
pub(crate) unsafe fn unmap(_ptr: NonNull<u8>, _size: usize) {
    unreachable!("no mapping was ever made")
}

/// Reports a fatal misuse (a bad free) by panicking with the report's line: the program's panic
/// handler decides what an embedded target does with it.
pub(crate) fn fatal(line: &[u8]) -> ! {
    let text = core::str::from_utf8(line).unwrap_or("domalloc: fatal misuse");
    panic!("{}", text.trim_end())
}

/// No entropy source: a mix (splitmix64) of a counter and of a stack and a static address. It
/// keeps a secure heap's link encoding a check against corrupted links, but it is no secret.
pub(crate) fn random_u64() -> u64 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let local = 0u8;
    let mut z = (CALLS.fetch_add(1, Ordering::Relaxed) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (core::ptr::addr_of!(local) as usize as u64).rotate_left(32)
        ^ core::ptr::addr_of!(CALLS) as usize as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Nothing to yield to: a CPU pause.
pub(crate) fn yield_now() {
    core::hint::spin_loop();
}

/// No clock: always 0. Purges by age then never run (a region's provider does not decommit
/// anyway), and `trim` still gives back everything.
pub(crate) fn now_ms() -> u64 {
    0
}

/// No thread key without an OS: nothing is stored and no thread's end is heard (nothing here
/// builds `PoolAllocator`, whose per-thread heaps need one; `LockedHeap` is the shared front on
/// such a target).
pub struct ExitKey<H> {
    handler: PhantomData<fn() -> H>,
}

impl<H: ThreadExit> ExitKey<H> {
    /// The key (there is nothing to create).
    pub const fn new() -> Self {
        ExitKey {
            handler: PhantomData,
        }
    }

    /// Always null: no value is ever stored.
    #[inline]
    pub fn get(&self) -> *mut c_void {
        ptr::null_mut()
    }

    /// Always false: there is no place to store a value.
    pub fn set(&self, _value: *mut c_void) -> bool {
        false
    }
}
