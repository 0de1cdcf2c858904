//! The block layout: the header's size word, big-endian words, guard runs, and the geometry of
//! aligned blocks; `dress` writes a block's header, fill and trailer.

use super::*;

/// The header's size word holds the requested size below this bit and, above it, the base-2
/// logarithm of the alignment of a block of the aligned family (0 for `malloc`'s blocks, whose
/// header is CPython's): a free that is not given the layout (the C library's `free` of a
/// `posix_memalign` block) finds the inner block by it. Larger sizes are refused.
pub(super) const SHIFT_AT: u32 = 56;
pub(super) const SIZE_MASK: usize = (1 << SHIFT_AT) - 1;

/// The size and the prefix (the distance from the inner block's start to the data) a size word
/// records; `None` for an alignment no block of ours has (a damaged header).
pub(super) fn split_size_word(word: usize) -> (usize, Option<usize>) {
    let n = word & SIZE_MASK;
    let prefix = match (word >> SHIFT_AT) as u32 {
        0 => Some(HEADER),
        s if (MIN_ALIGN.trailing_zeros() + 1..=MAX_ALIGN_PREFIX.trailing_zeros()).contains(&s) => {
            Some(aligned_prefix(1 << s))
        }
        _ => None,
    };
    (n, prefix)
}

/// Big-endian, as CPython writes the size and serial.
///
/// # Safety
/// `at` is valid for `WORD` byte writes.
#[inline]
pub(super) unsafe fn write_word(at: *mut u8, value: u64) {
    let bytes = (value as usize).to_be_bytes();
    // SAFETY: the caller's guarantee.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), at, WORD) };
}

/// # Safety
/// `at` is valid for `WORD` byte reads.
#[inline]
pub(super) unsafe fn read_word(at: *const u8) -> usize {
    let mut bytes = [0u8; WORD];
    // SAFETY: the caller's guarantee.
    unsafe { ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), WORD) };
    usize::from_be_bytes(bytes)
}

/// # Safety
/// `[at, at + len)` is readable; for `len == 7` (the lead guard) so is the byte before `at`.
#[inline]
pub(super) unsafe fn all_are(at: *const u8, len: usize, byte: u8) -> bool {
    let pattern = u64::from_ne_bytes([byte; 8]);
    // The guards checked on every free are 7 and 8 bytes long: one unaligned word each.
    if len == WORD {
        // SAFETY: the caller's guarantee: `len` readable bytes at `at`.
        return unsafe { at.cast::<u64>().read_unaligned() } == pattern;
    }
    if len == WORD - 1 {
        // The lead guard: the byte before it is the API id, in the same header, so the word that
        // ends with the guard is readable; the id is compared as equal to itself.
        // SAFETY: the caller's guarantee, and the header byte before `at` (see above).
        let w = unsafe { at.sub(1).cast::<[u8; 8]>().read_unaligned() };
        let mut want = [byte; 8];
        want[0] = w[0];
        return w == want;
    }
    // SAFETY: the caller's guarantee.
    let bytes = unsafe { core::slice::from_raw_parts(at, len) };
    let mut chunks = bytes.chunks_exact(8);
    chunks.all(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])) == pattern)
        && chunks.remainder().iter().all(|&b| b == byte)
}

/// The prefix before the data of an aligned block: the alignment itself (the header is its last
/// 16 bytes, the rest forbidden bytes).
pub(super) fn aligned_prefix(align: usize) -> usize {
    align.max(HEADER)
}

/// The inner block of an aligned block of `size` bytes made with `align` (above `MIN_ALIGN`): the
/// prefix, the data and the trailer, aligned as asked; `None` past the address space.
pub(super) fn aligned_inner(size: usize, align: usize) -> Option<Layout> {
    let total = aligned_prefix(align)
        .checked_add(size)?
        .checked_add(TRAILER)?;
    Layout::from_size_align(total, align).ok()
}

impl<A: DomainAllocator> Guarded<A> {
    /// Writes header, fill and trailer around `n` bytes at `data` (`n` at most `SIZE_MASK`),
    /// a block of the aligned family if `align` is above `MIN_ALIGN`.
    ///
    /// # Safety
    /// `[data - HEADER, data + n + TRAILER)` is a fresh block of ours.
    #[inline]
    pub(super) unsafe fn dress(&self, data: *mut u8, n: usize, align: usize, fill: bool) {
        let serial = self.next_serial();
        let shift = if align > MIN_ALIGN {
            align.trailing_zeros()
        } else {
            0
        };
        // SAFETY: the caller's guarantee covers every byte written.
        unsafe {
            write_word(data.sub(HEADER), (n | (shift as usize) << SHIFT_AT) as u64);
            *data.sub(WORD) = self.api;
            data.sub(WORD - 1).write_bytes(FORBIDDEN_BYTE, WORD - 1);
            if fill {
                data.write_bytes(CLEAN_BYTE, n);
            }
            data.add(n).write_bytes(FORBIDDEN_BYTE, WORD);
            write_word(data.add(n + WORD), serial);
        }
    }
}
