//! The guarded slots of one [`GuardPages`](super::GuardPages): a single reservation, mapped at the
//! first sampled allocation and kept until the decorator is dropped:
//!
//! ```text
//!  | header + records (rw) | guard | slot 0 (data pages) | guard | slot 1 | guard | ... | slot n-1 | guard |
//!                          ^ area                                                                   area + area_len ^
//! ```
//!
//! Every slot has an inaccessible page on each side, so the same reservation serves blocks placed
//! against a slot's end (overflow mode) and against its start (underflow mode). A slot's data
//! pages are readable and writable only while it holds a live block. Each slot has a [`Record`]
//! in the header pages: its state, its block, and where the block was allocated and freed; the
//! fault handler reads them (racily, through atomics: a report made while a slot changes may
//! mix the two), so it never takes the decorator's lock.
//!
//! The reservations are listed in a fixed process-wide table ([`REGISTERED`] entries), which is
//! how the fault handler finds the slot an address belongs to.

use core::fmt::{self, Write as _};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::guard_slots::{FREE, FREEING, GUARD_FRAMES, QUARANTINED, Record, UNUSED};
use crate::os::faults::{self, Access};
use crate::os::pages;

const MAGIC: usize = 0x4755_4152_4450_4753; // "GUARDPGS"

/// The first bytes of a reservation: its geometry. Written once, before the reservation is
/// published; read-only afterwards.
#[repr(C)]
pub(super) struct Header {
    magic: usize,
    /// The whole reservation, for its release.
    base: usize,
    total: usize,
    pub(super) page: usize,
    pub(super) slots: usize,
    /// Bytes of a slot's data pages.
    pub(super) data: usize,
    /// Data pages and the guard page after them.
    pub(super) stride: usize,
    /// The first guard page (before slot 0), and the length of the slot area from there.
    pub(super) area: usize,
    pub(super) area_len: usize,
    pub(super) underflow: bool,
}

/// Where an address of a slot area is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Place {
    /// In slot `slot`'s data pages.
    Data { slot: usize },
    /// In the guard page before slot `before` (`before == slots`: the last guard page).
    Guard { before: usize },
}

/// A mapped reservation.
#[derive(Clone, Copy)]
pub(super) struct Slots(NonNull<Header>);

// SAFETY: the header is read-only once published and the records are atomics.
unsafe impl Send for Slots {}

impl Slots {
    /// Maps a reservation of `slots` slots of `slot_pages` data pages each, every slot closed and
    /// unused (on no list yet); `None` if the OS refuses.
    pub(super) fn map(slots: usize, slot_pages: usize, underflow: bool) -> Option<Slots> {
        let page = pages::page_size();
        let meta = size_of::<Header>().checked_add(slots.checked_mul(size_of::<Record>())?)?;
        let meta_len = meta.checked_next_multiple_of(page)?;
        let data = slot_pages.checked_mul(page)?;
        let stride = data.checked_add(page)?;
        let area_len = slots.checked_mul(stride)?.checked_add(page)?;
        let total = meta_len.checked_add(area_len)?;
        let base = pages::reserve(total)?;
        // SAFETY: the first `meta_len` bytes of the reservation just made.
        if !unsafe { pages::open(base.as_ptr(), meta_len) } {
            // SAFETY: the reservation just made, not used.
            unsafe { pages::release(base.as_ptr(), total) };
            return None;
        }
        let header = base.cast::<Header>();
        // SAFETY: the open header pages hold the header and the records (`meta` bytes); the
        // records follow the header, aligned (the header's size is a multiple of a word) and
        // zeroed by the OS, which is each record's UNUSED state.
        unsafe {
            header.as_ptr().write(Header {
                magic: MAGIC,
                base: base.as_ptr() as usize,
                total,
                page,
                slots,
                data,
                stride,
                area: base.as_ptr() as usize + meta_len,
                area_len,
                underflow,
            });
        }
        Some(Slots(header))
    }

    /// Gives the reservation back.
    ///
    /// # Safety
    /// Nothing in the reservation is used again (it was unregistered first).
    pub(super) unsafe fn unmap(self) {
        let (base, total) = (self.header().base, self.header().total);
        // SAFETY: the caller's guarantee; the reservation's own base and length.
        unsafe { pages::release(base as *mut u8, total) };
    }

    /// The reservation whose header is at `h`.
    pub(super) fn from_header(h: NonNull<Header>) -> Slots {
        Slots(h)
    }

    /// Where the header is.
    pub(super) fn header_ptr(&self) -> *mut Header {
        self.0.as_ptr()
    }

    pub(super) fn header(&self) -> &Header {
        // SAFETY: the header lives as long as the reservation, which outlives every `Slots` copy
        // in use (it is unmapped only when the decorator is dropped).
        unsafe { self.0.as_ref() }
    }

    /// The slots' records, slot 0 first.
    pub(super) fn records(&self) -> &[Record] {
        // SAFETY: the header pages hold the `slots` records right after the header (see `map`),
        // and live as long as the header.
        unsafe {
            core::slice::from_raw_parts(
                self.0.as_ptr().add(1).cast::<Record>(),
                self.header().slots,
            )
        }
    }

    pub(super) fn record(&self, slot: usize) -> &Record {
        &self.records()[slot]
    }

    /// The first byte of slot `slot`'s data pages.
    pub(super) fn start(&self, slot: usize) -> usize {
        let h = self.header();
        h.area + h.page + slot * h.stride
    }

    /// Where `addr` is, if it lies in the slot area.
    pub(super) fn place(&self, addr: usize) -> Option<Place> {
        let h = self.header();
        let off = addr.wrapping_sub(h.area);
        if off >= h.area_len {
            return None;
        }
        if off < h.page {
            return Some(Place::Guard { before: 0 });
        }
        let (slot, within) = ((off - h.page) / h.stride, (off - h.page) % h.stride);
        Some(if within < h.data {
            Place::Data { slot }
        } else {
            Place::Guard { before: slot + 1 }
        })
    }

    /// The slot whose live block starts at `addr`.
    pub(super) fn live_block(&self, addr: usize) -> Option<usize> {
        match self.place(addr)? {
            Place::Data { slot } => self.record(slot).holds(addr).then_some(slot),
            Place::Guard { .. } => None,
        }
    }
}

/// The most reservations the fault handler knows at once; a decorator mapped while all are in use
/// still guards its blocks, but its faults are not reported (the process still dies by them).
pub const REGISTERED: usize = 64;
static REGISTRY: [AtomicPtr<Header>; REGISTERED] =
    [const { AtomicPtr::new(ptr::null_mut()) }; REGISTERED];

/// Lists `s` for the fault handler; whether there was room.
pub(super) fn register(s: Slots) -> bool {
    REGISTRY.iter().any(|e| {
        e.compare_exchange(
            ptr::null_mut(),
            s.0.as_ptr(),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
    })
}

/// Takes `s` off the fault handler's list.
pub(super) fn unregister(s: Slots) {
    for e in &REGISTRY {
        let _ = e.compare_exchange(
            s.0.as_ptr(),
            ptr::null_mut(),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// The most bytes a report takes (it is cut there).
const REPORT_BYTES: usize = 1536;

/// A report being written, on the stack: formatting into it neither allocates nor locks.
pub(super) struct Report {
    buf: [u8; REPORT_BYTES],
    len: usize,
}

impl fmt::Write for Report {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(REPORT_BYTES - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl Report {
    pub(super) fn new() -> Report {
        Report {
            buf: [0; REPORT_BYTES],
            len: 0,
        }
    }

    pub(super) fn text(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// A line of return addresses (`label: 0x.. 0x..`), or that none was captured.
    fn frames(&mut self, label: &str, frames: &[AtomicUsize; GUARD_FRAMES]) {
        let _ = write!(self, "    {label} at:");
        let mut any = false;
        for f in frames {
            let ip = f.load(Ordering::Relaxed);
            if ip != 0 {
                let _ = write!(self, " {ip:#x}");
                any = true;
            }
        }
        if !any {
            let _ = write!(self, " (no frame captured)");
        }
        let _ = writeln!(self);
    }

    /// The block's facts: address and size, the allocation's frames and, once freed, the free's.
    fn block(&mut self, r: &Record, freed: bool) {
        let _ = writeln!(
            self,
            "    block: {:#x}, {} bytes{}",
            r.addr.load(Ordering::Relaxed),
            r.size.load(Ordering::Relaxed),
            if freed { " (freed)" } else { "" }
        );
        self.frames("allocated", &r.allocated);
        if freed {
            self.frames("freed", &r.freed);
        }
    }
}

fn is_freed(state: u32) -> bool {
    matches!(state, FREEING | QUARANTINED | FREE)
}

/// What the fault at `addr` in `s` was, written into `out`.
pub(super) fn describe(s: Slots, addr: usize, access: Access, out: &mut Report) {
    let what = match access {
        Access::Read => "a read",
        Access::Write => "a write",
        Access::Unknown => "an access",
    };
    let _ = write!(out, "domalloc: guard pages: ");
    let h = s.header();
    match s.place(addr) {
        Some(Place::Data { slot }) => {
            let r = s.record(slot);
            let state = r.state();
            if is_freed(state) {
                let block = r.addr.load(Ordering::Relaxed);
                let off = addr as isize - block as isize;
                let _ = writeln!(
                    out,
                    "use after free: {what} at {addr:#x}, offset {off} in a freed block"
                );
                out.block(r, true);
            } else {
                let _ = writeln!(
                    out,
                    "{what} at {addr:#x}, in guarded slot {slot}, which holds no block"
                );
            }
        }
        Some(Place::Guard { before }) => {
            // The nearest block that has been in a neighbouring slot: the one whose end is just
            // below the guard page, or the one whose start is just above it.
            let below = before.checked_sub(1).map(|k| {
                let r = s.record(k);
                let end = r.addr.load(Ordering::Relaxed) + r.size.load(Ordering::Relaxed);
                (k, addr.saturating_sub(end))
            });
            let above = (before < h.slots).then(|| {
                let r = s.record(before);
                (before, r.addr.load(Ordering::Relaxed).saturating_sub(addr))
            });
            let used =
                |c: &Option<(usize, usize)>| c.filter(|&(k, _)| s.record(k).state() != UNUSED);
            let chosen = match (used(&below), used(&above)) {
                (Some(b), Some(a)) => Some(if b.1 <= a.1 { (b, true) } else { (a, false) }),
                (Some(b), None) => Some((b, true)),
                (None, Some(a)) => Some((a, false)),
                (None, None) => None,
            };
            match chosen {
                Some(((k, distance), overflow)) => {
                    let r = s.record(k);
                    let block = r.addr.load(Ordering::Relaxed);
                    let off = addr as isize - block as isize;
                    let (kind, side) = if overflow {
                        ("buffer overflow", "past its end")
                    } else {
                        ("buffer underflow", "before its start")
                    };
                    // An overflow's first byte past the end is 1 byte past it (its distance is 0).
                    let bytes = if overflow { distance + 1 } else { distance };
                    let _ = writeln!(
                        out,
                        "{kind}: {what} at {addr:#x}, offset {off}, {bytes} byte(s) {side}"
                    );
                    out.block(r, is_freed(r.state()));
                }
                None => {
                    let _ = writeln!(out, "{what} at {addr:#x}, in a guard page next to no block");
                }
            }
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "    (a page of domalloc's GuardPages; the process is stopped by the fault)"
    );
}

/// The fault handler's question: whether `addr` lies in a guarded slot area; if so a report is
/// written to standard error. Async-signal-safe: reads the registry and the records, formats on
/// the stack, writes with one system call.
pub(crate) fn report_fault(addr: usize, access: Access) -> bool {
    for e in &REGISTRY {
        let h = e.load(Ordering::Acquire);
        let Some(h) = NonNull::new(h) else { continue };
        let s = Slots(h);
        if s.header().magic != MAGIC || s.place(addr).is_none() {
            continue;
        }
        let mut out = Report::new();
        describe(s, addr, access, &mut out);
        faults::write_stderr(out.text());
        return true;
    }
    false
}

/// Reports a pointer in the slot area that `op` (free, realloc, usable_size) was given and that
/// is no live block (freed already, inside a block, a guard page), then aborts. Allocates
/// nothing.
pub(super) fn bad_pointer(s: Slots, op: &str, addr: usize) -> ! {
    let mut out = Report::new();
    match s.place(addr) {
        Some(Place::Data { slot }) => {
            let r = s.record(slot);
            let state = r.state();
            let block = r.addr.load(Ordering::Relaxed);
            if block == addr && is_freed(state) {
                let _ = writeln!(
                    out,
                    "domalloc: guard pages: {op}() of {addr:#x}: the block was already freed (double free)"
                );
                out.block(r, true);
            } else if state == UNUSED {
                let _ = writeln!(
                    out,
                    "domalloc: guard pages: {op}() of {addr:#x}: no block was ever made in its slot"
                );
            } else {
                let _ = writeln!(
                    out,
                    "domalloc: guard pages: {op}() of {addr:#x}: not the start of a live block (offset {} in the block below)",
                    addr as isize - block as isize
                );
                out.block(r, is_freed(state));
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "domalloc: guard pages: {op}() of {addr:#x}: a guard page, no block"
            );
        }
    }
    let _ = writeln!(out, "    aborting");
    faults::write_stderr(out.text());
    std::process::abort()
}

/// Writes where the block of slot `slot` was allocated, for `write_origin`.
pub(super) fn write_origin(s: Slots, slot: usize, out: &mut dyn fmt::Write) -> bool {
    let r = s.record(slot);
    let _ = write!(out, "guarded block allocated at");
    for f in &r.allocated {
        let ip = f.load(Ordering::Relaxed);
        if ip != 0 {
            let _ = write!(out, " {ip:#x}");
        }
    }
    true
}
