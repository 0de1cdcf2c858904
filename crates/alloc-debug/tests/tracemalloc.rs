//! `Tracing`, against the expectations of CPython's `Lib/test/test_tracemalloc.py` where they
//! apply to Rust: traced memory rising and falling, peak and its reset, tracebacks of blocks and
//! their depth, interned tracebacks, clearing, start and stop, snapshots grouped by line, file
//! and traceback (also cumulative), comparisons, filters by file and by domain, the formats, and
//! tracking of a user domain (`TestCAPI`); then what tracemalloc has no twin for: tags, leak
//! reports, the no-growth assertion, the allocation site in `Guarded`'s report, threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use alloc_core::{DomainAllocator, System};
use alloc_debug::{
    Action, DomainFilter, Filter, Frame, KeyType, MAX_DEPTH, Snapshot, Statistic, StatisticDiff,
    Tag, Trace, Traceback, Tracing, TracingError, ViolationKind, with_tag,
};

/// Frees a block of `t`.
fn free<A: DomainAllocator>(t: &Tracing<A>, p: *mut u8) {
    // SAFETY: every caller passes a live block of `t`, once.
    unsafe { t.free(p) };
}

fn site(tb: &Traceback) -> (&str, u32) {
    (tb.site().filename.as_ref(), tb.site().lineno)
}

/// Whether a resolved file name is this test file (debug information may hold the path as given
/// to the compiler or made absolute).
fn is_this_file(name: &str) -> bool {
    name.ends_with("tests/tracemalloc.rs")
}

mod tracemalloc_enabled {
    use super::*;

    #[test]
    fn traced_memory_rises_and_falls_with_allocations() {
        let t = Tracing::new(System);
        let size = 1024 * 1024;
        let p = t.malloc(size).unwrap();
        assert_eq!(t.traced_memory(), (size, size));
        free(&t, p.as_ptr());
        assert_eq!(t.traced_memory(), (0, size), "the peak stays");
        let q = t.malloc(size).unwrap();
        t.clear_traces();
        assert_eq!(t.traced_memory(), (0, 0), "clear_traces resets both");
        free(&t, q.as_ptr());
        let r = t.malloc(size).unwrap();
        assert_eq!(t.traced_memory().0, size);
        t.stop();
        assert_eq!(t.traced_memory(), (0, 0), "stop resets both");
        free(&t, r.as_ptr());
    }

    #[test]
    fn reset_peak_drops_the_peak_and_it_rises_again() {
        let t = Tracing::new(System);
        let big = t.malloc(100_000).unwrap();
        free(&t, big.as_ptr());
        let small = t.malloc(100).unwrap();
        let (_, peak1) = t.traced_memory();
        t.reset_peak();
        let (size2, peak2) = t.traced_memory();
        assert!(peak2 >= size2 && peak2 < peak1, "{peak2} {size2} {peak1}");
        let obj = t.malloc(1024 * 1024).unwrap();
        let (size3, peak3) = t.traced_memory();
        assert!(peak3 >= size3 && peak3 - peak2 >= 1024 * 1024);
        free(&t, obj.as_ptr());
        free(&t, small.as_ptr());
    }

    #[test]
    fn traceback_of_names_the_allocating_line() {
        let t = Tracing::new(System);
        let p = t.malloc(12345).unwrap();
        let line = line!() - 1;
        let tb = t.traceback_of(p.as_ptr()).expect("the block is traced");
        assert_eq!(tb.frames().len(), 1, "one frame by default");
        assert!(is_this_file(site(&tb).0), "{tb:#}");
        assert_eq!(site(&tb).1, line, "{tb:#}");
        free(&t, p.as_ptr());
        assert_eq!(t.traceback_of(p.as_ptr()), None, "a freed block has none");
    }

    #[inline(never)]
    fn nested(t: &Tracing<System>, levels: usize) -> *mut u8 {
        if levels == 0 {
            return t.malloc(10).unwrap().as_ptr();
        }
        let p = nested(t, levels - 1);
        core::hint::black_box(p)
    }

    #[test]
    fn the_depth_limits_the_frames_and_is_checked() {
        let t = Tracing::new(System);
        assert_eq!(
            t.start_with_depth(0),
            Err(TracingError::Depth {
                depth: 0,
                max: MAX_DEPTH
            })
        );
        assert!(t.set_depth(MAX_DEPTH + 1).is_err());
        t.start_with_depth(10).unwrap();
        let p = nested(&t, 12);
        let tb = t.traceback_of(p).unwrap();
        assert_eq!(tb.frames().len(), 10, "{tb:#}");
        assert!(
            tb.frames().iter().all(|f| f.function.contains("nested")),
            "the ten most recent frames are the recursion: {tb:#}"
        );
        free(&t, p);
        t.start_with_depth(1).unwrap();
        let q = nested(&t, 12);
        assert_eq!(t.traceback_of(q).unwrap().frames().len(), 1);
        free(&t, q);
    }

    #[test]
    fn identical_tracebacks_are_grouped_as_one() {
        let t = Tracing::new(System).with_depth(4);
        let blocks: Vec<_> = (0..2).map(|_| t.malloc(123).unwrap()).collect();
        let stats = t
            .take_snapshot()
            .statistics(KeyType::Traceback, false)
            .unwrap();
        assert_eq!(stats.len(), 1, "{stats:?}");
        assert_eq!((stats[0].size, stats[0].count), (246, 2));
        for p in blocks {
            free(&t, p.as_ptr());
        }
    }

    #[test]
    fn a_site_allocating_again_and_again_is_interned_once() {
        let t = Tracing::new(System);
        // One address (one shard of blocks), tracked again and again from one call (loops the
        // compiler cannot unroll into several calls): only the interned tracebacks could grow.
        let foreign = [0u8; 32];
        let mut tables = Vec::new();
        for _ in 0..std::hint::black_box(3) {
            for _ in 0..std::hint::black_box(1000) {
                t.track(1, foreign.as_ptr(), 32).unwrap();
            }
            tables.push(t.tables_memory());
        }
        assert!(tables[0] > 0);
        assert_eq!(
            tables[1], tables[0],
            "no new traceback, no new table memory"
        );
        assert_eq!(tables[2], tables[0]);
    }

    #[test]
    fn clear_traces_forgets_every_block() {
        let t = Tracing::new(System);
        let blocks: Vec<_> = (0..1000).map(|_| t.malloc(123).unwrap()).collect();
        assert!(t.traceback_of(blocks[0].as_ptr()).is_some());
        let tables = t.tables_memory();
        assert!(tables > 1000 * 8, "{tables}");
        t.clear_traces();
        assert_eq!(t.traceback_of(blocks[0].as_ptr()), None);
        assert!(t.tables_memory() <= tables);
        assert!(t.take_snapshot().traces().is_empty());
        for p in blocks {
            free(&t, p.as_ptr());
        }
        assert_eq!(
            t.traced_memory(),
            (0, 0),
            "freeing untraced blocks changes nothing"
        );
    }

    /// The thread's cache of recent tracebacks must not hand out an id from before a clear: the
    /// same site after `clear_traces` gets a traceback that is there.
    #[test]
    fn a_site_seen_before_a_clear_is_traced_after_it() {
        let t = Tracing::new(System);
        let alloc = |t: &Tracing<System>| t.malloc(40).unwrap();
        let before = alloc(&t);
        let site = t.traceback_of(before.as_ptr()).expect("traced");
        for _ in 0..3 {
            t.clear_traces();
            let after = alloc(&t);
            assert_eq!(
                t.traceback_of(after.as_ptr()),
                Some(site.clone()),
                "the cached id is stale after a clear"
            );
            free(&t, after.as_ptr());
        }
        free(&t, before.as_ptr());
    }

    #[test]
    fn is_tracing_follows_start_and_stop() {
        let t = Tracing::new(System);
        assert!(t.is_tracing());
        t.stop();
        assert!(!t.is_tracing());
        let untraced = t.malloc(64).unwrap();
        assert_eq!(t.traced_memory(), (0, 0), "nothing is traced while stopped");
        t.start();
        assert!(t.is_tracing());
        free(&t, untraced.as_ptr());
        assert_eq!(t.traced_memory(), (0, 0));
    }

    /// "Tracing" and the depth are kept in one word: each survives changes of the other.
    #[test]
    fn the_depth_survives_stop_and_start_and_a_new_depth_does_not_start() {
        let t = Tracing::new(System).with_depth(5);
        t.stop();
        assert_eq!(t.depth(), 5, "stop keeps the depth");
        t.set_depth(3).unwrap();
        assert!(!t.is_tracing(), "a new depth does not start tracing");
        assert_eq!(t.depth(), 3);
        t.start();
        assert!(t.is_tracing());
        assert_eq!(t.depth(), 3, "start keeps the depth");
        let p = nested(&t, 6);
        assert_eq!(t.traceback_of(p).unwrap().frames().len(), 3);
        free(&t, p);
        t.set_depth(1).unwrap();
        assert!(t.is_tracing(), "a new depth keeps tracing on");
        assert_eq!(t.depth(), 1);
        let q = nested(&t, 6);
        assert_eq!(t.traceback_of(q).unwrap().frames().len(), 1);
        free(&t, q);
    }

    #[test]
    fn a_snapshot_groups_live_blocks_by_line() {
        let t = Tracing::new(System);
        let mut blocks = Vec::new();
        for _ in 0..3 {
            blocks.push(t.malloc(100).unwrap());
        }
        let line_a = line!() - 2;
        blocks.push(t.calloc(10, 50).unwrap());
        let line_b = line!() - 1;
        let snapshot = t.take_snapshot();
        assert_eq!(snapshot.traces().len(), 4);
        assert_eq!(snapshot.traceback_limit(), 1);
        let stats = snapshot.statistics(KeyType::Lineno, false).unwrap();
        assert_eq!(stats.len(), 2, "{stats:?}");
        assert_eq!((stats[0].size, stats[0].count), (500, 1));
        assert_eq!(site(&stats[0].traceback).1, line_b);
        assert_eq!((stats[1].size, stats[1].count), (300, 3));
        assert_eq!(site(&stats[1].traceback).1, line_a);
        let by_file = snapshot.statistics(KeyType::Filename, false).unwrap();
        assert_eq!(by_file.len(), 1);
        assert_eq!(
            (by_file[0].size, by_file[0].traceback.site().lineno),
            (800, 0)
        );
        let top = snapshot.format_top(KeyType::Lineno, 1);
        assert!(
            top.contains(&format!(":{line_b}: size=500 B, count=1, average=500 B")),
            "{top}"
        );
        assert!(top.contains("1 other: size=300 B, count=3"), "{top}");
        assert!(top.contains("Total allocated size: 800 B"), "{top}");
        for p in blocks {
            free(&t, p.as_ptr());
        }
    }

    /// Every allocation walks from the same call out of the decorator, to a caller that
    /// alternates between two lines: what the walk keeps of the last one must not name the
    /// other.
    #[test]
    fn alternating_sites_are_told_apart() {
        let t = Tracing::new(System);
        let mut blocks = Vec::new();
        let (mut line_a, mut line_b) = (0, 0);
        for _ in 0..4 {
            blocks.push(t.malloc(100).unwrap());
            line_a = line!() - 1;
            blocks.push(t.malloc(200).unwrap());
            line_b = line!() - 1;
        }
        let stats = t
            .take_snapshot()
            .statistics(KeyType::Lineno, false)
            .unwrap();
        let got: Vec<_> = stats
            .iter()
            .map(|s| (s.size, s.count, site(&s.traceback).1))
            .collect();
        assert_eq!(got, [(800, 4, line_b), (400, 4, line_a)]);
        for p in blocks {
            free(&t, p.as_ptr());
        }
    }

    #[test]
    fn compare_to_shows_what_grew_between_two_snapshots() {
        let t = Tracing::new(System);
        let kept = t.malloc(10).unwrap();
        let before = t.take_snapshot();
        let grown: Vec<_> = (0..4).map(|_| t.malloc(1000).unwrap()).collect();
        let line = line!() - 1;
        let after = t.take_snapshot();
        let diff = after.compare_to(&before, KeyType::Lineno, false).unwrap();
        assert_eq!(site(&diff[0].traceback).1, line);
        assert_eq!(
            (
                diff[0].size,
                diff[0].size_diff,
                diff[0].count,
                diff[0].count_diff
            ),
            (4000, 4000, 4, 4)
        );
        assert_eq!(
            (diff[1].size_diff, diff[1].count_diff),
            (0, 0),
            "the kept block"
        );
        for p in grown {
            free(&t, p.as_ptr());
        }
        free(&t, kept.as_ptr());
    }

    #[test]
    fn realloc_moves_the_trace_to_the_new_size_and_site() {
        let t = Tracing::new(System);
        let p = t.malloc(10).unwrap();
        // SAFETY: a live block of `t`.
        let q = unsafe { t.realloc(p.as_ptr(), 5000) }.unwrap();
        let line = line!() - 1;
        assert_eq!(t.traced_memory().0, 5000);
        assert_eq!(site(&t.traceback_of(q.as_ptr()).unwrap()).1, line);
        assert_eq!(t.take_snapshot().traces().len(), 1);
        free(&t, q.as_ptr());
        assert_eq!(t.traced_memory().0, 0);
    }

    #[test]
    fn aligned_blocks_are_traced_and_untraced() {
        let t = Tracing::new(System);
        let layout = core::alloc::Layout::from_size_align(300, 4096).unwrap();
        let p = t.malloc_aligned(layout).unwrap();
        assert_eq!(p.as_ptr() as usize % 4096, 0);
        assert_eq!(t.traced_memory().0, 300);
        // SAFETY: a live aligned block of `t` with this layout.
        unsafe { t.free_aligned(p, layout) };
        assert_eq!(t.traced_memory().0, 0);
    }
}

/// `TestCAPI`: memory of a user domain, tracked and untracked by hand.
mod user_domain {
    use super::*;

    const DOMAIN: u32 = 5;
    const SIZE: usize = 123;

    fn traced_in_domain(t: &Tracing<System>) -> usize {
        t.take_snapshot()
            .filter_traces(&[DomainFilter::include(DOMAIN).into()])
            .total_size()
    }

    #[test]
    fn tracked_memory_has_a_traceback_and_counts_in_its_domain() {
        let t = Tracing::new(System).with_depth(5);
        let foreign = [0u8; SIZE];
        t.track(DOMAIN, foreign.as_ptr(), SIZE).unwrap();
        let line = line!() - 1;
        let tb = t.traceback_in(DOMAIN, foreign.as_ptr()).unwrap();
        assert_eq!(site(&tb).1, line, "{tb:#}");
        assert_eq!(
            t.traceback_of(foreign.as_ptr()),
            None,
            "not in the decorator's domain"
        );
        assert_eq!(traced_in_domain(&t), SIZE);
        let own = t.malloc(50).unwrap();
        assert_eq!(
            traced_in_domain(&t),
            SIZE,
            "the decorator's blocks are in domain 0"
        );
        free(&t, own.as_ptr());
    }

    #[test]
    fn tracking_again_replaces_the_trace() {
        let t = Tracing::new(System);
        let foreign = [0u8; SIZE];
        t.track(DOMAIN, foreign.as_ptr(), SIZE).unwrap();
        t.track(DOMAIN, foreign.as_ptr(), SIZE * 2).unwrap();
        let line = line!() - 1;
        assert_eq!(
            site(&t.traceback_in(DOMAIN, foreign.as_ptr()).unwrap()).1,
            line
        );
        assert_eq!(traced_in_domain(&t), SIZE * 2);
        assert_eq!(t.traced_memory().0, SIZE * 2);
    }

    #[test]
    fn untrack_removes_the_trace_and_may_be_repeated() {
        let t = Tracing::new(System);
        let foreign = [0u8; SIZE];
        t.track(DOMAIN, foreign.as_ptr(), SIZE).unwrap();
        assert_eq!(t.untrack(DOMAIN, foreign.as_ptr()), Ok(true));
        assert_eq!(t.traceback_in(DOMAIN, foreign.as_ptr()), None);
        assert_eq!(traced_in_domain(&t), 0);
        assert_eq!(t.untrack(DOMAIN, foreign.as_ptr()), Ok(false));
        assert_eq!(t.untrack(DOMAIN, foreign.as_ptr()), Ok(false));
    }

    #[test]
    fn track_and_untrack_are_refused_when_stopped() {
        let t = Tracing::new(System);
        let foreign = [0u8; SIZE];
        t.track(DOMAIN, foreign.as_ptr(), SIZE).unwrap();
        t.stop();
        assert_eq!(
            t.track(DOMAIN, foreign.as_ptr(), SIZE),
            Err(TracingError::NotTracing)
        );
        assert_eq!(
            t.untrack(DOMAIN, foreign.as_ptr()),
            Err(TracingError::NotTracing)
        );
        assert_eq!(t.traceback_in(DOMAIN, foreign.as_ptr()), None);
        assert!(TracingError::NotTracing.to_string().contains("start()"));
    }

    #[test]
    fn a_decorator_in_its_own_domain_is_selected_by_domain_filters() {
        let t = Tracing::with_domain(System, DOMAIN);
        let p = t.malloc(SIZE).unwrap();
        assert_eq!(t.domain(), DOMAIN);
        assert_eq!(traced_in_domain(&t), SIZE);
        assert!(t.traceback_in(DOMAIN, p.as_ptr()).is_some());
        let others = t
            .take_snapshot()
            .filter_traces(&[DomainFilter::exclude(DOMAIN).into()]);
        assert!(others.traces().is_empty());
        free(&t, p.as_ptr());
    }
}

/// `TestSnapshot` and `TestFilters`: the same traces, with frames most recent first.
mod snapshots {
    use super::*;

    fn tb(frames: &[(&str, u32)]) -> Traceback {
        Traceback::new(frames.iter().map(|&(f, l)| Frame::new(f, l, "")).collect())
    }

    fn trace(domain: u32, size: usize, frames: &[(&str, u32)]) -> Trace {
        Trace {
            domain,
            size,
            traceback: tb(frames),
        }
    }

    fn a2_b4(domain: u32) -> Trace {
        trace(domain, 10, &[("a.py", 2), ("b.py", 4)])
    }

    fn snapshots() -> (Snapshot, Snapshot) {
        let one = vec![
            a2_b4(0),
            a2_b4(0),
            a2_b4(0),
            trace(1, 2, &[("a.py", 5), ("b.py", 4)]),
            trace(2, 66, &[("b.py", 1)]),
            trace(3, 7, &[("<unknown>", 0)]),
        ];
        let two = vec![
            a2_b4(0),
            a2_b4(0),
            a2_b4(0),
            trace(2, 2, &[("a.py", 5), ("b.py", 4)]),
            trace(2, 5000, &[("a.py", 5), ("b.py", 4)]),
            trace(4, 400, &[("c.py", 578)]),
        ];
        (Snapshot::new(one, 2), Snapshot::new(two, 2))
    }

    fn line(f: &str, l: u32) -> Traceback {
        tb(&[(f, l)])
    }

    fn file(f: &str) -> Traceback {
        tb(&[(f, 0)])
    }

    fn stat(traceback: Traceback, size: usize, count: usize) -> Statistic {
        Statistic {
            traceback,
            size,
            count,
        }
    }

    fn diff(tb: Traceback, size: usize, sd: isize, count: usize, cd: isize) -> StatisticDiff {
        StatisticDiff {
            traceback: tb,
            size,
            size_diff: sd,
            count,
            count_diff: cd,
        }
    }

    #[test]
    fn filter_traces_by_file_and_line() {
        let (s, _) = snapshots();
        let no_b = s.filter_traces(&[Filter::exclude("b.py").into()]);
        assert_eq!(
            no_b.traces(),
            &[
                a2_b4(0),
                a2_b4(0),
                a2_b4(0),
                trace(1, 2, &[("a.py", 5), ("b.py", 4)]),
                trace(3, 7, &[("<unknown>", 0)]),
            ]
        );
        assert_eq!(s.traces().len(), 6, "the original is untouched");
        let two_lines = no_b.filter_traces(&[
            Filter::include("a.py").lineno(2).into(),
            Filter::include("a.py").lineno(5).into(),
        ]);
        assert_eq!(two_lines.traces(), &no_b.traces()[..4]);
        assert_eq!(s.filter_traces(&[]).traces(), s.traces());
    }

    #[test]
    fn filter_traces_by_file_within_a_domain() {
        let (s, _) = snapshots();
        let excluded = s.filter_traces(&[Filter::exclude("a.py").domain(1).into()]);
        assert_eq!(
            excluded.traces(),
            &[
                a2_b4(0),
                a2_b4(0),
                a2_b4(0),
                trace(2, 66, &[("b.py", 1)]),
                trace(3, 7, &[("<unknown>", 0)]),
            ]
        );
        let included = s.filter_traces(&[Filter::include("a.py").domain(1).into()]);
        assert_eq!(
            included.traces(),
            &[trace(1, 2, &[("a.py", 5), ("b.py", 4)])]
        );
    }

    #[test]
    fn filter_traces_by_domain() {
        let (s, _) = snapshots();
        let without_3 = s.filter_traces(&[DomainFilter::exclude(3).into()]);
        assert_eq!(without_3.traces(), &s.traces()[..5]);
        let only_3 = s.filter_traces(&[DomainFilter::include(3).into()]);
        assert_eq!(only_3.traces(), &[trace(3, 7, &[("<unknown>", 0)])]);
    }

    #[test]
    fn statistics_and_differences_by_line() {
        let (s, s2) = snapshots();
        assert_eq!(
            s.statistics(KeyType::Lineno, false).unwrap(),
            vec![
                stat(line("b.py", 1), 66, 1),
                stat(line("a.py", 2), 30, 3),
                stat(line("<unknown>", 0), 7, 1),
                stat(line("a.py", 5), 2, 1),
            ]
        );
        assert_eq!(
            s2.statistics(KeyType::Lineno, false).unwrap(),
            vec![
                stat(line("a.py", 5), 5002, 2),
                stat(line("c.py", 578), 400, 1),
                stat(line("a.py", 2), 30, 3),
            ]
        );
        assert_eq!(
            s2.compare_to(&s, KeyType::Lineno, false).unwrap(),
            vec![
                diff(line("a.py", 5), 5002, 5000, 2, 1),
                diff(line("c.py", 578), 400, 400, 1, 1),
                diff(line("b.py", 1), 0, -66, 0, -1),
                diff(line("<unknown>", 0), 0, -7, 0, -1),
                diff(line("a.py", 2), 30, 0, 3, 0),
            ]
        );
    }

    #[test]
    fn statistics_and_differences_by_file() {
        let (s, s2) = snapshots();
        assert_eq!(
            s.statistics(KeyType::Filename, false).unwrap(),
            vec![
                stat(file("b.py"), 66, 1),
                stat(file("a.py"), 32, 4),
                stat(file("<unknown>"), 7, 1),
            ]
        );
        assert_eq!(
            s2.statistics(KeyType::Filename, false).unwrap(),
            vec![stat(file("a.py"), 5032, 5), stat(file("c.py"), 400, 1)]
        );
        assert_eq!(
            s2.compare_to(&s, KeyType::Filename, false).unwrap(),
            vec![
                diff(file("a.py"), 5032, 5000, 5, 1),
                diff(file("c.py"), 400, 400, 1, 1),
                diff(file("b.py"), 0, -66, 0, -1),
                diff(file("<unknown>"), 0, -7, 0, -1),
            ]
        );
    }

    #[test]
    fn statistics_and_differences_by_traceback() {
        let (s, s2) = snapshots();
        let tb1 = tb(&[("a.py", 2), ("b.py", 4)]);
        let tb2 = tb(&[("a.py", 5), ("b.py", 4)]);
        let tb3 = line("b.py", 1);
        let tb4 = line("<unknown>", 0);
        let tb5 = line("c.py", 578);
        assert_eq!(
            s.statistics(KeyType::Traceback, false).unwrap(),
            vec![
                stat(tb3.clone(), 66, 1),
                stat(tb1.clone(), 30, 3),
                stat(tb4.clone(), 7, 1),
                stat(tb2.clone(), 2, 1),
            ]
        );
        assert_eq!(
            s2.statistics(KeyType::Traceback, false).unwrap(),
            vec![
                stat(tb2.clone(), 5002, 2),
                stat(tb5.clone(), 400, 1),
                stat(tb1.clone(), 30, 3),
            ]
        );
        assert_eq!(
            s2.compare_to(&s, KeyType::Traceback, false).unwrap(),
            vec![
                diff(tb2, 5002, 5000, 2, 1),
                diff(tb5, 400, 400, 1, 1),
                diff(tb3, 0, -66, 0, -1),
                diff(tb4, 0, -7, 0, -1),
                diff(tb1, 30, 0, 3, 0),
            ]
        );
        assert_eq!(
            s.statistics(KeyType::Traceback, true),
            Err(TracingError::CumulativeTraceback)
        );
    }

    #[test]
    fn cumulative_statistics_count_every_frame() {
        let (s, _) = snapshots();
        assert_eq!(
            s.statistics(KeyType::Filename, true).unwrap(),
            vec![
                stat(file("b.py"), 98, 5),
                stat(file("a.py"), 32, 4),
                stat(file("<unknown>"), 7, 1),
            ]
        );
        assert_eq!(
            s.statistics(KeyType::Lineno, true).unwrap(),
            vec![
                stat(line("b.py", 1), 66, 1),
                stat(line("b.py", 4), 32, 4),
                stat(line("a.py", 2), 30, 3),
                stat(line("<unknown>", 0), 7, 1),
                stat(line("a.py", 5), 2, 1),
            ]
        );
    }

    #[test]
    fn formats_read_as_tracemalloc_prints_them() {
        let (s, s2) = snapshots();
        assert_eq!(s.traces()[0].to_string(), "a.py:2: 10 B");
        let t = &s.traces()[0].traceback;
        assert_eq!(t.to_string(), "a.py:2");
        assert_eq!(t.frames()[1].to_string(), "b.py:4");
        assert_eq!(
            t.format(),
            "  File \"a.py\", line 2\n  File \"b.py\", line 4\n"
        );
        assert_eq!(
            s.statistics(KeyType::Lineno, false).unwrap()[0].to_string(),
            "b.py:1: size=66 B, count=1, average=66 B"
        );
        assert_eq!(
            s2.compare_to(&s, KeyType::Lineno, false).unwrap()[0].to_string(),
            "a.py:5: size=5002 B (+5000 B), count=2 (+1), average=2501 B"
        );
    }

    fn matches_frame(f: &Filter, filename: &str, lineno: u32) -> bool {
        f.matches(&trace(0, 1, &[(filename, lineno)]))
    }

    #[test]
    fn a_filter_matches_the_file_and_the_line() {
        let cases: [(Filter, [bool; 6]); 6] = [
            (
                Filter::include("abc"),
                [true, true, true, false, false, false],
            ),
            (
                Filter::exclude("abc"),
                [false, false, false, true, true, true],
            ),
            (
                Filter::include("abc").lineno(5),
                [false, true, false, false, false, false],
            ),
            (
                Filter::exclude("abc").lineno(5),
                [true, false, true, true, true, true],
            ),
            (
                Filter::include("abc").lineno(0),
                [true, false, false, false, false, false],
            ),
            (
                Filter::exclude("abc").lineno(0),
                [false, true, true, true, true, true],
            ),
        ];
        for (f, expected) in cases {
            let got = [
                matches_frame(&f, "abc", 0),
                matches_frame(&f, "abc", 5),
                matches_frame(&f, "abc", 10),
                matches_frame(&f, "12356", 0),
                matches_frame(&f, "12356", 5),
                matches_frame(&f, "12356", 10),
            ];
            assert_eq!(got, expected, "{f:?}");
        }
        assert!(!matches_frame(&Filter::include("abc"), "<unknown>", 0));
        assert!(matches_frame(&Filter::exclude("abc"), "<unknown>", 0));
    }

    #[test]
    fn file_patterns_are_globs_over_the_whole_name() {
        let m = |name: &str, pattern: &str| matches_frame(&Filter::include(pattern), name, 0);
        assert!(!m("abc", "") && !m("", "abc") && m("", "") && m("", "*"));
        assert!(m("abc", "abc") && !m("abc", "abcd") && !m("abc", "def"));
        assert!(m("abc", "a*") && m("abc", "abc*") && !m("abc", "b*") && !m("abc", "abcd*"));
        assert!(m("abc", "a*c") && m("abcdcx", "a*cx") && !m("abb", "a*c") && !m("abcdce", "a*cx"));
        assert!(m("abcde", "a*c*e") && m("abcbdefeg", "a*bd*eg"));
        assert!(!m("abcdd", "a*c*e") && !m("abcbdefef", "a*bd*eg"));
        assert!(!m("aBC", "ABc") && !m("aBcDe", "Ab*dE"), "case sensitive");
        assert!(!m("a/b", "a\\b"), "no alternate separator");
    }

    #[test]
    fn a_filter_matches_the_most_recent_frame_or_all_frames() {
        let t1 = trace(0, 1, &[("a.py", 2), ("b.py", 3)]);
        let t2 = trace(0, 1, &[("b.py", 4), ("b.py", 5)]);
        let t3 = trace(0, 1, &[("c.py", 5), ("<unknown>", 0)]);
        let unknown = trace(0, 1, &[("<unknown>", 0)]);
        let cases = [
            (
                Filter::include("b.py").all_frames(true),
                [true, true, false, false],
            ),
            (Filter::include("b.py"), [false, true, false, false]),
            (
                Filter::exclude("b.py").all_frames(true),
                [false, false, true, true],
            ),
            (Filter::exclude("b.py"), [true, false, true, true]),
            (Filter::exclude("<unknown>"), [true, true, true, false]),
            (
                Filter::include("<unknown>").all_frames(true),
                [false, false, true, true],
            ),
            (
                Filter::exclude("<unknown>").all_frames(true),
                [true, true, false, false],
            ),
        ];
        for (f, expected) in cases {
            let got = [&t1, &t2, &t3, &unknown].map(|t| f.matches(t));
            assert_eq!(got, expected, "{f:?}");
        }
    }
}

mod beyond_tracemalloc {
    use super::*;

    /// Allocates `size` bytes from one line, always the same: after the first, the common
    /// allocation (a place and a caller met before, the thread's last traceback).
    #[inline(never)]
    fn from_one_line<A: DomainAllocator>(t: &Tracing<A>, size: usize) -> *mut u8 {
        t.malloc(size).unwrap().as_ptr()
    }

    /// The C library's allocator, except that a block handed to [`Reusing::keep`] (as if freed)
    /// is what its next `malloc` of no more bytes returns: an inner allocator that reuses an
    /// address whose free did not pass through the decorator above it.
    struct Reusing {
        kept: std::sync::Mutex<Option<(usize, usize)>>,
    }

    impl Reusing {
        fn keep(&self, p: *mut u8, size: usize) {
            *self.kept.lock().unwrap() = Some((p as usize, size));
        }
    }

    // SAFETY: every block is the C library's; a kept block is handed out once, for a request
    // no larger than the one it was made for, and is not freed meanwhile.
    unsafe impl DomainAllocator for Reusing {
        fn malloc(&self, size: usize) -> Option<core::ptr::NonNull<u8>> {
            let mut kept = self.kept.lock().unwrap();
            if let Some((p, made)) = *kept
                && size <= made
            {
                *kept = None;
                return core::ptr::NonNull::new(p as *mut u8);
            }
            drop(kept);
            System.malloc(size)
        }
        unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<core::ptr::NonNull<u8>> {
            // SAFETY: the caller's guarantee: a live block of ours, the C library's.
            unsafe { System.realloc(ptr, new_size) }
        }
        unsafe fn free(&self, ptr: *mut u8) {
            // SAFETY: as above.
            unsafe { System.free(ptr) }
        }
    }

    /// Two decorators traced from the same place and line, one after the other: the thread's
    /// last traceback is one decorator's, and never stands for the other's (whose tables number
    /// their tracebacks in another order).
    #[test]
    fn the_last_traceback_of_one_decorator_is_not_anothers() {
        let (a, b) = (Tracing::new(System), Tracing::new(System));
        // `b` numbers another site first.
        let other = b.malloc(8).unwrap().as_ptr();
        let other_line = line!() - 1;
        let mut live = Vec::new();
        for _ in 0..alloc_debug::CALIBRATION + 4 {
            live.push((from_one_line(&a, 64), from_one_line(&b, 64)));
        }
        // Room under both peaks, so that the allocations below are the common one.
        for (p, q) in live.drain(..4) {
            free(&a, p);
            free(&b, q);
        }
        let line = site(&a.traceback_of(live[0].0).unwrap()).1;
        assert_ne!(line, other_line);
        for _ in 0..3 {
            let (p, q) = (from_one_line(&a, 64), from_one_line(&b, 64));
            assert_eq!(site(&a.traceback_of(p).unwrap()).1, line);
            assert_eq!(
                site(&b.traceback_of(q).unwrap()).1,
                line,
                "b's own traceback"
            );
            live.push((p, q));
        }
        assert_eq!(site(&b.traceback_of(other).unwrap()).1, other_line);
        free(&b, other);
        for (p, q) in live {
            free(&a, p);
            free(&b, q);
        }
        assert_eq!((a.traced_memory().0, b.traced_memory().0), (0, 0));
    }

    /// The common allocation onto an address that still has a record (its block was reused by
    /// the inner allocator without a free through the decorator) replaces the record, and
    /// counts its bytes once.
    #[test]
    fn the_common_allocation_replaces_a_stale_record() {
        let t = Tracing::new(Reusing {
            kept: std::sync::Mutex::new(None),
        });
        let mut warm: Vec<*mut u8> = (0..alloc_debug::CALIBRATION + 4)
            .map(|_| from_one_line(&t, 40))
            .collect();
        // Room under the peak, so that the allocations below are the common one.
        free(&t, warm.pop().unwrap());
        free(&t, warm.pop().unwrap());
        let n = warm.len();
        assert_eq!(t.traced_memory().0, 40 * n);
        let p = from_one_line(&t, 40);
        t.inner().keep(p, 40);
        let q = from_one_line(&t, 40);
        assert_eq!(q, p, "the kept block, again");
        assert_eq!(
            t.traced_memory().0,
            40 * (n + 1),
            "the stale record replaced"
        );
        free(&t, q);
        for p in warm {
            free(&t, p);
        }
        assert_eq!(t.traced_memory().0, 0);
    }

    /// The common allocation, again and again from one line, keeps everything exact: traced
    /// memory and its peak (also across a reset), the traceback (also across a clear, whose
    /// cached tracebacks are stale), and a block the inner allocator reused without its free
    /// passing here.
    #[test]
    fn the_common_allocation_from_one_line_is_traced_exactly() {
        let t = Tracing::new(System);
        // Past the calibration (the method is chosen by then) and into the thread's notes.
        let mut live: Vec<*mut u8> = (0..alloc_debug::CALIBRATION + 4)
            .map(|_| from_one_line(&t, 100))
            .collect();
        let site_of = |p: *mut u8| t.traceback_of(p).map(|tb| site(&tb).1);
        let line = site_of(live[0]).expect("traced");
        for &p in &live {
            assert_eq!(site_of(p), Some(line));
        }
        let n = live.len();
        assert_eq!(t.traced_memory(), (100 * n, 100 * n));
        for _ in 0..n / 2 {
            free(&t, live.pop().unwrap());
        }
        let half = 100 * live.len();
        assert_eq!(t.traced_memory(), (half, 100 * n));
        t.reset_peak();
        for _ in 0..3 {
            live.push(from_one_line(&t, 100));
        }
        assert_eq!(
            t.traced_memory(),
            (half + 300, half + 300),
            "the peak rose again"
        );
        // Room under the peak, so that what follows is the common allocation, not a new peak.
        while live.len() > 3 {
            free(&t, live.pop().unwrap());
        }
        assert_eq!(t.traced_memory(), (300, half + 300));
        let under = from_one_line(&t, 100);
        assert_eq!(t.traced_memory(), (400, half + 300));
        assert_eq!(site_of(under), Some(line));
        free(&t, under);
        // Cleared: the tracebacks cached before name nothing now.
        t.clear_traces();
        let p = from_one_line(&t, 40);
        assert_eq!(site_of(p), Some(line), "traced anew after a clear");
        assert_eq!(t.traced_memory().0, 40);
        free(&t, p);
        assert_eq!(t.traced_memory().0, 0);
        for p in live {
            // SAFETY: blocks of `t` made before the clear: untraced now, the inner allocator's.
            unsafe { t.inner().free(p) };
        }
    }

    #[test]
    fn tags_name_sites_without_a_stack_walk() {
        let t = Tracing::new(System);
        static CACHE: Tag = Tag::new("cache", 42);
        let a = with_tag(CACHE, || t.malloc(100).unwrap());
        let b = t.malloc_tagged(200, Tag::new("parser", 7)).unwrap();
        let c = with_tag(CACHE, || with_tag(Tag::here(), || t.malloc(1).unwrap()));
        let inner_line = line!() - 1;
        let d = t.malloc(1).unwrap();
        assert_eq!(site(&t.traceback_of(a.as_ptr()).unwrap()), ("cache", 42));
        assert_eq!(site(&t.traceback_of(b.as_ptr()).unwrap()), ("parser", 7));
        let tc = t.traceback_of(c.as_ptr()).unwrap();
        assert_eq!(site(&tc).1, inner_line, "the innermost tag wins");
        assert!(
            is_this_file(site(&t.traceback_of(d.as_ptr()).unwrap()).0),
            "after the scopes, stacks again"
        );
        for p in [a, b, c, d] {
            free(&t, p.as_ptr());
        }
    }

    #[test]
    fn the_leak_report_lists_what_is_still_live_by_site() {
        let t = Tracing::new(System);
        let freed = t.malloc(10).unwrap();
        let leaked: Vec<_> = (0..3).map(|_| t.malloc(700).unwrap()).collect();
        let line = line!() - 1;
        free(&t, freed.as_ptr());
        let report = t.leak_report();
        assert_eq!((report.blocks, report.bytes), (3, 2100));
        assert_eq!(report.sites.len(), 1);
        assert_eq!(site(&report.sites[0].traceback).1, line);
        let text = report.to_string();
        assert!(
            text.starts_with("3 live blocks, 2100 B in 1 sites\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(":{line}: size=2100 B, count=3")),
            "{text}"
        );
        for p in leaked {
            free(&t, p.as_ptr());
        }
        assert!(t.leak_report().is_empty());
    }

    #[test]
    fn no_growth_passes_for_a_closure_that_frees_what_it_allocates() {
        let t = Tracing::new(System);
        let kept = t.malloc(10).unwrap();
        let r = t.check_no_growth(|| {
            let p = t.malloc(1000).unwrap();
            free(&t, kept.as_ptr());
            free(&t, p.as_ptr());
            7
        });
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn growth_fails_with_the_site_that_grew() {
        let t = Tracing::new(System);
        let mut leaked = Vec::new();
        let g = t
            .check_no_growth(|| leaked.push(t.malloc(4096).unwrap()))
            .unwrap_err();
        let line = line!() - 2;
        assert_eq!((g.bytes, g.blocks), (4096, 1));
        assert_eq!(g.sites.len(), 1);
        assert_eq!(site(&g.sites[0].traceback).1, line);
        let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.assert_no_growth(|| leaked.push(t.malloc(4096).unwrap()))
        }))
        .unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.starts_with("memory grew across the closure: +4096 B in +1 blocks still live\n"),
            "{msg}"
        );
        assert!(msg.contains("size=4096 B (+4096 B), count=1 (+1)"), "{msg}");
        assert!(msg.contains("tests/tracemalloc.rs\", line"), "{msg}");
        for p in leaked {
            free(&t, p.as_ptr());
        }
    }

    #[test]
    fn guarded_reports_where_a_damaged_block_was_allocated() {
        let g = alloc_debug::Guarded::new(Tracing::new(System).with_depth(2))
            .with_action(Action::Record);
        let p = g.malloc(16).unwrap().as_ptr();
        let line = line!() - 1;
        // SAFETY: one byte past the 16 requested: the trailing guard, inside the inner block;
        // the overflow is the error under test.
        unsafe {
            p.add(16).write(0);
            g.free(p);
        }
        let v = &g.violations()[0];
        assert_eq!(v.kind, ViolationKind::BufferOverflow);
        let r = v.report();
        assert!(
            r.contains("Memory block allocated at (most recent call first):"),
            "{r}"
        );
        assert!(
            r.contains(&format!("tests/tracemalloc.rs\", line {line}")),
            "{r}"
        );
    }

    #[test]
    fn guarded_reports_where_a_damaged_aligned_block_was_allocated_and_withholds_it() {
        let g = alloc_debug::Guarded::new(Tracing::new(System).with_depth(2))
            .with_action(Action::Record);
        let layout = core::alloc::Layout::from_size_align(24, 64).unwrap();
        let p = g.malloc_aligned(layout).unwrap();
        let line = line!() - 1;
        // SAFETY: one byte past the 24 requested: the trailing guard, inside the inner block;
        // the overflow is the error under test.
        unsafe {
            p.as_ptr().add(24).write(0);
            g.free_aligned(p, layout);
        }
        let v = &g.violations()[0];
        assert_eq!(v.kind, ViolationKind::BufferOverflow);
        let r = v.report();
        assert!(
            r.contains(&format!("tests/tracemalloc.rs\", line {line}")),
            "{r}"
        );
        assert_eq!(
            g.release_withheld(),
            1,
            "the damaged aligned block was withheld, then released"
        );
    }

    #[test]
    fn traced_memory_is_exact_under_threads_freeing_each_others_blocks() {
        let t = Arc::new(Tracing::new(System));
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (t, barrier) = (t.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut kept = Vec::new();
                    for n in 0..2000usize {
                        let p = t.malloc(16 + (n + i) % 100).unwrap();
                        if n % 4 == 0 {
                            kept.push(p.as_ptr() as usize);
                        } else {
                            free(&t, p.as_ptr());
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let expected: usize = (0..4)
            .map(|i| {
                (0..2000)
                    .step_by(4)
                    .map(|n| 16 + (n + i) % 100)
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(t.traced_memory().0, expected);
        assert_eq!(t.take_snapshot().traces().len(), 4 * 500);
        // Each thread's blocks freed by another.
        for blocks in kept.iter().rev() {
            for &p in blocks {
                free(&t, p as *mut u8);
            }
        }
        assert_eq!(t.traced_memory().0, 0);
    }

    #[test]
    fn snapshots_taken_while_threads_allocate_see_consistent_blocks() {
        let t = Arc::new(Tracing::new(System));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let p = t.malloc(48).unwrap();
                        free(&t, p.as_ptr());
                    }
                })
            })
            .collect();
        let kept = t.malloc(1000).unwrap();
        for _ in 0..20 {
            let s = t.take_snapshot();
            assert!(s.traces().iter().all(|tr| tr.size == 48 || tr.size == 1000));
            assert_eq!(s.traces().iter().filter(|tr| tr.size == 1000).count(), 1);
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        free(&t, kept.as_ptr());
        assert_eq!(t.traced_memory().0, 0);
    }

    #[test]
    fn locked_tables_hold_allocations_until_unlocked() {
        let t = Arc::new(Tracing::new(System));
        t.lock_tables();
        let done = Arc::new(AtomicBool::new(false));
        let h = {
            let (t, done) = (t.clone(), done.clone());
            std::thread::spawn(move || {
                let p = t.malloc(8).unwrap();
                done.store(true, Ordering::SeqCst);
                p.as_ptr() as usize
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !done.load(Ordering::SeqCst),
            "the allocation waits for the tables"
        );
        // SAFETY: locked by `lock_tables` on this thread above.
        unsafe { t.unlock_tables() };
        let p = h.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(t.traced_memory().0, 8);
        free(&t, p as *mut u8);
    }
}
