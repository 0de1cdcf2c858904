//! The conformance suite: every allocator of domalloc, and any user's, runs it on itself.
//!
//! Enable the `testkit` feature (as a dev-dependency) and add one line to a test file:
//!
//! ```
//! use alloc_core::System;
//! alloc_core::conformance_tests!(system_conforms, System);
//! # fn main() {}
//! ```
//!
//! That expands to a module of `#[test]` functions, one per rule of the contract, each named for the
//! behaviour it proves:
//!
//! | check | what it proves |
//! |---|---|
//! | [`check_zero_size`] | 0-byte requests give unique, non-null, freeable blocks |
//! | [`check_free_null`] | `free(null)` is harmless, `realloc(null, n)` is `malloc(n)` |
//! | [`check_alignment`] | every block is aligned to 16 and to its layout |
//! | [`check_calloc`] | `calloc` zeroes, and rejects `nelem * elsize` overflow without allocating |
//! | [`check_realloc`] | `realloc` keeps the contents up to the smaller size, `realloc(p, 0)` keeps a block |
//! | [`check_usable_size`] | `usable_size` is at least the request, and all of it can be written |
//! | [`check_no_overlap`] | live blocks never overlap (patterns written to each survive the others) |
//! | [`check_owns`] | `owns` never disowns its own blocks nor claims a stack address |
//! | [`check_huge_fails`] | impossible sizes fail with `None`, never a panic |
//! | [`model_test`] | a seeded random sequence of mixed operations agrees with a reference model |
//!
//! The same model test drives the other faces of an allocator through [`Surface`]:
//! [`DomainSurface`] (the PEP 445 calls), [`GlobalSurface`] (any [`GlobalAlloc`]) and
//! [`ApiSurface`] (any allocator-api2 [`Allocator`]); [`global_alloc_conformance_tests!`] and
//! [`allocator_conformance_tests!`] generate tests for the latter two.
//!
//! [`global_alloc_conformance_tests!`]: crate::global_alloc_conformance_tests
//! [`allocator_conformance_tests!`]: crate::allocator_conformance_tests

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use allocator_api2::alloc::Allocator;

use crate::contract::{DomainAllocator, MIN_ALIGN, Ownership};
use crate::error::AllocError;

/// The number of operations [`model_test`] runs in the generated tests.
pub const MODEL_OPS: usize = 100_000;

/// A small, fast, seeded generator (splitmix64): tests are reproducible from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A size from a small-object distribution: mostly 0 to 512 bytes, some up to 4 KiB, rarely up
    /// to 72 KiB (to reach the large-block path of pool allocators).
    pub fn object_size(&mut self) -> usize {
        match self.below(100) {
            0..=79 => self.below(513),
            80..=97 => self.below(4097),
            _ => self.below(72 * 1024),
        }
    }
}

/// Fills `len` bytes at `p` with the pattern of `tag`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
pub unsafe fn fill(p: NonNull<u8>, len: usize, tag: u64) {
    // SAFETY: the caller guarantees `len` writable bytes at `p`.
    let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(tag, i);
    }
}

/// Checks that `len` bytes at `p` hold the pattern of `tag`; panics naming the first bad offset.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn verify(p: NonNull<u8>, len: usize, tag: u64) {
    // SAFETY: the caller guarantees `len` readable bytes at `p`.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), len) };
    if let Some(i) = (0..len).find(|&i| bytes[i] != pattern(tag, i)) {
        panic!(
            "block {p:p} ({len} bytes, tag {tag}): byte {i} is {:#04x}, expected {:#04x}: \
             contents were lost or another block overlaps this one",
            bytes[i],
            pattern(tag, i)
        );
    }
}

#[inline]
fn pattern(tag: u64, i: usize) -> u8 {
    (tag.wrapping_mul(0x9E37_79B9) as u8) ^ (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8)
}

fn is_zero(p: NonNull<u8>, len: usize) -> bool {
    // SAFETY: callers pass live blocks of at least `len` bytes.
    unsafe { core::slice::from_raw_parts(p.as_ptr(), len) }
        .iter()
        .all(|&b| b == 0)
}

/// One face of an allocator, as the model test drives it.
pub trait Surface {
    /// Whether layouts of size 0 may be requested (not for `GlobalAlloc`).
    const ZERO_SIZE_OK: bool;
    /// Allocates for `layout` (`zeroed`: the memory must read as zero).
    fn alloc(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>>;
    /// Resizes a block; on `None` the old block is untouched.
    ///
    /// # Safety
    /// `ptr` is a live block of this surface allocated with `old`.
    unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize)
    -> Option<NonNull<u8>>;
    /// Frees a block; `hint` varies which free entry point is used where there are several.
    ///
    /// # Safety
    /// `ptr` is a live block of this surface allocated with `layout`.
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout, hint: u64);
}

/// The PEP 445 face of a [`DomainAllocator`]: `malloc`/`calloc`/`realloc`/`free`/`free_sized`, and the
/// aligned entry points for alignments above [`MIN_ALIGN`].
#[derive(Debug)]
pub struct DomainSurface<'a, A: ?Sized>(pub &'a A);

impl<A: DomainAllocator + ?Sized> Surface for DomainSurface<'_, A> {
    const ZERO_SIZE_OK: bool = true;

    fn alloc(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>> {
        if layout.align() > MIN_ALIGN {
            let p = self.0.malloc_aligned(layout)?;
            if zeroed {
                // SAFETY: a fresh block of `layout.size()` bytes.
                unsafe { p.as_ptr().write_bytes(0, layout.size()) };
            }
            Some(p)
        } else if zeroed {
            // Split the size into elements when it divides, to exercise calloc's multiplication.
            let n = layout.size();
            if n.is_multiple_of(8) && n > 0 {
                self.0.calloc(n / 8, 8)
            } else {
                self.0.calloc(1, n)
            }
        } else {
            self.0.malloc(layout.size())
        }
    }

    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        if old.align() > MIN_ALIGN {
            // SAFETY: blocks of large alignment were made by `malloc_aligned(old)` (the caller).
            unsafe { self.0.realloc_aligned(ptr, old, new_size) }
        } else {
            // SAFETY: blocks of small alignment were made by malloc/calloc/realloc (the caller).
            unsafe { self.0.realloc(ptr.as_ptr(), new_size) }
        }
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout, hint: u64) {
        // The caller passes a live block made with `layout`, by the entry point family that the
        // same alignment test chose in `alloc`.
        if layout.align() > MIN_ALIGN {
            // SAFETY: large alignments were made by `malloc_aligned(layout)`.
            unsafe { self.0.free_aligned(ptr, layout) }
        } else if hint.is_multiple_of(2) {
            // SAFETY: small alignments were made by malloc/calloc/realloc.
            unsafe { self.0.free(ptr.as_ptr()) }
        } else {
            // SAFETY: as above, and `layout.size()` is the size last requested for the block.
            unsafe { self.0.free_sized(ptr, layout.size()) }
        }
    }
}

/// The aligned family of a [`DomainAllocator`] for every layout, small alignments included (the
/// face `AsGlobalAlloc` and `AsAllocator` show): `malloc_aligned`/`calloc_aligned`, resized by
/// `realloc_aligned`, released by `free_aligned`.
#[derive(Debug)]
pub struct AlignedSurface<'a, A: ?Sized>(pub &'a A);

impl<A: DomainAllocator + ?Sized> Surface for AlignedSurface<'_, A> {
    const ZERO_SIZE_OK: bool = true;

    fn alloc(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>> {
        if zeroed {
            self.0.calloc_aligned(layout)
        } else {
            self.0.malloc_aligned(layout)
        }
    }

    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller passes a live block made with `old` by the aligned family.
        unsafe { self.0.realloc_aligned(ptr, old, new_size) }
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout, hint: u64) {
        // Alignments up to MIN_ALIGN are one (the contract): now and then a block made with one
        // of them is given back with another.
        let layout = if layout.align() <= MIN_ALIGN && hint.is_multiple_of(3) {
            Layout::from_size_align(layout.size(), MIN_ALIGN).unwrap_or(layout)
        } else {
            layout
        };
        // SAFETY: the caller passes a live block made with `layout` by the aligned family.
        unsafe { self.0.free_aligned(ptr, layout) }
    }
}

/// The face of any [`GlobalAlloc`].
#[derive(Debug)]
pub struct GlobalSurface<'a, G: ?Sized>(pub &'a G);

impl<G: GlobalAlloc + ?Sized> Surface for GlobalSurface<'_, G> {
    const ZERO_SIZE_OK: bool = false;

    fn alloc(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>> {
        assert!(layout.size() > 0, "GlobalAlloc forbids zero-size layouts");
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe {
            if zeroed {
                self.0.alloc_zeroed(layout)
            } else {
                self.0.alloc(layout)
            }
        })
    }

    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: the caller passes a live block made with `old`; `new_size` is non-zero (the model
        // never asks a GlobalSurface for zero).
        NonNull::new(unsafe { self.0.realloc(ptr.as_ptr(), old, new_size) })
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout, _hint: u64) {
        // SAFETY: the caller passes a live block made with `layout`.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }
}

/// The face of any allocator-api2 [`Allocator`].
#[derive(Debug)]
pub struct ApiSurface<'a, A: ?Sized>(pub &'a A);

impl<A: Allocator + ?Sized> Surface for ApiSurface<'_, A> {
    const ZERO_SIZE_OK: bool = true;

    fn alloc(&self, layout: Layout, zeroed: bool) -> Option<NonNull<u8>> {
        let block = if zeroed {
            self.0.allocate_zeroed(layout)
        } else {
            self.0.allocate(layout)
        };
        let block = block.ok()?;
        assert!(
            block.len() >= layout.size(),
            "allocate returned a short block"
        );
        Some(block.cast())
    }

    unsafe fn realloc(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let new = Layout::from_size_align(new_size, old.align()).ok()?;
        // SAFETY: the caller passes a live block made with `old`; grow/shrink get the size order
        // they require.
        let block = unsafe {
            if new_size >= old.size() {
                self.0.grow(ptr, old, new)
            } else {
                self.0.shrink(ptr, old, new)
            }
        };
        block.ok().map(|b| b.cast())
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout, _hint: u64) {
        // SAFETY: the caller passes a live block made with `layout`.
        unsafe { self.0.deallocate(ptr, layout) }
    }
}

fn assert_aligned(p: NonNull<u8>, layout: Layout) {
    let want = layout.align().max(MIN_ALIGN);
    assert!(
        (p.as_ptr() as usize).is_multiple_of(want),
        "block {p:p} for {} bytes is not aligned to {want}",
        layout.size()
    );
}

/// 0-byte requests give unique, non-null blocks that can be freed (PEP 445: `PyMem_Malloc(0)`).
pub fn check_zero_size<A: DomainAllocator + ?Sized>(a: &A) {
    let mut blocks = Vec::new();
    for _ in 0..64 {
        let p = a
            .malloc(0)
            .expect("malloc(0) must return a unique non-null block");
        assert_aligned(p, Layout::new::<u8>());
        assert!(!blocks.contains(&p), "malloc(0) returned {p:p} twice");
        blocks.push(p);
    }
    let c = a
        .calloc(0, 8)
        .expect("calloc(0, 8) must return a non-null block");
    assert!(!blocks.contains(&c), "calloc(0, 8) returned a live block");
    blocks.push(c);
    let d = a
        .calloc(8, 0)
        .expect("calloc(8, 0) must return a non-null block");
    assert!(!blocks.contains(&d), "calloc(8, 0) returned a live block");
    blocks.push(d);
    let big_align = Layout::from_size_align(0, 256).unwrap();
    let e = a
        .malloc_aligned(big_align)
        .expect("malloc_aligned of 0 bytes must succeed");
    assert_aligned(e, big_align);
    for p in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { a.free(p.as_ptr()) };
    }
    // SAFETY: `e` is live, made by malloc_aligned with `big_align`.
    unsafe { a.free_aligned(e, big_align) };
}

/// `free(null)` does nothing; `realloc(null, n)` behaves as `malloc(n)`.
pub fn check_free_null<A: DomainAllocator + ?Sized>(a: &A) {
    // SAFETY: freeing null is allowed by the contract.
    unsafe { a.free(core::ptr::null_mut()) };
    for size in [0, 1, 24, 700, 5000] {
        // SAFETY: realloc of null is allowed by the contract.
        let p = unsafe { a.realloc(core::ptr::null_mut(), size) }
            .expect("realloc(null, n) must allocate like malloc(n)");
        assert_aligned(p, Layout::new::<u8>());
        // SAFETY: `p` is a live block of `size` bytes, freed once.
        unsafe {
            fill(p, size, 7);
            verify(p, size, 7);
            a.free(p.as_ptr());
        }
    }
}

/// Every block is aligned to [`MIN_ALIGN`], and blocks from `malloc_aligned` to their layout, for
/// sizes from 0 to 64 KiB and alignments from 1 to 64 KiB.
pub fn check_alignment<A: DomainAllocator + ?Sized>(a: &A) {
    let mut live = Vec::new();
    for size in (0..=1024).chain([2047, 4096, 10_000, 65_536]) {
        let p = a.malloc(size).expect("malloc failed");
        assert_aligned(p, Layout::new::<u8>());
        live.push(p);
    }
    for p in live {
        // SAFETY: each block is live and freed once.
        unsafe { a.free(p.as_ptr()) };
    }
    for shift in 0..=16 {
        let align = 1usize << shift;
        for size in [0, 1, align / 2, align, align + 1, 3 * align + 5] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = a.malloc_aligned(layout).expect("malloc_aligned failed");
            assert_aligned(p, layout);
            // SAFETY: `p` is a live block of `size` bytes, made with `layout`, freed once.
            unsafe {
                fill(p, size, shift);
                verify(p, size, shift);
                a.free_aligned(p, layout);
            }
        }
    }
}

/// `calloc` returns zeroed memory (also after the memory was used and freed), and rejects a
/// `nelem * elsize` that overflows without allocating.
pub fn check_calloc<A: DomainAllocator + ?Sized>(a: &A) {
    for round in 0..4u64 {
        let mut dirty = Vec::new();
        for size in [16usize, 48, 256, 512, 4096, 40_000] {
            let p = a.malloc(size).expect("malloc failed");
            // SAFETY: a live block of `size` bytes.
            unsafe { fill(p, size, round + 1) };
            dirty.push(p);
        }
        for p in dirty {
            // SAFETY: live, freed once.
            unsafe { a.free(p.as_ptr()) };
        }
        for (n, e) in [
            (2usize, 8usize),
            (3, 16),
            (32, 8),
            (1, 512),
            (512, 8),
            (10_000, 4),
        ] {
            let p = a.calloc(n, e).expect("calloc failed");
            assert_aligned(p, Layout::new::<u8>());
            assert!(
                is_zero(p, n * e),
                "calloc({n}, {e}) returned non-zero memory"
            );
            // SAFETY: live, freed once.
            unsafe { a.free(p.as_ptr()) };
        }
    }
    for (n, e) in [
        (usize::MAX, 2),
        (2, usize::MAX),
        (usize::MAX / 2 + 1, 2),
        (1 << (usize::BITS * 5 / 8), 1 << (usize::BITS * 5 / 8)),
    ] {
        assert!(
            a.calloc(n, e).is_none(),
            "calloc({n}, {e}) overflows and must fail"
        );
        assert_eq!(
            a.try_calloc(n, e),
            Err(AllocError::SizeOverflow {
                nelem: n,
                elsize: e
            }),
            "try_calloc({n}, {e}) must report the overflow"
        );
    }
}

/// `realloc` keeps the contents up to the smaller size when growing and shrinking, across every
/// size boundary an allocator is likely to have, and `realloc(p, 0)` keeps a valid block.
pub fn check_realloc<A: DomainAllocator + ?Sized>(a: &A) {
    let sizes = [
        1usize, 8, 16, 17, 100, 256, 511, 512, 513, 1000, 4096, 20_000, 70_000, 300_000, 16, 3,
    ];
    let mut p = a.malloc(sizes[0]).expect("malloc failed");
    // SAFETY: `p` always holds the live block of the current size.
    unsafe { fill(p, sizes[0], 1) };
    for w in sizes.windows(2) {
        let (old, new) = (w[0], w[1]);
        // SAFETY: `p` is live with `old` bytes holding tag `old`.
        unsafe {
            p = a.realloc(p.as_ptr(), new).expect("realloc failed");
            assert_aligned(p, Layout::new::<u8>());
            verify(p, old.min(new), old as u64);
            fill(p, new, new as u64);
        }
    }
    // SAFETY: `p` is live; realloc to 0 keeps a block, which is then freed once.
    unsafe {
        let z = a
            .realloc(p.as_ptr(), 0)
            .expect("realloc(p, 0) must return a block");
        a.free(z.as_ptr());
    }
    // Aligned blocks keep their alignment and contents.
    let layout = Layout::from_size_align(100, 256).unwrap();
    let q = a.malloc_aligned(layout).expect("malloc_aligned failed");
    // SAFETY: `q` is a live aligned block of 100 bytes; resized and freed through the aligned family.
    unsafe {
        fill(q, 100, 9);
        let r = a
            .realloc_aligned(q, layout, 5000)
            .expect("realloc_aligned failed");
        assert_aligned(r, layout);
        verify(r, 100, 9);
        let l2 = Layout::from_size_align(5000, 256).unwrap();
        let s = a
            .realloc_aligned(r, l2, 10)
            .expect("realloc_aligned failed");
        assert_aligned(s, l2);
        verify(s, 10, 9);
        a.free_aligned(s, Layout::from_size_align(10, 256).unwrap());
    }
}

/// `usable_size`, where the allocator answers, is at least the request, and every usable byte can be
/// written without disturbing other blocks.
pub fn check_usable_size<A: DomainAllocator + ?Sized>(a: &A) {
    let mut live = Vec::new();
    for (i, size) in (0..600)
        .step_by(7)
        .chain([1000, 4096, 9000, 70_000])
        .enumerate()
    {
        let p = a.malloc(size).expect("malloc failed");
        // SAFETY: `p` is live.
        let usable = unsafe { a.usable_size(p) };
        let n = match usable {
            Some(n) => {
                assert!(n >= size, "usable_size {n} is below the request {size}");
                n
            }
            None => size,
        };
        // SAFETY: the contract allows writing all `n` usable bytes.
        unsafe { fill(p, n, i as u64) };
        live.push((p, n, i as u64));
    }
    for (p, n, tag) in live {
        // SAFETY: live blocks of `n` bytes, freed once.
        unsafe {
            verify(p, n, tag);
            a.free(p.as_ptr());
        }
    }
}

/// Many live blocks of mixed sizes never overlap: each gets a pattern, all are checked after all
/// were written, and their address ranges are compared.
pub fn check_no_overlap<A: DomainAllocator + ?Sized>(a: &A) {
    let mut rng = Rng::new(0x0DD_B10C);
    let mut live = Vec::new();
    let mut ranges = BTreeMap::new();
    for tag in 0..4000u64 {
        let size = rng.object_size();
        let p = a.malloc(size).expect("malloc failed");
        // SAFETY: a live block of `size` bytes.
        unsafe { fill(p, size, tag) };
        insert_range(&mut ranges, p, size);
        live.push((p, size, tag));
    }
    for &(p, size, tag) in &live {
        // SAFETY: live blocks of `size` bytes.
        unsafe { verify(p, size, tag) };
    }
    for (p, _, _) in live {
        // SAFETY: live, freed once.
        unsafe { a.free(p.as_ptr()) };
    }
}

/// Records `[p, p + max(size, 1))` in `ranges`, panicking if it overlaps a live range.
fn insert_range(ranges: &mut BTreeMap<usize, usize>, p: NonNull<u8>, size: usize) {
    let start = p.as_ptr() as usize;
    let end = start + size.max(1);
    if let Some((&s, &e)) = ranges.range(..end).next_back() {
        assert!(
            e <= start,
            "block [{start:#x}, {end:#x}) overlaps live block [{s:#x}, {e:#x})"
        );
    }
    ranges.insert(start, end);
}

/// `owns` never answers [`Ownership::NotOwned`] for the allocator's own live blocks, and never
/// [`Ownership::Owned`] for an address on the stack.
pub fn check_owns<A: DomainAllocator + ?Sized>(a: &A) {
    let local = 0u64;
    assert_ne!(
        a.owns(core::ptr::from_ref(&local).cast()),
        Ownership::Owned,
        "owns claims a stack address"
    );
    assert_ne!(
        a.owns(core::ptr::null()),
        Ownership::Owned,
        "owns claims null"
    );
    for size in [0, 16, 512, 513, 5000, 100_000] {
        let p = a.malloc(size).expect("malloc failed");
        assert_ne!(
            a.owns(p.as_ptr()),
            Ownership::NotOwned,
            "owns disowns its own {size}-byte block"
        );
        // SAFETY: live, freed once.
        unsafe { a.free(p.as_ptr()) };
    }
}

/// Sizes no allocator can serve fail with `None` (and the `try_` forms with an error), never panic.
pub fn check_huge_fails<A: DomainAllocator + ?Sized>(a: &A) {
    for size in [usize::MAX, isize::MAX as usize + 1, usize::MAX - 4095] {
        assert!(a.malloc(size).is_none(), "malloc({size}) must fail");
        assert!(
            matches!(a.try_malloc(size), Err(AllocError::OutOfMemory { .. })),
            "try_malloc({size}) must report out of memory"
        );
        let layout = Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap();
        assert!(
            a.malloc_aligned(layout).is_none(),
            "malloc_aligned of ~isize::MAX must fail"
        );
    }
    let p = a.malloc(64).expect("malloc failed");
    // SAFETY: `p` is live; a failed realloc leaves it live, so it is freed once afterwards.
    unsafe {
        fill(p, 64, 3);
        assert!(
            a.realloc(p.as_ptr(), usize::MAX).is_none(),
            "realloc to usize::MAX must fail"
        );
        verify(p, 64, 3);
        a.free(p.as_ptr());
    }
}

/// Runs every check above and the model test once on each family (the `malloc` family with the
/// aligned entry points above MIN_ALIGN, and the aligned family for every layout), with `seed`.
pub fn run_all<A: DomainAllocator + ?Sized>(a: &A, seed: u64) {
    check_zero_size(a);
    check_free_null(a);
    check_alignment(a);
    check_calloc(a);
    check_realloc(a);
    check_usable_size(a);
    check_no_overlap(a);
    check_owns(a);
    check_huge_fails(a);
    model_test(&DomainSurface(a), seed, MODEL_OPS);
    model_test(&AlignedSurface(a), seed.rotate_left(17) ^ 1, MODEL_OPS);
}

/// A live block in the reference model.
#[derive(Debug, Clone, Copy)]
struct Live {
    ptr: NonNull<u8>,
    layout: Layout,
    tag: u64,
}

/// Runs `ops` seeded random operations (allocate, allocate zeroed, aligned allocate, grow, shrink,
/// free) against `surface` and a reference model that knows every live block's address range, size,
/// alignment and contents. After every operation the touched blocks are verified byte for byte;
/// new blocks are checked against every live range for overlap. At the end everything is freed.
///
/// Panics, naming the seed and the operation, at the first disagreement.
pub fn model_test<S: Surface>(surface: &S, seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Live> = Vec::new();
    let mut ranges: BTreeMap<usize, usize> = BTreeMap::new();
    let mut next_tag = 1u64;
    let max_live = 2048;

    let min_size = usize::from(!S::ZERO_SIZE_OK);
    for op in 0..ops {
        let roll = rng.below(100);
        if live.is_empty() || (roll < 45 && live.len() < max_live) {
            // Allocate.
            let size = rng.object_size().max(min_size);
            let align = match rng.below(20) {
                0 => 1usize << (5 + rng.below(8)),
                1 => 1usize << rng.below(5),
                _ => 8,
            };
            let layout = Layout::from_size_align(size, align).unwrap();
            let zeroed = rng.below(4) == 0;
            let ptr = surface
                .alloc(layout, zeroed)
                .unwrap_or_else(|| panic!("seed {seed}, op {op}: allocation of {layout:?} failed"));
            assert_aligned(ptr, layout);
            if zeroed {
                assert!(
                    is_zero(ptr, size),
                    "seed {seed}, op {op}: zeroed allocation of {size} bytes is not zero"
                );
            }
            insert_range(&mut ranges, ptr, size);
            let tag = next_tag;
            next_tag += 1;
            // SAFETY: a fresh block of `size` bytes.
            unsafe { fill(ptr, size, tag) };
            live.push(Live { ptr, layout, tag });
        } else if roll < 70 {
            // Resize a random block.
            let i = rng.below(live.len());
            let b = live[i];
            let new_size = match rng.below(3) {
                0 => b.layout.size() / 2,
                1 => b.layout.size() + rng.below(64),
                _ => rng.object_size(),
            }
            .max(min_size);
            // SAFETY: `b` is live in the model, so live in the allocator, with `b.layout`.
            unsafe { verify(b.ptr, b.layout.size(), b.tag) };
            ranges.remove(&(b.ptr.as_ptr() as usize));
            // SAFETY: as above.
            let new = unsafe { surface.realloc(b.ptr, b.layout, new_size) }.unwrap_or_else(|| {
                panic!("seed {seed}, op {op}: realloc to {new_size} bytes failed")
            });
            let layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
            assert_aligned(new, layout);
            // SAFETY: the resized block holds at least the smaller size of the old contents.
            unsafe { verify(new, b.layout.size().min(new_size), b.tag) };
            insert_range(&mut ranges, new, new_size);
            let tag = next_tag;
            next_tag += 1;
            // SAFETY: the block is `new_size` bytes long.
            unsafe { fill(new, new_size, tag) };
            live[i] = Live {
                ptr: new,
                layout,
                tag,
            };
        } else {
            // Free a random block.
            let i = rng.below(live.len());
            let b = live.swap_remove(i);
            ranges.remove(&(b.ptr.as_ptr() as usize));
            // SAFETY: `b` is live with `b.layout`; it leaves the model and is freed once.
            unsafe {
                verify(b.ptr, b.layout.size(), b.tag);
                surface.free(b.ptr, b.layout, b.tag);
            }
        }
    }
    for b in live {
        // SAFETY: every block left in the model is live and freed once.
        unsafe {
            verify(b.ptr, b.layout.size(), b.tag);
            surface.free(b.ptr, b.layout, b.tag);
        }
    }
}

/// Generates a module of `#[test]`s that runs the whole conformance suite on a [`DomainAllocator`].
///
/// `$make` is an expression evaluated afresh in each test, giving the allocator (or a reference to
/// one, such as a `static`).
///
/// ```
/// alloc_core::conformance_tests!(system, alloc_core::System);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $make:expr) => {
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testkit;

            #[test]
            fn zero_size_blocks_are_unique_and_freeable() {
                testkit::check_zero_size(&$make);
            }
            #[test]
            fn free_of_null_is_harmless_and_realloc_of_null_allocates() {
                testkit::check_free_null(&$make);
            }
            #[test]
            fn every_block_is_aligned_to_16_and_to_its_layout() {
                testkit::check_alignment(&$make);
            }
            #[test]
            fn calloc_zeroes_and_rejects_overflow() {
                testkit::check_calloc(&$make);
            }
            #[test]
            fn realloc_keeps_contents_up_to_the_smaller_size() {
                testkit::check_realloc(&$make);
            }
            #[test]
            fn usable_size_covers_the_request() {
                testkit::check_usable_size(&$make);
            }
            #[test]
            fn live_blocks_never_overlap() {
                testkit::check_no_overlap(&$make);
            }
            #[test]
            fn owns_never_disowns_its_blocks_nor_claims_foreign_ones() {
                testkit::check_owns(&$make);
            }
            #[test]
            fn impossible_sizes_fail_cleanly() {
                testkit::check_huge_fails(&$make);
            }
            #[test]
            fn random_operations_agree_with_the_reference_model() {
                let a = $make;
                testkit::model_test(&testkit::DomainSurface(&a), 0x5EED_0001, testkit::MODEL_OPS);
            }
            #[test]
            fn random_operations_agree_with_the_reference_model_second_seed() {
                let a = $make;
                testkit::model_test(&testkit::DomainSurface(&a), 0x5EED_0002, testkit::MODEL_OPS);
            }
        }
    };
}

/// Generates `#[test]`s that run the model test on any [`GlobalAlloc`] (`$make` gives it or a
/// reference to it).
#[macro_export]
macro_rules! global_alloc_conformance_tests {
    ($name:ident, $make:expr) => {
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testkit;

            #[test]
            fn random_operations_agree_with_the_reference_model() {
                let a = $make;
                testkit::model_test(&testkit::GlobalSurface(&a), 0x6106_0001, testkit::MODEL_OPS);
            }
        }
    };
}

/// Generates `#[test]`s that run the model test on any allocator-api2 [`Allocator`] (`$make` gives
/// it or a reference to it).
#[macro_export]
macro_rules! allocator_conformance_tests {
    ($name:ident, $make:expr) => {
        #[cfg(test)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testkit;

            #[test]
            fn random_operations_agree_with_the_reference_model() {
                let a = $make;
                testkit::model_test(&testkit::ApiSurface(&a), 0xA91_0001, testkit::MODEL_OPS);
            }
            #[test]
            fn collections_built_in_it_work() {
                let a = $make;
                testkit::check_collections(&a);
            }
        }
    };
}

/// Collections through `&A`: an allocator-api2 `Vec` pushed, grown and shrunk, and a `Box`.
pub fn check_collections<A: Allocator>(a: &A) {
    let mut v = allocator_api2::vec::Vec::new_in(a);
    for i in 0..10_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 49_995_000);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.len(), 10);
    let mut b = allocator_api2::boxed::Box::new_in([7u8; 3000], a);
    b[2999] = 1;
    assert_eq!(b[0], 7);
}
