//! Violations and their reports (CPython's `_PyObject_DebugDumpAddress`), formatted without
//! allocating, then the configured action; the records kept under `Action::Record`.

use super::*;

/// What was violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// The bytes after the block were overwritten.
    BufferOverflow,
    /// The bytes before the block were overwritten.
    BufferUnderflow,
    /// The block was made through one API (domain) and freed or resized through another.
    ApiMismatch {
        /// The API id byte in the block's header.
        allocated: u8,
        /// The API id of the allocator that checked it.
        verified: u8,
    },
    /// The block was already freed.
    DoubleFree,
    /// The pointer is no live block of this allocator: it never made it (another allocator's
    /// block, a pointer inside a block), or it was freed where the freed pattern cannot be read.
    ForeignPointer,
    /// A freed block (in the quarantine) was written to.
    UseAfterFree,
    /// A sized free gave another size than the one the block was made with.
    WrongSize {
        /// The size recorded in the block's header.
        recorded: usize,
        /// The size the caller passed.
        given: usize,
    },
}

impl ViolationKind {
    /// CPython's words for it, as in its fatal error line.
    pub fn describe(&self) -> &'static str {
        match self {
            ViolationKind::BufferOverflow => "bad trailing pad byte (buffer overflow)",
            ViolationKind::BufferUnderflow => "bad leading pad byte (buffer underflow)",
            ViolationKind::ApiMismatch { .. } => "bad ID (API misuse)",
            ViolationKind::DoubleFree => "the block was already freed (double free)",
            ViolationKind::ForeignPointer => {
                "the pointer is not a live block of this allocator (never allocated by it, or freed)"
            }
            ViolationKind::UseAfterFree => "a freed block was written to (use after free)",
            ViolationKind::WrongSize { .. } => "sized free with a size the block was not made with",
        }
    }
}

/// One detected violation: the facts, and the report as text.
#[derive(Clone)]
pub struct Violation {
    /// What was violated.
    pub kind: ViolationKind,
    /// The block's address (the pointer the program holds).
    pub address: usize,
    /// The size originally requested, when the header could be trusted (0 otherwise).
    pub size: usize,
    /// The block's serial number (the Nth call to malloc/realloc of this allocator), when known.
    pub serial: u64,
    /// The API id of the allocator that found it.
    pub api: u8,
    pub(super) text: [u8; REPORT_BYTES],
    pub(super) text_len: usize,
    /// The damaged block, withheld from the inner allocator under [`Action::Record`] until
    /// [`Guarded::release_withheld`] (or the drop of the allocator).
    pub(super) withheld: Option<Quarantined>,
}

// SAFETY: a violation's only pointer is the withheld block handle, used only by the allocator that
// recorded it, under its lock; a copy handed to the program is plain data.
unsafe impl Send for Violation {}
// SAFETY: as above; a shared violation is only read.
unsafe impl Sync for Violation {}

impl Violation {
    /// The full report, as written to standard error under [`Action::Abort`].
    pub fn report(&self) -> &str {
        core::str::from_utf8(&self.text[..self.text_len]).unwrap_or("<report not UTF-8>")
    }
}

impl fmt::Debug for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Violation")
            .field("kind", &self.kind)
            .field("address", &format_args!("{:#x}", self.address))
            .field("size", &self.size)
            .field("serial", &self.serial)
            .field("api", &(self.api as char))
            .finish()
    }
}

/// A fixed buffer the report is formatted into: reporting must not allocate (the allocator may be
/// the global one, or broken). Text past the end is cut.
pub(super) struct Text {
    pub(super) buf: [u8; REPORT_BYTES],
    pub(super) len: usize,
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = REPORT_BYTES - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

// SAFETY: the only pointer in a record is a withheld block, owned by the record (nothing else
// refers to it); whichever thread holds the records' lock may release it.
unsafe impl Send for Records {}

pub(super) struct Records {
    pub(super) ring: [Option<Violation>; RECORDED_VIOLATIONS],
    pub(super) next: usize,
    pub(super) total: u64,
    /// Withheld blocks released because their record left the ring.
    pub(super) released: u64,
}

impl<A: DomainAllocator> Guarded<A> {
    /// Formats the report of `kind` at `data`, reading the block only where it is safe.
    ///
    /// # Safety
    /// As for [`check`](Self::check), for the parts `kind` says are intact.
    pub(super) unsafe fn report(
        &self,
        op: &str,
        kind: ViolationKind,
        data: *mut u8,
        prefix: usize,
        inner: Option<Layout>,
    ) -> Violation {
        let plain = prefix == HEADER;
        let mut t = Text {
            buf: [0; REPORT_BYTES],
            len: 0,
        };
        let api = self.api as char;
        let mut size = 0;
        let mut serial = 0;
        let _ = match kind {
            ViolationKind::ForeignPointer => writeln!(
                t,
                "Debug memory block at address p={data:p}: not a live block of this allocator \
                 (API '{api}'): never allocated by it, freed already, or not where a block starts"
            ),
            ViolationKind::DoubleFree => writeln!(
                t,
                "Debug memory block at address p={data:p}: API '{api}'\n    \
                 the block was already freed: its header holds the freed pattern \
                 ({DEAD_BYTE:#04x})"
            ),
            ViolationKind::UseAfterFree => Ok(()), // written by the quarantine
            _ => {
                // SAFETY: the header is readable (the caller); the trailer only with a sane size.
                unsafe { self.dump(&mut t, data, plain, &mut size, &mut serial) }
            }
        };
        if !matches!(kind, ViolationKind::ForeignPointer) {
            let _ = write!(t, "    ");
            // The inner block starts the prefix before the data; an aligned one is asked about
            // with its layout.
            let raw = data.wrapping_sub(prefix);
            let found = match inner {
                Some(layout) => self.inner.write_origin_aligned(raw, layout, &mut t),
                None => self.inner.write_origin(raw, &mut t),
            };
            if found {
                let _ = writeln!(t);
            } else {
                let _ = writeln!(
                    t,
                    "Stack a tracing allocator under this one to see where the block was allocated."
                );
            }
        }
        let _ = writeln!(t);
        let _ = match kind {
            ViolationKind::ApiMismatch {
                allocated,
                verified,
            } => writeln!(
                t,
                "Fatal error in debug {op}: bad ID: Allocated using API '{}', verified using API '{}'",
                allocated as char, verified as char
            ),
            ViolationKind::WrongSize { recorded, given } => writeln!(
                t,
                "Fatal error in debug {op}: {} ({given} bytes given, {recorded} bytes requested)",
                kind.describe()
            ),
            _ => writeln!(t, "Fatal error in debug {op}: {}", kind.describe()),
        };
        Violation {
            kind,
            address: data as usize,
            size,
            serial,
            api: self.api,
            text: t.buf,
            text_len: t.len,
            withheld: None,
        }
    }

    /// The block dump of CPython's `_PyObject_DebugDumpAddress`, in its words.
    ///
    /// # Safety
    /// The header at `data - HEADER` is readable; the trailer is read only if the size is sane.
    pub(super) unsafe fn dump(
        &self,
        t: &mut Text,
        data: *mut u8,
        plain: bool,
        size: &mut usize,
        serial: &mut u64,
    ) -> fmt::Result {
        // SAFETY: the caller's guarantee for the header; the trailer and data are read only when
        // the size fits the inner block.
        unsafe {
            let raw = data.sub(HEADER);
            let (n, _) = split_size_word(read_word(raw));
            let id = *data.sub(WORD) as char;
            writeln!(t, "Debug memory block at address p={data:p}: API '{id}'")?;
            writeln!(t, "    {n} bytes originally requested")?;
            let lead = data.sub(WORD - 1);
            if all_are(lead, WORD - 1, FORBIDDEN_BYTE) {
                writeln!(
                    t,
                    "    The {} pad bytes at p-{} are FORBIDDENBYTE, as expected.",
                    WORD - 1,
                    WORD - 1
                )?;
            } else {
                writeln!(
                    t,
                    "    The {} pad bytes at p-{} are not all FORBIDDENBYTE ({FORBIDDEN_BYTE:#04x}):",
                    WORD - 1,
                    WORD - 1
                )?;
                for i in (1..WORD).rev() {
                    let b = *data.sub(i);
                    let ouch = if b == FORBIDDEN_BYTE { "" } else { " *** OUCH" };
                    writeln!(t, "        at p-{i}: {b:#04x}{ouch}")?;
                }
            }
            if !self.size_is_sane(data, n, plain) {
                writeln!(
                    t,
                    "    The size in the header cannot be right: the header was overwritten."
                )?;
                return Ok(());
            }
            *size = n;
            let tail = data.add(n);
            if all_are(tail, WORD, FORBIDDEN_BYTE) {
                writeln!(
                    t,
                    "    The {WORD} pad bytes at tail={tail:p} are FORBIDDENBYTE, as expected."
                )?;
            } else {
                writeln!(
                    t,
                    "    The {WORD} pad bytes at tail={tail:p} are not all FORBIDDENBYTE \
                     ({FORBIDDEN_BYTE:#04x}):"
                )?;
                for i in 0..WORD {
                    let b = *tail.add(i);
                    let ouch = if b == FORBIDDEN_BYTE { "" } else { " *** OUCH" };
                    writeln!(t, "        at tail+{i}: {b:#04x}{ouch}")?;
                }
            }
            // The serial follows the pad; an overflow may have reached it too, and CPython prints
            // it anyway, so do we.
            *serial = read_word(tail.add(WORD)) as u64;
            writeln!(
                t,
                "    The block was made by call #{} to debug malloc/realloc.",
                *serial
            )?;
            write!(t, "    Data at p:")?;
            let shown = n.min(8);
            for i in 0..shown {
                write!(t, " {:02x}", *data.add(i))?;
            }
            if n > 16 {
                write!(t, " ...")?;
            }
            for i in shown.max(n.saturating_sub(8))..n {
                write!(t, " {:02x}", *data.add(i))?;
            }
            writeln!(t)
        }
    }

    /// Reports `v` and carries out the action.
    pub(super) fn act(&self, v: Violation) {
        match self.action {
            Action::Abort => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(v.report().as_bytes());
                let _ = err.flush();
                std::process::abort();
            }
            Action::Panic => panic!("{}", v.report()),
            Action::Record => {
                let mut r = self.records.lock();
                let i = r.next;
                // A record pushed out of the ring can no longer be inspected: its withheld block
                // goes back to the inner allocator now.
                if let Some(b) = r.ring[i].as_mut().and_then(|old| old.withheld.take()) {
                    r.released += 1;
                    self.claims.given_up(b.data as usize);
                    // SAFETY: a withheld block is still allocated in the inner allocator and
                    // referred to by nothing else; it left its record above.
                    unsafe { self.release(b) };
                }
                r.ring[i] = Some(v);
                r.next = (i + 1) % RECORDED_VIOLATIONS;
                r.total += 1;
            }
        }
    }

    /// Reports the violation `kind` that [`verify`](Self::verify) found, withholds the block where
    /// it can, and acts; `None` under [`Action::Record`] (the other actions do not return).
    ///
    /// # Safety
    /// As for [`verify`](Self::verify).
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn violated(
        &self,
        op: &str,
        kind: ViolationKind,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
    ) -> Option<(usize, usize)> {
        // Where the header's id and lead pad were found intact, its size word says which family
        // the block is of (a `malloc`-family call takes both).
        let header_read = matches!(
            kind,
            ViolationKind::BufferOverflow
                | ViolationKind::BufferUnderflow
                | ViolationKind::WrongSize { .. }
        );
        let mut prefix = prefix;
        if header_read && prefix == HEADER {
            // SAFETY: the header was read by `check` for these kinds.
            let (_, recorded) = split_size_word(unsafe { read_word(data.sub(HEADER)) });
            prefix = recorded.unwrap_or(HEADER);
        }
        let plain = prefix == HEADER;
        // An aligned block's inner block, from the size its free gave, or its header's.
        let inner = if plain {
            None
        } else {
            given
                .or_else(|| {
                    // SAFETY: as above.
                    let (n, _) = split_size_word(unsafe { read_word(data.sub(HEADER)) });
                    header_read.then_some(n)
                })
                .and_then(|n| aligned_inner(n, prefix))
        };
        // SAFETY: the caller's guarantee; `report` reads only the parts `kind` says are intact.
        let mut v = unsafe { self.report(op, kind, data, prefix, inner) };
        // A damaged block of ours with a known size is withheld (not leaked silently):
        // the program can release it after inspecting the report. (After a wrong size
        // the block is intact and still the program's, to free with the right one.) A
        // plain block's size is the header's, where the report could read it; an aligned
        // one's, its free's.
        let size = if plain {
            v.size
        } else {
            given.unwrap_or(v.size)
        };
        if size > 0
            && (plain || inner.is_some())
            && matches!(
                kind,
                ViolationKind::BufferOverflow | ViolationKind::BufferUnderflow
            )
        {
            v.withheld = Some(Quarantined {
                raw: data.wrapping_sub(prefix),
                data,
                total: prefix + size + TRAILER,
                aligned: inner,
            });
        }
        self.act(v);
        None
    }

    /// Gives the damaged blocks withheld under [`Action::Record`] back to the inner allocator and
    /// returns how many. Do it once the reports have been read: a block whose damage reached past
    /// its guard bytes may still upset an inner allocator that keeps its metadata next to blocks
    /// (the C library); the pool keeps its metadata apart. The drop of the allocator does it too.
    pub fn release_withheld(&self) -> usize {
        let blocks: Vec<Quarantined> = {
            let mut r = self.records.lock();
            r.ring
                .iter_mut()
                .flatten()
                .filter_map(|v| v.withheld.take())
                .collect()
        };
        for &b in &blocks {
            self.claims.given_up(b.data as usize);
            // SAFETY: a withheld block is still allocated in the inner allocator and referred to
            // by nothing else; it leaves the record above, so it is released once.
            unsafe { self.release(b) };
        }
        blocks.len()
    }
}
