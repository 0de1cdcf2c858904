//! The calling thread's reader slot number: a native thread-local that allocates nothing.

/// The calling thread's slot number, in a native thread-local (`const`-initialised, no
/// destructor: no registration with std, no allocation).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use core::cell::Cell;

    std::thread_local! {
        static MINE: Cell<usize> = const { Cell::new(0) };
    }

    #[inline(always)]
    pub(crate) fn get() -> usize {
        MINE.with(Cell::get)
    }

    #[inline]
    pub(crate) fn set(v: usize) {
        MINE.with(|m| m.set(v));
    }
}

/// On x86-64 Linux the slot number is a thread-local of the initial-exec model, declared here
/// rather than by `thread_local!` (as alloc-arena's thread cache is): in a shared library
/// (`libdomalloc.so`) `thread_local!` takes the general-dynamic model, a call to
/// `__tls_get_addr` on every read; initial-exec is two instructions, in a program and in a
/// library alike.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    // The variable: 8 zero bytes in `.tbss` (0: no slot yet), each thread's copy made by the C
    // library when the thread starts. Hidden: the library's own, never exported nor interposed.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".balign 8",
        ".globl alloc_domains_reader_slot",
        ".hidden alloc_domains_reader_slot",
        ".type alloc_domains_reader_slot,@object",
        ".size alloc_domains_reader_slot,8",
        "alloc_domains_reader_slot:",
        ".zero 8",
        ".popsection",
    );

    #[inline(always)]
    fn addr() -> *mut usize {
        let p: *mut usize;
        // SAFETY: `fs:0` holds the thread pointer on x86-64 Linux, and the GOT entry
        // (`@GOTTPOFF`) the variable's offset from it, fixed for the process: the sum is the
        // calling thread's copy, valid for the thread's life. Neither value changes while the
        // thread runs, so the asm is pure and reads no Rust memory.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + alloc_domains_reader_slot@GOTTPOFF]",
                p = out(reg) p,
                options(pure, nomem, nostack),
            );
        }
        p
    }

    #[inline(always)]
    pub(crate) fn get() -> usize {
        // SAFETY: the calling thread's own variable, aligned, only ever accessed by it.
        unsafe { addr().read() }
    }

    #[inline]
    pub(crate) fn set(v: usize) {
        // SAFETY: as in `get`.
        unsafe { addr().write(v) }
    }
}

pub(crate) use imp::{get, set};
