//! A `#[global_allocator]` for the benchmark runner that forwards to one allocator chosen by the
//! environment (`DOMALLOC_BENCH_ALLOCATOR`), read at the process's first allocation, without
//! allocating, so that every block of the process — the runtime's too — comes from the allocator
//! under test. Workloads written with ordinary `std` collections (a `BTreeMap<String, Vec<u64>>`,
//! threads and channels) then measure that allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::peers;

/// The environment variable naming the allocator (one of [`peers::ALL`] but `pool-heap`, which is
/// single-threaded).
pub const ENV: &str = "DOMALLOC_BENCH_ALLOCATOR";

const UNSET: u8 = u8::MAX;
const NAMES: [&str; 12] = [
    "system",
    "mimalloc",
    "jemalloc",
    "pool",
    "domain",
    "guarded",
    "counting",
    "fault-off",
    "tracing",
    "scoped",
    "guard-pages",
    "sampling",
];

/// Forwards to the allocator named by [`ENV`] (the C library if unset or unknown).
pub struct Dispatch {
    chosen: AtomicU8,
}

impl Dispatch {
    /// A dispatcher that chooses at its first call.
    pub const fn new() -> Self {
        Dispatch {
            chosen: AtomicU8::new(UNSET),
        }
    }

    /// The name of the allocator in use (after the first allocation).
    pub fn chosen(&self) -> &'static str {
        NAMES[self.index() as usize]
    }

    #[inline]
    fn index(&self) -> u8 {
        let c = self.chosen.load(Ordering::Relaxed);
        if c != UNSET {
            return c;
        }
        let c = choose();
        // Every thread computes the same answer from the same environment.
        self.chosen.store(c, Ordering::Relaxed);
        c
    }
}

impl Default for Dispatch {
    fn default() -> Self {
        Dispatch::new()
    }
}

/// The prefixes of the runner's allocation plumbing, for tracers to skip (`alloc_core::plumbing`).
static FRAMES: alloc_core::plumbing::Prefixes =
    &["domalloc_benches::peers", "domalloc_benches::dispatch"];

/// The allocator named by the environment, chosen at the process's first allocation (which is
/// also where the runner registers its frames for tracers).
fn choose() -> u8 {
    alloc_core::plumbing::register(&FRAMES);
    // SAFETY: a NUL-terminated name; the value, if any, is a NUL-terminated string that nothing
    // modifies while the process starts.
    let value = unsafe { libc::getenv(c"DOMALLOC_BENCH_ALLOCATOR".as_ptr()) };
    if value.is_null() {
        return 0;
    }
    // SAFETY: as above.
    let bytes = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
    NAMES
        .iter()
        .position(|n| n.as_bytes() == bytes)
        .map_or(0, |i| i as u8)
}

macro_rules! forward {
    ($self:ident, |$a:ident| $body:expr) => {
        match $self.index() {
            0 => {
                let $a = &peers::SYSTEM;
                $body
            }
            1 => {
                let $a = &peers::MIMALLOC;
                $body
            }
            2 => {
                let $a = &peers::JEMALLOC;
                $body
            }
            3 => {
                let $a = &peers::POOL;
                $body
            }
            4 => {
                let $a = &peers::DOMAIN;
                $body
            }
            5 => {
                let $a = &peers::GUARDED;
                $body
            }
            6 => {
                let $a = &peers::COUNTING;
                $body
            }
            8 => {
                let $a = &peers::TRACING;
                $body
            }
            9 => {
                let $a = &peers::SCOPED;
                $body
            }
            10 => {
                let $a = &peers::GUARD_PAGES;
                $body
            }
            11 => {
                let $a = &peers::SAMPLING;
                $body
            }
            _ => {
                let $a = &peers::FAULT_OFF;
                $body
            }
        }
    };
}

// SAFETY: every call goes to the same allocator for the whole process (chosen once, before any
// block exists, from an environment that does not change), which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        forward!(self, |a| unsafe { a.alloc(layout) })
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        forward!(self, |a| unsafe { a.alloc_zeroed(layout) })
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees; the block came from the same allocator.
        forward!(self, |a| unsafe { a.dealloc(ptr, layout) })
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees; the block came from the same allocator.
        forward!(self, |a| unsafe { a.realloc(ptr, layout, new_size) })
    }
}
