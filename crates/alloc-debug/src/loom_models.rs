//! loom models of the crate's lock-free protocols (built and run only with `--cfg loom`; `cargo
//! xtask loom` runs them with loom's default bounds, the default test run a bounded set, see
//! `benches/tests/loom.rs`). Each runs the crate's own code on loom's atomics.

use loom::sync::Arc;
use loom::thread;

use crate::addresses::Addresses;
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
