//! loom models of the crate's lock-free protocols (built and run only with `--cfg loom`; `cargo
//! xtask loom` runs them with loom's default bounds, the default test run a bounded set, see
//! `benches/tests/loom.rs`). Each runs the crate's own code on loom's atomics.

use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::addresses::Addresses;
use crate::guard_slots::{self, FREE, LIVE, Lists, QUARANTINED, Record, UNUSED};
use crate::scope_table::{Counts, Table};
use crate::tally::{Balance, PEAK_SLACK, Tallies};
use crate::tracking::Tracker;

/// Two threads race for the last free shard: one counts there alone (plain loads and stores),
/// the other in the shared shard (read-modify-writes); every count is there after the join.
#[test]
fn tally_threads_racing_for_one_shard_lose_no_count() {
    loom::model(|| {
        let t = Arc::new(Tallies::<2>::new());
        t.hold_all_but_one();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                thread::spawn(move || {
                    t.slot().add(0, 1);
                    t.slot().add(0, 1);
                    t.slot().add(1, 5u64.wrapping_neg());
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.sum(0), 4);
        assert_eq!(t.sum(1) as i64, -10);
    });
}

/// Bytes grown on one thread and shrunk on another, each past the slack (so both publish):
/// bytes live come back to what is left, and the peak is one that happened.
#[test]
fn balances_published_from_two_threads_add_up() {
    loom::model(|| {
        let t = Arc::new(Tallies::<2>::new());
        let b = Arc::new(Balance::new());
        let big = PEAK_SLACK + 16;
        let (t1, b1) = (t.clone(), b.clone());
        let grower = thread::spawn(move || {
            b1.grow(t1.slot(), 0, big);
            b1.grow(t1.slot(), 0, 8);
        });
        let (t2, b2) = (t.clone(), b.clone());
        let shrinker = thread::spawn(move || b2.shrink(t2.slot(), 0, big));
        grower.join().unwrap();
        shrinker.join().unwrap();
        assert_eq!(b.live(&t, 0), 8);
        assert!(b.peak(8) <= big + 8, "no peak above what was ever live");
    });
}

/// A reset of the peak on one thread racing another thread's grows (past the slack, so it
/// publishes and sets its ceiling while the reset drops it): no byte is lost, and the peak is
/// never above what was live.
///
/// Bounded to 4 preemptions (about 10 s): the grower's three calls each take several atomic steps
/// against the reset's, and the unbounded search runs for hours (it did not finish in 46
/// minutes); every interleaving with up to 4 preemptions covers each single race between a grow
/// or shrink and the reset, and each pair of them.
#[test]
fn a_peak_reset_racing_a_settle_keeps_the_bytes() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(4);
    model.check(|| {
        let t = Arc::new(Tallies::<2>::new());
        let b = Arc::new(Balance::new());
        let big = PEAK_SLACK + 16;
        let (t1, b1) = (t.clone(), b.clone());
        let grower = thread::spawn(move || {
            b1.grow(t1.slot(), 0, big);
            b1.shrink(t1.slot(), 0, big);
            b1.grow(t1.slot(), 0, 8);
        });
        b.reset_peak(&t, 0);
        grower.join().unwrap();
        assert_eq!(b.live(&t, 0), 8);
        assert!(b.peak(8) <= big, "no peak above what was ever live");
    });
}

/// `track` racing the first block made: either the block is remembered, or `track` says that a
/// block went unremembered; never a block missed while `track` says every block is covered.
#[test]
fn track_races_the_first_block() {
    loom::model(|| {
        let tracker = Arc::new(Tracker::new());
        let t = tracker.clone();
        let asker = thread::spawn(move || t.track());
        let remembered = tracker.made();
        let covered = asker.join().unwrap();
        assert_eq!(covered, remembered);
        assert!(tracker.is_tracking());
        // A tracker that missed the first block knows it for good (LATE), even after another ask.
        assert_eq!(tracker.is_complete(), covered);
        assert_eq!(tracker.track(), covered);
        assert_eq!(tracker.is_complete(), covered);
    });
}

/// A decorator's fast key opened (after the first block) while `track` switches remembering on:
/// however the two interleave, once `track` returns and the opener is done the key is 0, so no
/// fast path goes on skipping the ownership set; without `track`, the key stays open.
#[test]
fn track_races_the_fast_key() {
    loom::model(|| {
        let tracker = Arc::new(Tracker::new());
        assert!(!tracker.made(), "the first block is made before tracking");
        let t = tracker.clone();
        let opener = thread::spawn(move || t.open_fast(7));
        let covered = tracker.track();
        opener.join().unwrap();
        assert!(!covered, "a block went unremembered");
        assert_eq!(tracker.fast_key(), 0);
    });
    loom::model(|| {
        let tracker = Tracker::new();
        // Not opened before the first block, opened after it.
        tracker.open_fast(7);
        assert_eq!(tracker.fast_key(), 0);
        assert!(!tracker.made());
        tracker.open_fast(7);
        assert_eq!(tracker.fast_key(), 7);
    });
}

/// Two threads look up the same two addresses, which share a home slot (so the second is found
/// past the first), in opposite orders, each learning a fact of each: every address ends in one
/// slot, the two in two slots, with every fact learned for it and none learned for the other.
#[test]
fn addresses_claimed_from_two_threads_have_one_slot_each() {
    let a = 0x1000;
    let b = (0x1001..)
        .find(|&b| Addresses::<2>::home(b) == Addresses::<2>::home(a))
        .unwrap();
    loom::model(move || {
        let t = Arc::new(Addresses::<2>::new());
        let t1 = t.clone();
        let other = thread::spawn(move || {
            t1.slot(b).unwrap().learn(0b0100);
            t1.slot(a).unwrap().learn(0b0001);
        });
        let sa = t.slot(a).unwrap();
        sa.learn(0b0010);
        let sb = t.slot(b).unwrap();
        sb.learn(0b1000);
        other.join().unwrap();
        assert!(!core::ptr::eq(sa, sb));
        assert!(core::ptr::eq(t.slot(a).unwrap(), sa));
        assert!(core::ptr::eq(t.slot(b).unwrap(), sb));
        assert_eq!(sa.known(), 0b0011);
        assert_eq!(sb.known(), 0b1100);
    });
}

/// A read of bytes live racing one thread that frees a block (publishing its balance below the
/// slack), allocates a little and then enough to publish again: the total comes back to what it
/// was, so only the publish counts can tell the reader that its total and its balances are from
/// either side of two publishes. The read is a value that was live.
#[test]
fn a_read_of_bytes_live_never_sees_a_publish_half() {
    loom::model(|| {
        let t = Arc::new(Tallies::<2>::new());
        let b = Arc::new(Balance::new());
        let big = PEAK_SLACK + 8 * 1024 + 16;
        b.grow(t.slot(), 0, big); // published: the total is `big`
        let (t1, b1) = (t.clone(), b.clone());
        let worker = thread::spawn(move || {
            b1.shrink(t1.slot(), 0, big); // published: the total is 0
            b1.grow(t1.slot(), 0, 10 * 1024); // the worker's balance
            b1.grow(t1.slot(), 0, big - 10 * 1024); // published: the total is `big` again
        });
        let seen = b.live(&t, 0);
        worker.join().unwrap();
        assert!(
            seen <= big,
            "read {seen} bytes live, never more than {big} were"
        );
        assert_eq!(b.live(&t, 0), big);
    });
}

/// A guard-page pool of `n` slots for the models: the records and the lists under their lock,
/// every slot on the free list.
fn guard_pool(n: usize) -> (Arc<Vec<Record>>, Arc<Mutex<Lists>>) {
    let records: Vec<Record> = (0..n).map(|_| Record::new()).collect();
    let mut lists = Lists::new();
    lists.link(&records);
    (Arc::new(records), Arc::new(Mutex::new(lists)))
}

/// A block of `size` bytes placed at `addr` as `GuardPages` places one: a slot taken under the
/// lock, then the block published; the slot, `None` if none was free.
fn guard_place(
    records: &[Record],
    lists: &Mutex<Lists>,
    addr: usize,
    size: usize,
) -> Option<usize> {
    let slot = lists.lock().unwrap().take(records)?;
    records[slot].publish(addr, size);
    Some(slot)
}

/// A free of the block at `addr` in `slot` as `GuardPages` frees one (without pages to close):
/// whether it freed the block (`false`: it is reported as no live block).
fn guard_free(
    records: &[Record],
    lists: &Mutex<Lists>,
    slot: usize,
    addr: usize,
    limit: u32,
) -> bool {
    guard_slots::free(records, slot, addr, limit, |_| {}, || lists.lock().unwrap())
}

/// Every slot is on exactly one of the free list, the quarantine (at most `limit` long) and the
/// slots live (those in `live`), in the state of that list, and the counts agree.
fn assert_guard_lists(records: &[Record], lists: &Lists, live: &[usize], limit: u32) {
    let free = lists.free_slots(records);
    let quarantined = lists.quarantined_slots(records);
    assert!(
        quarantined.len() <= limit as usize,
        "quarantine past its limit: {quarantined:?}"
    );
    assert_eq!(lists.quarantined as usize, quarantined.len());
    assert_eq!(lists.live as usize, live.len());
    let mut all: Vec<usize> = free
        .iter()
        .chain(&quarantined)
        .chain(live)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..records.len()).collect::<Vec<_>>(),
        "every slot once: free {free:?}, quarantined {quarantined:?}, live {live:?}"
    );
    for &s in &free {
        assert!(
            matches!(records[s].state(), FREE | UNUSED),
            "slot {s} on the free list"
        );
    }
    for &s in &quarantined {
        assert_eq!(
            records[s].state(),
            QUARANTINED,
            "slot {s} in the quarantine"
        );
    }
    for &s in live {
        assert_eq!(records[s].state(), LIVE, "slot {s} live");
    }
}

/// Two threads free the same guarded block at once (a double free): exactly one frees it, the
/// other is refused (and so reported); the slot is in the quarantine once.
#[test]
fn guarded_block_freed_twice_at_once_is_freed_once() {
    loom::model(|| {
        let (records, lists) = guard_pool(2);
        let slot = guard_place(&records, &lists, 0x1000, 16).unwrap();
        let (r1, l1) = (records.clone(), lists.clone());
        let other = thread::spawn(move || guard_free(&r1, &l1, slot, 0x1000, 1));
        let mine = guard_free(&records, &lists, slot, 0x1000, 1);
        let theirs = other.join().unwrap();
        assert!(
            mine ^ theirs,
            "one free frees the block, the other is a double free ({mine}, {theirs})"
        );
        let l = lists.lock().unwrap();
        assert_eq!(l.quarantined_slots(&records), [slot]);
        assert_guard_lists(&records, &l, &[], 1);
    });
}

/// A free of a block racing another thread that frees the same block, takes its slot again (the
/// quarantine holds none) and places a new block there: the stale free never frees the new block.
/// Exactly one of the two frees of the old block frees it; the new block, if placed, stays live.
#[test]
fn a_stale_free_racing_the_slots_reuse_never_frees_the_new_block() {
    loom::model(|| {
        let (records, lists) = guard_pool(1);
        let slot = guard_place(&records, &lists, 0x1000, 16).unwrap();
        let (r1, l1) = (records.clone(), lists.clone());
        let stale = thread::spawn(move || guard_free(&r1, &l1, slot, 0x1000, 0));
        let freed = guard_free(&records, &lists, slot, 0x1000, 0);
        let placed = freed.then(|| guard_place(&records, &lists, 0x2000, 32));
        let stale_freed = stale.join().unwrap();
        assert!(
            freed ^ stale_freed,
            "the old block is freed once ({freed}, {stale_freed})"
        );
        let l = lists.lock().unwrap();
        match placed {
            // The slot was free again once the stale free was refused, or before it ran.
            Some(Some(s)) => {
                assert!(records[s].holds(0x2000), "the new block is still live");
                assert_guard_lists(&records, &l, &[s], 0);
            }
            Some(None) => panic!("the slot freed with an empty quarantine is free"),
            None => assert_guard_lists(&records, &l, &[], 0),
        }
    });
}

/// Two blocks freed on two threads at once while one of them then takes a slot, with a
/// quarantine of one: the quarantine never holds more than one slot (the one freed last), the
/// slot taken is never one of a live block or one in the quarantine, and every slot is on
/// exactly one list.
#[test]
fn frees_racing_a_take_keep_the_quarantine_bounded_and_hand_out_slots_once() {
    loom::model(|| {
        let (records, lists) = guard_pool(3);
        // A slot taken whose pages could not be opened goes back, a miss.
        let missed = lists.lock().unwrap().take(&records).unwrap();
        lists.lock().unwrap().put_back(&records, missed);
        let a = guard_place(&records, &lists, 0x1000, 16).unwrap();
        let b = guard_place(&records, &lists, 0x2000, 16).unwrap();
        let (r1, l1) = (records.clone(), lists.clone());
        let other = thread::spawn(move || assert!(guard_free(&r1, &l1, a, 0x1000, 1)));
        assert!(guard_free(&records, &lists, b, 0x2000, 1));
        let c = guard_place(&records, &lists, 0x3000, 8).expect("a slot is free");
        other.join().unwrap();
        let l = lists.lock().unwrap();
        assert_guard_lists(&records, &l, &[c], 1);
        // The quarantine's one slot is the last freed: whichever of a and b that was, c is not it.
        let q = l.quarantined_slots(&records);
        assert_eq!(q.len(), 1);
        assert!(q[0] == a || q[0] == b);
        assert!(records[c].holds(0x3000));
        assert_eq!((l.guarded, l.missed), (3, 1));
    });
}

/// Two scopes opened at once, each counting: they claim different slots, each with its own
/// counts from zero, and a third finds none free.
#[test]
fn scopes_opened_at_once_claim_different_slots() {
    loom::model(|| {
        let t = Arc::new(Table::<2>::new());
        let t1 = t.clone();
        let other = thread::spawn(move || {
            let s = t1.claim();
            if let Some(s) = s {
                t1.slot(s).allocated(true, 8);
                t1.slot(s).reallocated(true, 8, 24);
            }
            s
        });
        let mine = t.claim().expect("a slot for the first scope");
        t.slot(mine).allocated(true, 16);
        let theirs = other.join().unwrap().expect("a slot for the second scope");
        assert_ne!(mine, theirs, "two scopes in one slot");
        assert_eq!(t.claim(), None, "both slots are held");
        assert_eq!(t.slot(mine).counts().bytes_allocated, 16);
        let c = t.slot(theirs).counts();
        assert_eq!((c.allocations, c.reallocs, c.bytes_allocated), (1, 1, 24));
        assert_eq!((c.current, c.peak), (24, 24));
    });
}

/// A scope closed while another thread, entered in it through a handle, frees a block the
/// scope's thread made in it; the closing thread then opens a new scope. Both threads count into
/// the first scope at once and no count is lost; the new scope never gets the first one's slot
/// while the handle holds it, and starts from zero (its counts exactly its own).
#[test]
fn a_scope_closed_while_another_thread_frees_in_it_counts_exactly() {
    loom::model(|| {
        let t = Arc::new(Table::<2>::new());
        // `Scope::open`: the scope's hold, and the guard entered on this thread.
        let first = t.claim().unwrap();
        t.slot(first).hold();
        // `Scope::handle`, sent to the other thread.
        t.slot(first).hold();
        let t1 = t.clone();
        let other = thread::spawn(move || {
            let s = t1.slot(first);
            // `enter_on_this_thread`, a free and an allocation there, the guard dropped.
            s.hold();
            s.freed(64);
            s.allocated(true, 32);
            s.release();
            // The handle reads the counts, then is dropped.
            let seen = s.counts();
            s.release();
            seen
        });
        // The block the other thread frees, made in the scope; then the scope is dropped (its
        // guard, then its hold), and a new scope opened.
        t.slot(first).allocated(true, 64);
        t.slot(first).release();
        t.slot(first).release();
        let second = t.claim().expect("a free slot for the new scope");
        t.slot(second).allocated(true, 8);
        let seen = other.join().unwrap();
        // The other thread's own counts, at least, were in the first scope when it read them.
        assert_eq!((seen.frees, seen.bytes_freed), (1, 64), "{seen:?}");
        assert!(
            seen.allocations >= 1 && seen.bytes_allocated >= 32,
            "{seen:?}"
        );
        assert_eq!(
            t.slot(second).counts(),
            Counts {
                allocations: 1,
                frees: 0,
                reallocs: 0,
                failures: 0,
                bytes_allocated: 8,
                bytes_freed: 0,
                current: 8,
                peak: 8,
            },
            "the new scope's counts are its own"
        );
        if second != first {
            // Nothing has reset the first slot: every count of both threads is there.
            let c = t.slot(first).counts();
            assert_eq!((c.allocations, c.bytes_allocated), (2, 96), "{c:?}");
            assert_eq!((c.frees, c.bytes_freed), (1, 64), "{c:?}");
            assert_eq!(c.current, 32, "{c:?}");
            // The bytes held went +64 -64 +32 in some order: the peak is 64 or 32.
            assert!(c.peak == 64 || c.peak == 32, "{c:?}");
        }
        t.slot(second).release();
        assert_eq!(t.claim(), Some(0), "every holder is gone");
    });
}
