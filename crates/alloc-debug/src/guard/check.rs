//! The checks of a block handed back: ownership, the freed pattern, the API id, the guards, the
//! size; what a pointer that is no live block of ours is.

use super::*;

impl<A: DomainAllocator> Guarded<A> {
    /// Remembers `data` as a live block of ours (see `claims`); false if there was no memory to
    /// remember it by.
    pub(super) fn claim(&self, data: *mut u8) -> bool {
        self.claims.made(data as usize)
    }

    /// Checks the block at `data`: ownership, freed pattern, API id, leading and trailing pads, and
    /// the size of a sized free. Returns the requested size and the block's prefix (the distance
    /// from its inner block's start to `data`), or what is wrong.
    ///
    /// `prefix` is the prefix the caller's family implies: `HEADER` for the `malloc` family, which
    /// also takes a block of the aligned family (its header records its alignment), the
    /// alignment's for `free_aligned`, which must match the block's. `plain` says the size may be
    /// compared with the inner block's (a block of the `malloc` family given to its own calls).
    ///
    /// # Safety
    /// If the inner allocator does not disown it, `data - HEADER` starts a readable header and, if
    /// the size in it is sane, the trailer after it is readable.
    #[inline(always)]
    pub(super) unsafe fn check(
        &self,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
        plain: bool,
    ) -> Result<(usize, usize), ViolationKind> {
        let raw = data.wrapping_sub(HEADER);
        let remembered = match self.claims.live(data) {
            // A live block of ours (remembered): its header is readable.
            Ownership::Owned => true,
            // Not a live block of ours: freed already, another allocator's, or no block at all.
            // SAFETY: `not_live` reads only memory known to be mapped.
            Ownership::NotOwned => return Err(unsafe { self.not_live(data) }),
            // Blocks are not remembered: where the inner allocator says none of its blocks starts
            // where ours would, this is no block of ours either.
            Ownership::Unknown => {
                // A `malloc`-family call may be given a block of the aligned family, whose header
                // (in the inner allocator's memory, so readable) says where its inner block starts.
                let start = if prefix == HEADER && self.inner.owns(raw) == Ownership::Owned {
                    // SAFETY: the inner allocator's memory is mapped.
                    split_size_word(unsafe { read_word(raw) })
                        .1
                        .unwrap_or(HEADER)
                } else {
                    prefix
                };
                if self.inner.starts_block(data.wrapping_sub(start)) == Ownership::NotOwned {
                    // SAFETY: as above.
                    return Err(unsafe { self.not_live(data) });
                }
                false
            }
        };
        // SAFETY: the caller's guarantee.
        unsafe {
            let (n, recorded) = split_size_word(read_word(raw));
            // The `malloc` family's calls take blocks of both families; `free_aligned` only its
            // own alignment's.
            let found = recorded.filter(|&r| prefix == HEADER || r == prefix);
            let plain = plain && found == Some(HEADER);
            // The common case in one compare: the API id and the lead pad intact.
            let intact = u64::from_ne_bytes({
                let mut w = [FORBIDDEN_BYTE; WORD];
                w[0] = self.api;
                w
            });
            if let Some(found) = found
                && data.sub(WORD).cast::<u64>().read_unaligned() == intact
                && self.size_is_sane(data, n, plain)
                && all_are(data.add(n), WORD, FORBIDDEN_BYTE)
            {
                return match given {
                    Some(given) if given != n => {
                        Err(ViolationKind::WrongSize { recorded: n, given })
                    }
                    _ => Ok((n, found)),
                };
            }
            let id = *data.sub(WORD);
            if id == DEAD_BYTE && all_are(raw, WORD, DEAD_BYTE) {
                return Err(ViolationKind::DoubleFree);
            }
            if id != self.api {
                // Not remembered, with neither an API id nor a lead pad: nothing says a debug
                // hook made it (a pointer of another allocator; or a header overwritten whole).
                if !remembered && !all_are(data.sub(WORD - 1), WORD - 1, FORBIDDEN_BYTE) {
                    return Err(self.not_live(data));
                }
                return Err(ViolationKind::ApiMismatch {
                    allocated: id,
                    verified: self.api,
                });
            }
            if !all_are(data.sub(WORD - 1), WORD - 1, FORBIDDEN_BYTE) {
                return Err(ViolationKind::BufferUnderflow);
            }
            // A size or an alignment that cannot be right means the header itself was
            // overwritten.
            let Some(found) = recorded else {
                return Err(ViolationKind::BufferUnderflow);
            };
            if !self.size_is_sane(data, n, plain) {
                return Err(ViolationKind::BufferUnderflow);
            }
            if !all_are(data.add(n), WORD, FORBIDDEN_BYTE) {
                return Err(ViolationKind::BufferOverflow);
            }
            // An intact block of the other family, or of another alignment, given to
            // `free_aligned`: freed with a layout it was not made with.
            if found != prefix && prefix != HEADER {
                return Err(ViolationKind::WrongSize {
                    recorded: n,
                    given: given.unwrap_or(0),
                });
            }
            if let Some(given) = given
                && given != n
            {
                return Err(ViolationKind::WrongSize { recorded: n, given });
            }
            Ok((n, found))
        }
    }

    /// What a pointer that is no live block of ours is, read from its header where that is
    /// mapped memory (the inner allocator's, or a page the OS says is mapped): a block freed
    /// already (the freed pattern), another API's block (an API id and an intact lead pad), or
    /// none of ours ([`ViolationKind::ForeignPointer`]: never allocated here, or a pointer inside
    /// a block).
    ///
    /// # Safety
    /// None beyond the pointer being any value: nothing unmapped is read.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn not_live(&self, data: *mut u8) -> ViolationKind {
        let raw = data.wrapping_sub(HEADER);
        let readable = (data as usize) >= HEADER
            && (self.inner.owns(raw) == Ownership::Owned || crate::os::mapped(raw, HEADER));
        if !readable {
            return ViolationKind::ForeignPointer;
        }
        // SAFETY: the header's 16 bytes are mapped (above).
        unsafe {
            let id = *data.sub(WORD);
            let lead = data.sub(WORD - 1);
            if id == DEAD_BYTE && all_are(lead, WORD - 1, DEAD_BYTE) {
                return ViolationKind::DoubleFree;
            }
            if id != self.api && id.is_ascii_graphic() && all_are(lead, WORD - 1, FORBIDDEN_BYTE) {
                return ViolationKind::ApiMismatch {
                    allocated: id,
                    verified: self.api,
                };
            }
        }
        ViolationKind::ForeignPointer
    }

    /// Whether `n` can be the size of the block at `data`: below `isize::MAX`, and, for a plain
    /// block (made by `malloc`, so `data - HEADER` is the inner block) within the inner block's
    /// usable size where the inner allocator knows it.
    ///
    /// # Safety
    /// For a plain block, `data - HEADER` is a live inner block.
    #[inline]
    pub(super) unsafe fn size_is_sane(&self, data: *mut u8, n: usize, plain: bool) -> bool {
        if n > isize::MAX as usize - HEADER - TRAILER - MAX_ALIGN_PREFIX {
            return false;
        }
        // Small sizes are read without asking the inner allocator (as CPython always does): the
        // trailer then lies within a page or so of the block. Larger ones must fit the inner
        // block, so a header overwritten with a huge size cannot send the check into unmapped
        // memory.
        if !plain || n <= SIZE_TRUSTED {
            return true;
        }
        // SAFETY: the caller's guarantee.
        let usable = unsafe {
            self.inner
                .usable_size(NonNull::new_unchecked(data.sub(HEADER)))
        };
        usable.is_none_or(|usable| n + HEADER + TRAILER <= usable)
    }

    /// Checks a block about to be released or resized; on a violation reports it and returns
    /// `None` (under [`Action::Record`]; the other actions do not return).
    ///
    /// # Safety
    /// `data` is a pointer the program passed to free/realloc of this allocator.
    #[inline]
    pub(super) unsafe fn verify(
        &self,
        op: &str,
        data: *mut u8,
        given: Option<usize>,
        prefix: usize,
    ) -> Option<(usize, usize)> {
        // A plain block (from `malloc`) has only the header before its data; an aligned one, a
        // prefix of its alignment.
        let plain = prefix == HEADER;
        // SAFETY: the caller's guarantee; `check` reads only what ownership allows.
        match unsafe { self.check(data, given, prefix, plain) } {
            Ok(found) => Some(found),
            // SAFETY: the caller's guarantee.
            Err(kind) => unsafe { self.violated(op, kind, data, given, prefix) },
        }
    }

    /// Whether `ptr` is not a live block of this allocator: it holds the freed pattern, its guards
    /// are broken, it is quarantined, or the inner allocator disowns it (CPython's
    /// `_PyObject_IsFreed`). Never reports, never aborts.
    ///
    /// It reads the block's header, so it must still be mapped: true for pointers this allocator
    /// made over a pool allocator, and for any pointer while it is quarantined; over the C library,
    /// enable the quarantine before asking about freed blocks.
    pub fn is_freed(&self, ptr: *const u8) -> bool {
        let data = ptr.cast_mut();
        {
            let q = self.quarantine.lock();
            if (0..q.len)
                .any(|i| q.slots[(q.head + i) % MAX_QUARANTINE].is_some_and(|e| e.data == data))
            {
                return true;
            }
        }
        // SAFETY: `check` reads nothing the inner allocator disowns; for other pointers the
        // documented requirement (still mapped) applies.
        unsafe { self.check(data, None, HEADER, false) }.is_err()
    }
}
