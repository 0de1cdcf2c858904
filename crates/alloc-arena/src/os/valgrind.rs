//! valgrind's client requests: the way a program tells the tool running it about its memory
//! (memcheck's `MALLOCLIKE_BLOCK`, `MAKE_MEM_NOACCESS`, ...), built with the `valgrind` feature.
//!
//! A request is a special instruction sequence that does nothing on a real CPU and that valgrind's
//! translator recognises. On x86-64: four rotations of `rdi` by 3, 13, 61 and 51 bits (128 in
//! all, so `rdi` is unchanged), then `xchg rbx, rbx`; `rax` holds the address of six words (the
//! request code and five arguments), `rdx` the value to return when nothing answers, and the
//! answer comes back in `rdx`. Outside valgrind the sequence changes no register and the default
//! (0 here) is returned. This is the ABI of `valgrind.h` (the codes below are its public enums,
//! which valgrind promises never to renumber), written once here rather than pulled in through a
//! crate that compiles the C header (`crabgrind` needs libclang at build time).
//!
//! Other architectures have other sequences; there every request is a no-op returning 0, so a
//! build with the feature still runs, unchecked.

/// `VG_USERREQ__MALLOCLIKE_BLOCK`: a heap block was handed out (address, size, redzone, zeroed).
pub(crate) const MALLOCLIKE_BLOCK: usize = 0x1301;
/// `VG_USERREQ__FREELIKE_BLOCK`: a heap block was freed (address, redzone).
pub(crate) const FREELIKE_BLOCK: usize = 0x1302;
/// Memcheck's requests start at `('M' << 24) | ('C' << 16)`.
const MEMCHECK_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
/// `VG_USERREQ__MAKE_MEM_NOACCESS` (address, length).
pub(crate) const MAKE_MEM_NOACCESS: usize = MEMCHECK_BASE;
/// `VG_USERREQ__MAKE_MEM_UNDEFINED` (address, length).
pub(crate) const MAKE_MEM_UNDEFINED: usize = MEMCHECK_BASE + 1;
/// `VG_USERREQ__MAKE_MEM_DEFINED` (address, length).
pub(crate) const MAKE_MEM_DEFINED: usize = MEMCHECK_BASE + 2;

/// Sends request `code` with its arguments to valgrind; returns its answer, or 0 when the program
/// does not run under valgrind (or on an architecture without the sequence).
#[inline(always)]
pub(crate) fn request(code: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize {
    let args: [usize; 6] = [code, a1, a2, a3, a4, 0];
    imp(&args)
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn imp(args: &[usize; 6]) -> usize {
    let mut result: usize = 0;
    // SAFETY: on a CPU the sequence rotates `rdi` by 128 bits in all (unchanged) and swaps `rbx`
    // with itself: no register or memory changes, only the flags (not declared preserved).
    // Under valgrind it is the client request of `valgrind.h`: the tool reads the six words at
    // `rax` (alive for the call) and writes its answer to `rdx`; memcheck's requests change the
    // tool's view of memory, never the program's.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn imp(_args: &[usize; 6]) -> usize {
    0
}
