//! The quarantine: freed blocks kept filled with 0xDD, checked when they leave; burying a block.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Quarantined {
    pub(super) raw: *mut u8,
    pub(super) data: *mut u8,
    /// Bytes filled with `DEAD_BYTE`, from `raw`.
    pub(super) total: usize,
    /// The inner layout for aligned blocks (`None`: a plain block of `total` bytes).
    pub(super) aligned: Option<Layout>,
}

pub(super) struct Quarantine {
    pub(super) slots: [Option<Quarantined>; MAX_QUARANTINE],
    pub(super) head: usize,
    pub(super) len: usize,
}

// SAFETY: the pointers are blocks owned by the quarantine (freed by the program, not yet given to
// the inner allocator); whichever thread holds the lock may release them.
unsafe impl Send for Quarantine {}

impl<A: DomainAllocator> Guarded<A> {
    /// [`bury`](Self::bury) for a block `check` found: `n` bytes at `data`, `prefix` bytes after
    /// its inner block's start (`HEADER` for the `malloc` family).
    ///
    /// # Safety
    /// As for `bury`: a checked live block of ours.
    #[inline]
    pub(super) unsafe fn bury_found(&self, data: *mut u8, n: usize, prefix: usize) {
        let inner = if prefix == HEADER {
            None
        } else {
            aligned_inner(n, prefix)
        };
        // SAFETY: the caller's guarantee.
        unsafe { self.bury(data.sub(prefix), data, prefix + n + TRAILER, inner) };
    }

    /// Fills a checked block with 0xDD and releases it, through the quarantine if there is one.
    ///
    /// # Safety
    /// `raw..raw + total` is a checked live block of ours starting at `raw`, with `data` its data
    /// pointer; `aligned` is its inner layout if it came from `malloc_aligned`.
    #[inline]
    pub(super) unsafe fn bury(
        &self,
        raw: *mut u8,
        data: *mut u8,
        total: usize,
        aligned: Option<Layout>,
    ) {
        self.claims.given_up(data as usize);
        // SAFETY: the caller's guarantee.
        unsafe { raw.write_bytes(DEAD_BYTE, total) };
        let entry = Quarantined {
            raw,
            data,
            total,
            aligned,
        };
        if self.quarantine_capacity == 0 {
            // SAFETY: the caller's guarantee: a live block of the inner allocator.
            unsafe { self.release(entry) };
            return;
        }
        // SAFETY: as above.
        unsafe { self.quarantine(entry) }
    }

    /// Puts a freed, filled block in the quarantine, and releases the one it evicts.
    ///
    /// # Safety
    /// As for [`bury`](Self::bury), with `entry` filled.
    #[inline(never)]
    pub(super) unsafe fn quarantine(&self, entry: Quarantined) {
        let evicted = {
            let mut q = self.quarantine.lock();
            let evicted = if q.len == self.quarantine_capacity {
                let head = q.head;
                let e = q.slots[head].take();
                q.head = (head + 1) % MAX_QUARANTINE;
                q.len -= 1;
                e
            } else {
                None
            };
            let tail = (q.head + q.len) % MAX_QUARANTINE;
            q.slots[tail] = Some(entry);
            q.len += 1;
            evicted
        };
        if let Some(e) = evicted {
            // SAFETY: the evicted block left the quarantine, which owned it.
            unsafe { self.leave_quarantine(e) };
        }
    }

    /// Checks that a quarantined block still holds only 0xDD, reports it if not, and releases it.
    ///
    /// # Safety
    /// `e` was in the quarantine and has left it.
    pub(super) unsafe fn leave_quarantine(&self, e: Quarantined) {
        // SAFETY: the quarantine kept the block allocated, so it is readable.
        let bytes = unsafe { core::slice::from_raw_parts(e.raw, e.total) };
        if let Some(off) = bytes.iter().position(|&b| b != DEAD_BYTE) {
            let mut t = Text {
                buf: [0; REPORT_BYTES],
                len: 0,
            };
            let data_off = off as isize - HEADER as isize;
            let _ = writeln!(
                t,
                "Debug memory block at address p={:p}: API '{}'\n    \
                 the block was written after it was freed (it should hold only {DEAD_BYTE:#04x}):",
                e.data, self.api as char
            );
            let end = bytes.len().min(off + 8);
            for (i, &b) in bytes[off..end].iter().enumerate() {
                let ouch = if b == DEAD_BYTE { "" } else { " *** OUCH" };
                let _ = writeln!(t, "        at p{:+}: {b:#04x}{ouch}", data_off + i as isize);
            }
            let _ = writeln!(
                t,
                "\nFatal error in debug free: {}",
                ViolationKind::UseAfterFree.describe()
            );
            self.act(Violation {
                kind: ViolationKind::UseAfterFree,
                address: e.data as usize,
                size: 0,
                serial: 0,
                api: self.api,
                text: t.buf,
                text_len: t.len,
                withheld: None,
            });
        }
        // SAFETY: the block is still allocated in the inner allocator, and leaves us here.
        unsafe { self.release(e) };
    }

    /// # Safety
    /// `e` describes a live block of the inner allocator that nothing refers to any more.
    #[inline]
    pub(super) unsafe fn release(&self, e: Quarantined) {
        // SAFETY: the caller's guarantee; the entry records which family made the block.
        unsafe {
            let raw = NonNull::new_unchecked(e.raw);
            match e.aligned {
                Some(layout) => self.inner.free_aligned(raw, layout),
                None => self.inner.free_sized(raw, e.total),
            }
        }
    }

    /// Gives every quarantined block back to the inner allocator (checking each first).
    pub fn flush_quarantine(&self) {
        loop {
            let e = {
                let mut q = self.quarantine.lock();
                if q.len == 0 {
                    return;
                }
                let head = q.head;
                q.head = (head + 1) % MAX_QUARANTINE;
                q.len -= 1;
                q.slots[head].take()
            };
            if let Some(e) = e {
                // SAFETY: the block left the quarantine, which owned it.
                unsafe { self.leave_quarantine(e) };
            }
        }
    }
}
