//! How `Tracing` captures stacks: the first captures of the process calibrate (a fast walk, the
//! frame-pointer chain or the cached unwind tables, must agree with the unwinder), and whichever
//! way, a traceback names the allocating line.
//! Its own test binary: the capture method is process-wide.

use std::alloc::{GlobalAlloc, Layout};

use alloc_core::{AsGlobalAlloc, DomainAllocator, System};
use alloc_debug::{CALIBRATION, CaptureMethod, Tracing, capture_method, set_capture_method};

#[inline(never)]
fn allocate_here(t: &Tracing<System>) -> *mut u8 {
    t.malloc(48).unwrap().as_ptr()
}

/// Two blocks from two lines of one function, one after the other.
#[inline(never)]
fn allocate_two(t: &Tracing<System>) -> [*mut u8; 2] {
    let a = t.malloc(48).unwrap().as_ptr();
    let b = t.malloc(48).unwrap().as_ptr();
    [a, b]
}

/// Two blocks from two lines of one function: one straight through the decorator, one through
/// an adapter's frame (a call through `dyn GlobalAlloc` is not inlined), which the walk passes
/// over. The decorator's entry runs from one place in both.
#[inline(never)]
fn allocate_direct_and_adapted(a: &AsGlobalAlloc<Tracing<System>>) -> [*mut u8; 2] {
    let direct = a.inner().malloc(48).unwrap().as_ptr();
    let g: &dyn GlobalAlloc = std::hint::black_box(a);
    // SAFETY: a layout of nonzero size; the block is freed by the caller with it.
    let adapted = unsafe { g.alloc(Layout::from_size_align(48, 8).unwrap()) };
    assert!(!adapted.is_null());
    [direct, adapted]
}

fn site_of(t: &Tracing<System>, p: *mut u8) -> String {
    let tb = t.traceback_of(p).expect("traced");
    tb.to_string()
}

#[test]
fn calibration_decides_the_method_and_each_method_names_the_allocating_line() {
    let t = Tracing::new(System).with_depth(3);
    assert_eq!(capture_method(), CaptureMethod::Undecided);
    let mut blocks = Vec::new();
    for _ in 0..CALIBRATION + 1 {
        blocks.push(allocate_here(&t));
    }
    let decided = capture_method();
    eprintln!("calibration chose {decided:?}");
    assert_ne!(decided, CaptureMethod::Undecided, "calibration decides");
    // Where the cached tables' walk is built, it agrees with the unwinder in any build.
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_ne!(decided, CaptureMethod::Unwind, "a fast walk agreed");
    }
    // Set by `cargo xtask ci` for its build with `-C force-frame-pointers=yes`.
    if std::env::var_os("DOMALLOC_EXPECT_FRAME_POINTERS").is_some() {
        assert_eq!(
            decided,
            CaptureMethod::FramePointers,
            "the chain agreed with the unwinder"
        );
    }
    // Whichever it chose (the chain only where this build keeps frame pointers), and the
    // unwinder always, name this file.
    let mut methods = vec![decided, CaptureMethod::Unwind];
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        methods.push(CaptureMethod::UnwindTables);
    }
    methods.sort_by_key(|m| format!("{m:?}"));
    methods.dedup();
    // And a deep traceback (more frames asked for than the stack has) is the unwinder's whole
    // stack, whichever way it was walked.
    let deep = Tracing::new(System).with_depth(32);
    let mut whole = Vec::new();
    for method in methods {
        set_capture_method(method);
        let p = allocate_here(&t);
        let site = site_of(&t, p);
        assert!(site.contains("capture.rs"), "{method:?}: {site}");
        blocks.push(p);
        // One frame: each capture walks from the same call out of the decorator, to a caller
        // alternating between two lines; what the walk keeps of one must not name the other.
        let one = Tracing::new(System);
        let mut sites = Vec::new();
        for _ in 0..4 {
            for p in allocate_two(&one) {
                sites.push(site_of(&one, p));
                // SAFETY: a live block of `one`, freed once.
                unsafe { one.free(p) };
            }
        }
        assert_ne!(sites[0], sites[1], "{method:?}: two lines");
        for pair in sites.chunks(2) {
            assert_eq!(pair, &sites[..2], "{method:?}");
        }
        // From the same place in the decorator, a caller of the program's, then one of the
        // machinery's: what the walk kept of the first must not stand for the second.
        let adapter = AsGlobalAlloc::new(Tracing::new(System));
        let mut sites = Vec::new();
        for _ in 0..3 {
            let [direct, adapted] = allocate_direct_and_adapted(&adapter);
            sites.push(site_of(adapter.inner(), direct));
            sites.push(site_of(adapter.inner(), adapted));
            // SAFETY: live blocks of `adapter`: one from `malloc`, one from the adapter's
            // `alloc` with this layout; each freed once.
            unsafe {
                adapter.inner().free(direct);
                adapter.dealloc(adapted, Layout::from_size_align(48, 8).unwrap());
            }
        }
        for s in &sites {
            assert!(s.contains("capture.rs"), "{method:?}: {s}");
        }
        assert_ne!(sites[0], sites[1], "{method:?}: two lines");
        for pair in sites.chunks(2) {
            assert_eq!(pair, &sites[..2], "{method:?}");
        }
        let q = allocate_here(&deep);
        whole.push((method, site_of(&deep, q)));
        // SAFETY: a live block of `deep`, freed once.
        unsafe { deep.free(q) };
    }
    let (_, unwound) = whole
        .iter()
        .find(|(m, _)| *m == CaptureMethod::Unwind)
        .expect("the unwinder was asked");
    for (method, stack) in &whole {
        assert_eq!(stack, unwound, "{method:?} against the unwinder");
    }
    set_capture_method(CaptureMethod::Undecided);
    for _ in 0..CALIBRATION + 1 {
        blocks.push(allocate_here(&t));
    }
    assert_eq!(
        capture_method(),
        decided,
        "calibrating again decides the same"
    );
    for p in blocks {
        // SAFETY: live blocks of `t`, each freed once.
        unsafe { t.free(p) };
    }
}
