//! Decorator forwarding, written once: [`forward_to_inner!`](crate::forward_to_inner) writes the
//! `DomainAllocator` methods a decorator hands to its inner allocator unchanged, so each decorator
//! spells out only the methods it changes.

/// Writes, inside an `unsafe impl DomainAllocator for Decorator`, the methods that pass straight to
/// the allocator in field `$inner`, by name:
///
/// * any single method of the trait except `name` (`malloc`, `calloc`, `realloc`, `free`,
///   `free_sized`, `malloc_aligned`, `calloc_aligned`, `free_aligned`, `realloc_aligned`,
///   `usable_size`, `owns`, `starts_block`, `track_ownership`, `declares_ownership`, `write_origin`,
///   `write_origin_aligned`, `prepare_fork`, `after_fork_parent`, `after_fork_child`);
/// * `ownership`: `owns`, `starts_block`, `track_ownership` and `declares_ownership` (a decorator that hands out its inner
///   allocator's blocks unchanged claims exactly what its inner allocator claims);
/// * `origin`: both `write_origin` methods;
/// * `fork`: the three fork methods (a decorator with no lock of its own).
///
/// Each forwarded unsafe method passes its caller's guarantee on unchanged, which is the
/// contract's guarantee for the inner allocator as long as the decorator hands out the inner
/// allocator's blocks at the addresses the inner allocator gave (a decorator with headers must not
/// forward the methods that take a block).
///
/// ```
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use alloc_core::{DomainAllocator, System, forward_to_inner};
///
/// struct CountMallocs<A> {
///     inner: A,
///     mallocs: AtomicUsize,
/// }
///
/// // SAFETY: every block is the inner allocator's, returned unchanged.
/// unsafe impl<A: DomainAllocator> DomainAllocator for CountMallocs<A> {
///     fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
///         self.mallocs.fetch_add(1, Ordering::Relaxed);
///         self.inner.malloc(size)
///     }
///     forward_to_inner!(inner: realloc, free, free_sized, usable_size, ownership, origin, fork);
/// }
///
/// let c = CountMallocs { inner: System, mallocs: AtomicUsize::new(0) };
/// let p = c.malloc(8).unwrap();
/// // SAFETY: a live block of `c`, freed once.
/// unsafe { c.free(p.as_ptr()) };
/// assert_eq!(c.mallocs.load(Ordering::Relaxed), 1);
/// ```
#[macro_export]
macro_rules! forward_to_inner {
    ($inner:ident : $($method:ident),+ $(,)?) => {
        $( $crate::__forward_one!($inner $method); )+
    };
}

/// One method (or group) of [`forward_to_inner!`](crate::forward_to_inner).
#[doc(hidden)]
#[macro_export]
macro_rules! __forward_one {
    ($f:ident ownership) => {
        $crate::__forward_one!($f owns);
        $crate::__forward_one!($f starts_block);
        $crate::__forward_one!($f track_ownership);
        $crate::__forward_one!($f declares_ownership);
    };
    ($f:ident origin) => {
        $crate::__forward_one!($f write_origin);
        $crate::__forward_one!($f write_origin_aligned);
    };
    ($f:ident fork) => {
        $crate::__forward_one!($f prepare_fork);
        $crate::__forward_one!($f after_fork_parent);
        $crate::__forward_one!($f after_fork_child);
    };
    ($f:ident malloc) => {
        #[inline]
        fn malloc(&self, size: usize) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            self.$f.malloc(size)
        }
    };
    ($f:ident calloc) => {
        #[inline]
        fn calloc(
            &self,
            nelem: usize,
            elsize: usize,
        ) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            self.$f.calloc(nelem, elsize)
        }
    };
    ($f:ident realloc) => {
        #[inline]
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            new_size: usize,
        ) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            // SAFETY: the caller's guarantee, forwarded: the decorator's blocks are the inner
            // allocator's, at the same addresses.
            unsafe { self.$f.realloc(ptr, new_size) }
        }
    };
    ($f:ident free) => {
        #[inline]
        unsafe fn free(&self, ptr: *mut u8) {
            // SAFETY: the caller's guarantee, forwarded (blocks are the inner allocator's).
            unsafe { self.$f.free(ptr) }
        }
    };
    ($f:ident free_sized) => {
        #[inline]
        unsafe fn free_sized(&self, ptr: ::core::ptr::NonNull<u8>, size: usize) {
            // SAFETY: the caller's guarantee, forwarded (blocks are the inner allocator's).
            unsafe { self.$f.free_sized(ptr, size) }
        }
    };
    ($f:ident malloc_aligned) => {
        #[inline]
        fn malloc_aligned(
            &self,
            layout: ::core::alloc::Layout,
        ) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            self.$f.malloc_aligned(layout)
        }
    };
    ($f:ident calloc_aligned) => {
        #[inline]
        fn calloc_aligned(
            &self,
            layout: ::core::alloc::Layout,
        ) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            self.$f.calloc_aligned(layout)
        }
    };
    ($f:ident free_aligned) => {
        #[inline]
        unsafe fn free_aligned(&self, ptr: ::core::ptr::NonNull<u8>, layout: ::core::alloc::Layout) {
            // SAFETY: the caller's guarantee, forwarded (blocks are the inner allocator's).
            unsafe { self.$f.free_aligned(ptr, layout) }
        }
    };
    ($f:ident realloc_aligned) => {
        #[inline]
        unsafe fn realloc_aligned(
            &self,
            ptr: ::core::ptr::NonNull<u8>,
            layout: ::core::alloc::Layout,
            new_size: usize,
        ) -> ::core::option::Option<::core::ptr::NonNull<u8>> {
            // SAFETY: the caller's guarantee, forwarded (blocks are the inner allocator's).
            unsafe { self.$f.realloc_aligned(ptr, layout, new_size) }
        }
    };
    ($f:ident usable_size) => {
        #[inline]
        unsafe fn usable_size(&self, ptr: ::core::ptr::NonNull<u8>) -> ::core::option::Option<usize> {
            // SAFETY: the caller's guarantee, forwarded (blocks are the inner allocator's).
            unsafe { self.$f.usable_size(ptr) }
        }
    };
    ($f:ident owns) => {
        fn owns(&self, ptr: *const u8) -> $crate::Ownership {
            self.$f.owns(ptr)
        }
    };
    ($f:ident starts_block) => {
        fn starts_block(&self, ptr: *const u8) -> $crate::Ownership {
            self.$f.starts_block(ptr)
        }
    };
    ($f:ident declares_ownership) => {
        fn declares_ownership(&self) -> bool {
            self.$f.declares_ownership()
        }
    };
    ($f:ident track_ownership) => {
        fn track_ownership(&self) -> bool {
            self.$f.track_ownership()
        }
    };
    ($f:ident write_origin) => {
        fn write_origin(&self, ptr: *const u8, out: &mut dyn ::core::fmt::Write) -> bool {
            self.$f.write_origin(ptr, out)
        }
    };
    ($f:ident write_origin_aligned) => {
        fn write_origin_aligned(
            &self,
            ptr: *const u8,
            layout: ::core::alloc::Layout,
            out: &mut dyn ::core::fmt::Write,
        ) -> bool {
            self.$f.write_origin_aligned(ptr, layout, out)
        }
    };
    ($f:ident prepare_fork) => {
        fn prepare_fork(&self) {
            self.$f.prepare_fork()
        }
    };
    ($f:ident after_fork_parent) => {
        unsafe fn after_fork_parent(&self) {
            // SAFETY: the caller's guarantee (on the thread that ran `prepare_fork`), forwarded.
            unsafe { self.$f.after_fork_parent() }
        }
    };
    ($f:ident after_fork_child) => {
        unsafe fn after_fork_child(&self) {
            // SAFETY: the caller's guarantee (in the child, on the thread the fork returned in),
            // forwarded.
            unsafe { self.$f.after_fork_child() }
        }
    };
}
