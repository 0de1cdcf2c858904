//! Where the calling thread's cache (`threads::ThreadCache`) lives with `std`: a native
//! thread-local, read in one or two instructions with no call. On x86-64 Linux it is declared by
//! hand in the initial-exec TLS model (see below); elsewhere it is a `const` `thread_local!`.

/// With `std`, each thread's cache lives in a native thread-local (`const`-initialised, no
/// destructor, no registration with std, no allocation: its address is one instruction away), and
/// the OS slot serves only to hear of the thread's end. Without `std`, caches come from a store
/// and the OS slot is read on every call.
#[cfg(all(feature = "std", not(all(target_arch = "x86_64", target_os = "linux"))))]
pub(crate) mod imp {
    use core::cell::UnsafeCell;

    std::thread_local! {
        static CACHE: UnsafeCell<crate::threads::ThreadCache> =
            const { UnsafeCell::new(crate::threads::ThreadCache::EMPTY) };
    }

    #[inline(always)]
    pub(crate) fn cache() -> *mut crate::threads::ThreadCache {
        CACHE.with(UnsafeCell::get)
    }

    /// The calling thread's token: its cache's address.
    #[inline(always)]
    pub(crate) fn token() -> usize {
        cache() as usize
    }
}

/// On x86-64 Linux the cache is a thread-local of the initial-exec model, declared here rather
/// than by `thread_local!`: in a shared library (`libdomalloc.so`) `thread_local!` takes the
/// general-dynamic model, where every read calls `__tls_get_addr`; initial-exec reads the
/// variable's offset from the GOT and adds the thread pointer, two instructions and no call, in a
/// program and in a library alike. (A library with initial-exec TLS is placed in the static TLS
/// block at load; glibc keeps room for that, which is how mimalloc and jemalloc do the same.)
#[cfg(all(feature = "std", target_arch = "x86_64", target_os = "linux"))]
pub(crate) mod imp {
    use crate::threads::ThreadCache;

    const SIZE: usize = core::mem::size_of::<ThreadCache>();
    const ALIGN: usize = core::mem::align_of::<ThreadCache>();

    // The variable: zero bytes in `.tbss`, each thread's copy made by the C library when the
    // thread starts. All zeros is `ThreadCache::EMPTY` (ids 0, null slots, not registered).
    // Hidden: it is the library's own, never exported nor interposed.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".balign {align}",
        ".globl alloc_arena_thread_cache",
        ".hidden alloc_arena_thread_cache",
        ".type alloc_arena_thread_cache,@object",
        ".size alloc_arena_thread_cache,{size}",
        "alloc_arena_thread_cache:",
        ".zero {size}",
        ".popsection",
        size = const SIZE,
        align = const ALIGN,
    );

    const _: () = {
        // What `.tbss` holds at a thread's start must be the empty cache.
        assert!(ThreadCache::EMPTY.ways[0].id == 0 && !ThreadCache::EMPTY.registered);
    };

    #[inline(always)]
    pub(crate) fn cache() -> *mut ThreadCache {
        let p: *mut ThreadCache;
        // SAFETY: `fs:0` holds the thread pointer on x86-64 Linux (the TCB's self pointer), and
        // the GOT entry (`@GOTTPOFF`) the variable's offset from it, fixed for the process: the
        // sum is the calling thread's copy of the variable, valid for the thread's life. Neither
        // value changes while the thread runs, so the asm is pure and reads no Rust memory.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + alloc_arena_thread_cache@GOTTPOFF]",
                p = out(reg) p,
                options(pure, nomem, nostack),
            );
            // SAFETY: a thread-local's address is never null.
            core::hint::assert_unchecked(!p.is_null());
        }
        p
    }

    /// The calling thread's token: its thread pointer (`fs:0`), one instruction. The thread's
    /// cache lies at a fixed offset from it, so tokens are as unique among live threads as the
    /// caches' addresses, and change hands the same way (the C library reuses a thread's block,
    /// TCB and static TLS together, only after the thread is gone).
    #[inline(always)]
    pub(crate) fn token() -> usize {
        let tp: usize;
        // SAFETY: `fs:0` holds the thread pointer on x86-64 Linux, fixed for the thread's life:
        // the asm is pure and reads no Rust memory.
        unsafe {
            core::arch::asm!(
                "mov {tp}, qword ptr fs:[0]",
                tp = out(reg) tp,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        tp
    }
}

#[cfg(feature = "std")]
pub(crate) use imp::{cache, token};
