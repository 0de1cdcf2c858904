//! C++'s replaceable `operator new` and `operator delete`, exported under their Itanium ABI names
//! (`_Znwm`, `_ZdlPv`, ... as GCC and Clang mangle them on 64-bit targets), so that a C++ program
//! under `LD_PRELOAD` reaches the pools directly, as mimalloc's and jemalloc's libraries let it.
//!
//! Without them a `new` goes through libstdc++'s operator (a call of `malloc` through the PLT, a
//! test of the result, a frame), and a sized `delete` through two jumps to `free`. With them:
//!
//! * **`new`**, every form: the calling thread's bin first, as `malloc`'s fast path (or
//!   `aligned_alloc`'s for the `align_val_t` forms); then `malloc` (or `aligned_alloc`) the long
//!   way. Only when that fails is the request handed to the *next* definition of the same
//!   operator, libstdc++'s, found once with `dlsym(RTLD_NEXT)` (or in libstdc++ or libc++ loaded
//!   locally, by a module opened without `RTLD_GLOBAL`). It calls the program's
//!   `new_handler` and tries again (through this library's `malloc`) until it succeeds, or throws
//!   `std::bad_alloc` (the throwing forms) or returns null (the `nothrow` forms). So every rule
//!   of the standard about failure is libstdc++'s own, and a handler that frees memory works.
//!   With no C++ runtime loaded at all, a `nothrow` form answers null and a throwing one aborts
//!   with a message (there is nothing to throw with).
//!   The exception unwinds through this module's frames, which are `extern "C-unwind"` for it:
//!   with `panic = "abort"` the library would abort there instead.
//! * **`delete`**, every form (sized, array, `nothrow`, `align_val_t`): `free`. The size and the
//!   alignment are not needed: `free` finds a block's pool by the registry, checks it (the
//!   hardened default) and routes any other pointer as it routes a C one. A block that
//!   libstdc++'s `new` made before the library was loaded is glibc's and goes to glibc, as with
//!   `free`.
//!
//! `new(0)` returns a distinct block, as the standard asks (`malloc(1)`). A program that defines
//! its own operators keeps them: the executable comes first in the dynamic linker's lookup.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use alloc_domains::mem_fast_path;

use crate::{aligned_alloc, aligned_fast, malloc};

/// `std::nothrow_t` and `std::align_val_t` as they cross the ABI: an empty struct passed by
/// reference, and a `size_t`.
type Nothrow = *const c_void;

/// The next definition of a C++ operator (libstdc++'s), found on first use. Each exported `new`
/// keeps its own, named by its export name.
struct Next {
    /// The operator's name, NUL-terminated.
    name: &'static str,
    at: AtomicPtr<c_void>,
}

impl Next {
    const fn new(name: &'static str) -> Self {
        Next {
            name,
            at: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The address of the next definition, if a C++ runtime is loaded: the one after this library
    /// in the global scope, else libstdc++'s or libc++'s wherever it was loaded (a module opened
    /// without `RTLD_GLOBAL`, such as a Python extension, brings its C++ runtime in locally, and
    /// its `new` still reaches this library's).
    #[cold]
    fn get(&self) -> Option<*mut c_void> {
        // Relaxed: the address is a constant of the process, read whole.
        let f = self.at.load(Ordering::Relaxed);
        if !f.is_null() {
            return Some(f);
        }
        // SAFETY: `dlsym` with a NUL-terminated name; RTLD_NEXT searches the objects loaded
        // after this library. It may allocate, through this library's `malloc`, which holds
        // nothing here.
        let mut f = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr().cast()) };
        for runtime in [c"libstdc++.so.6", c"libc++.so.1"] {
            if !f.is_null() {
                break;
            }
            // SAFETY: RTLD_NOLOAD only looks a loaded library up (loading nothing); the handle
            // is kept (the runtime stays loaded while the process may call it).
            let h = unsafe { libc::dlopen(runtime.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
            if !h.is_null() {
                // SAFETY: a live handle and a NUL-terminated name.
                f = unsafe { libc::dlsym(h, self.name.as_ptr().cast()) };
            }
        }
        if f.is_null() {
            return None;
        }
        self.at.store(f, Ordering::Relaxed);
        Some(f)
    }

    /// [`get`](Self::get) for a form that throws (`nothrow` false) or answers null: with no C++
    /// runtime, a throwing form has nothing to throw `std::bad_alloc` with, and reports and
    /// aborts; a `nothrow` form gets `None` (its answer is null).
    fn for_form(&self, nothrow: bool) -> Option<*mut c_void> {
        match self.get() {
            None if !nothrow => no_next(self.name.trim_end_matches('\0')),
            f => f,
        }
    }
}

/// There is no C++ runtime after this library to hand a failed `new` to: a line on standard
/// error, then abort (as `std::terminate` would for an exception with no handler).
#[cold]
fn no_next(name: &str) -> ! {
    for part in [
        &b"domalloc: "[..],
        name.as_bytes(),
        b" failed and no C++ runtime follows the library to handle it; aborting\n",
    ] {
        // SAFETY: writes of live byte slices to standard error (a failed write is ignored).
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: ends the process.
    unsafe { libc::abort() }
}

/// `malloc`'s fast path: a block from the calling thread's bin, or null.
#[inline(always)]
fn from_bin(size: usize) -> *mut c_void {
    let (pool, key) = mem_fast_path();
    // SAFETY: the key the domain table gives for its pool.
    match unsafe { pool.malloc_fast(size, key) } {
        Some(p) => p.as_ptr().cast(),
        None => core::ptr::null_mut(),
    }
}

/// A `new` of `size` bytes past the bin: `malloc` the long way, then the next `new` (which calls
/// the handler, throws or answers null as its form asks).
///
/// # Safety
/// `next` is the `Next` of the form `(size_t)` if `nothrow` is `None`, of the form
/// `(size_t, const nothrow_t&)` otherwise, with that reference.
#[cold]
#[inline(never)]
unsafe fn new_slow(size: usize, next: &Next, nothrow: Option<Nothrow>) -> *mut c_void {
    // SAFETY: C's contract for malloc, any size.
    let p = unsafe { malloc(size.max(1)) };
    if !p.is_null() {
        return p;
    }
    let Some(f) = next.for_form(nothrow.is_some()) else {
        return core::ptr::null_mut();
    };
    // SAFETY: `f` is the next definition of the form the caller names (its signature, the
    // standard's). It may throw: the exported caller is `C-unwind`, and unwinding passes this
    // Rust frame.
    unsafe {
        match nothrow {
            None => {
                let f: unsafe extern "C-unwind" fn(usize) -> *mut c_void = core::mem::transmute(f);
                f(size)
            }
            Some(nt) => {
                let f: unsafe extern "C-unwind" fn(usize, Nothrow) -> *mut c_void =
                    core::mem::transmute(f);
                f(size, nt)
            }
        }
    }
}

/// An aligned `new` past the bin: `aligned_alloc` the long way, then the next form.
///
/// # Safety
/// `next` is the `Next` of the form `(size_t, align_val_t)` if `nothrow` is `None`, of the form
/// `(size_t, align_val_t, const nothrow_t&)` otherwise, with that reference.
#[cold]
#[inline(never)]
unsafe fn new_aligned_slow(
    size: usize,
    align: usize,
    next: &Next,
    nothrow: Option<Nothrow>,
) -> *mut c_void {
    // SAFETY: C's contract for aligned_alloc, any size and alignment.
    let p = unsafe { aligned_alloc(align, size.max(1)) };
    if !p.is_null() {
        return p;
    }
    let Some(f) = next.for_form(nothrow.is_some()) else {
        return core::ptr::null_mut();
    };
    // SAFETY: as in `new_slow`, with the alignment as the second argument.
    unsafe {
        match nothrow {
            None => {
                let f: unsafe extern "C-unwind" fn(usize, usize) -> *mut c_void =
                    core::mem::transmute(f);
                f(size, align)
            }
            Some(nt) => {
                let f: unsafe extern "C-unwind" fn(usize, usize, Nothrow) -> *mut c_void =
                    core::mem::transmute(f);
                f(size, align, nt)
            }
        }
    }
}

/// Defines `new` forms that take `(size_t)` and `(size_t, const nothrow_t&)`.
macro_rules! new_forms {
    ($($name:literal $f:ident($($nt:ident)?);)*) => {$(
        #[doc = concat!("`", $name, "`: see the module's documentation.")]
        ///
        /// # Safety
        /// C++'s contract for the replaceable `operator new` of this form.
        #[unsafe(export_name = $name)]
        pub unsafe extern "C-unwind" fn $f(size: usize $(, $nt: Nothrow)?) -> *mut c_void {
            let p = from_bin(size);
            if !p.is_null() {
                return p;
            }
            static NEXT: Next = Next::new(concat!($name, "\0"));
            let nothrow: Option<Nothrow> = None $(.or(Some($nt)))?;
            // SAFETY: `NEXT` names this form.
            unsafe { new_slow(size, &NEXT, nothrow) }
        }
    )*};
}

new_forms! {
    "_Znwm" new();
    "_Znam" new_array();
    "_ZnwmRKSt9nothrow_t" new_nothrow(nothrow);
    "_ZnamRKSt9nothrow_t" new_array_nothrow(nothrow);
}

/// Defines `new` forms that take `(size_t, align_val_t)` and
/// `(size_t, align_val_t, const nothrow_t&)`.
macro_rules! new_aligned_forms {
    ($($name:literal $f:ident($($nt:ident)?);)*) => {$(
        #[doc = concat!("`", $name, "`: see the module's documentation.")]
        ///
        /// # Safety
        /// C++'s contract for the replaceable `operator new` of this form (`align` a power of
        /// two).
        #[unsafe(export_name = $name)]
        pub unsafe extern "C-unwind" fn $f(
            size: usize,
            align: usize
            $(, $nt: Nothrow)?
        ) -> *mut c_void {
            if align.is_power_of_two()
                && let Some(p) = aligned_fast(align, size)
            {
                return p.as_ptr().cast();
            }
            static NEXT: Next = Next::new(concat!($name, "\0"));
            let nothrow: Option<Nothrow> = None $(.or(Some($nt)))?;
            // SAFETY: `NEXT` names this form.
            unsafe { new_aligned_slow(size, align, &NEXT, nothrow) }
        }
    )*};
}

new_aligned_forms! {
    "_ZnwmSt11align_val_t" new_aligned();
    "_ZnamSt11align_val_t" new_array_aligned();
    "_ZnwmSt11align_val_tRKSt9nothrow_t" new_aligned_nothrow(nothrow);
    "_ZnamSt11align_val_tRKSt9nothrow_t" new_array_aligned_nothrow(nothrow);
}

/// Defines `delete` forms: each is `free` of its first argument.
macro_rules! delete_forms {
    ($($name:literal $f:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[doc = concat!("`", $name, "`: `free` (see the module's documentation).")]
        ///
        /// # Safety
        /// C++'s contract for the replaceable `operator delete` of this form: `p` is null or a
        /// live block of the matching `new` (or of the malloc family, which `free` takes alike).
        #[unsafe(export_name = $name)]
        pub unsafe extern "C" fn $f(p: *mut c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
            // SAFETY: the caller's guarantee: a block `free` takes.
            unsafe { crate::free_inline(p) }
        }
    )*};
}

delete_forms! {
    "_ZdlPv" delete();
    "_ZdaPv" delete_array();
    "_ZdlPvm" delete_sized(size: usize);
    "_ZdaPvm" delete_array_sized(size: usize);
    "_ZdlPvRKSt9nothrow_t" delete_nothrow(nothrow: Nothrow);
    "_ZdaPvRKSt9nothrow_t" delete_array_nothrow(nothrow: Nothrow);
    "_ZdlPvSt11align_val_t" delete_aligned(align: usize);
    "_ZdaPvSt11align_val_t" delete_array_aligned(align: usize);
    "_ZdlPvmSt11align_val_t" delete_sized_aligned(size: usize, align: usize);
    "_ZdaPvmSt11align_val_t" delete_array_sized_aligned(size: usize, align: usize);
    "_ZdlPvSt11align_val_tRKSt9nothrow_t" delete_aligned_nothrow(align: usize, nothrow: Nothrow);
    "_ZdaPvSt11align_val_tRKSt9nothrow_t" delete_array_aligned_nothrow(
        align: usize,
        nothrow: Nothrow
    );
}
