//! Serial numbers: unique per decorator, increasing along each thread, taken in batches.

use super::*;

/// Serial numbers are taken from a decorator's counter this many at a time, by each thread.
pub const SERIAL_BATCH: u64 = 64;

/// A thread's batch of serial numbers: `next..end` of the decorator numbered `owner`.
#[derive(Clone, Copy)]
pub(super) struct Serials {
    pub(super) owner: u64,
    pub(super) next: u64,
    pub(super) end: u64,
}

std::thread_local! {
    // `const`, `Copy`, no destructor: reading it never allocates, even during thread exit.
    static SERIALS: Cell<Serials> = const { Cell::new(Serials { owner: 0, next: 0, end: 0 }) };
}

impl<A: DomainAllocator> Guarded<A> {
    /// The next serial number: unique to this decorator, increasing along each thread, and, in a
    /// program with one allocating thread, exactly the count of calls to malloc and realloc
    /// (CPython's "call #N"). Each thread takes [`SERIAL_BATCH`] numbers at a time from the
    /// shared counter (one atomic read-modify-write per batch, not per block), so with several
    /// threads the numbers interleave by batch, and a thread that alternates between decorators
    /// skips the rest of its batch at each change.
    #[inline]
    pub(super) fn next_serial(&self) -> u64 {
        let id = self.id.get();
        SERIALS.with(|cell| {
            let mut b = cell.get();
            if b.owner != id || b.next == b.end {
                let start = self.serial.fetch_add(SERIAL_BATCH, Ordering::Relaxed) + 1;
                b = Serials {
                    owner: id,
                    next: start,
                    end: start + SERIAL_BATCH,
                };
            }
            let serial = b.next;
            b.next += 1;
            cell.set(b);
            serial
        })
    }
}
