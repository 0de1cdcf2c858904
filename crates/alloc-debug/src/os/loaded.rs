//! The process's loaded objects, as the dynamic loader describes them (`dl_iterate_phdr`): for
//! Tracing's reading of call-frame information.

use core::ffi::c_void;
use core::slice;

/// One loaded object during a visit: its load bias and its program headers, valid while the
/// loader's lock is held (for the length of [`with_object_of`]'s closure).
pub(crate) struct Object<'a> {
    base: usize,
    headers: &'a [libc::Elf64_Phdr],
}

impl Object<'_> {
    /// The loaded segment that holds `addr`, as `(start, end)`.
    pub(crate) fn segment_of(&self, addr: usize) -> Option<(usize, usize)> {
        self.headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .find_map(|h| {
                let start = self.base.wrapping_add(h.p_vaddr as usize);
                let end = start.wrapping_add(h.p_memsz as usize);
                (start..end).contains(&addr).then_some((start, end))
            })
    }

    /// The object's `.eh_frame_hdr`: its address and its bytes.
    pub(crate) fn eh_frame_hdr(&self) -> Option<(usize, &[u8])> {
        let hdr = self
            .headers
            .iter()
            .find(|h| h.p_type == libc::PT_GNU_EH_FRAME)?;
        let start = self.base.wrapping_add(hdr.p_vaddr as usize);
        // SAFETY: the object's `.eh_frame_hdr` segment is mapped and readable for as long as the
        // object is loaded, which it is while the loader's lock is held, for the life of `self`.
        Some((start, unsafe {
            slice::from_raw_parts(start as *const u8, hdr.p_memsz as usize)
        }))
    }
}

/// What [`with_object_of`]'s callback looks for, and what it hands back.
struct Visit<F, R> {
    addr: usize,
    f: Option<F>,
    out: Option<R>,
}

/// Calls `f` with the loaded object whose segments hold `addr`, under the loader's lock; `None`
/// when no loaded object holds it. Allocates nothing itself.
pub(crate) fn with_object_of<R, F: FnOnce(&Object<'_>) -> R>(addr: usize, f: F) -> Option<R> {
    let mut visit = Visit {
        addr,
        f: Some(f),
        out: None,
    };
    // SAFETY: the callback reads only the program headers the loader passes it, for the duration
    // of the call, and `visit` (of the callback's type parameters) outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(callback::<F, R>), (&raw mut visit).cast::<c_void>());
    }
    visit.out
}

/// `dl_iterate_phdr`'s callback: stops (returns 1) at the object whose loaded segments hold the
/// address, after calling the closure on it.
///
/// # Safety
///
/// Called by `dl_iterate_phdr` only, with the `Visit<F, R>` [`with_object_of`] passed as `data`
/// and the loader's description of a loaded object as `info`.
unsafe extern "C" fn callback<F: FnOnce(&Object<'_>) -> R, R>(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Visit` `with_object_of` passed, alive and not otherwise borrowed
    // during the iteration; `info` is the loader's description of one loaded object, valid during
    // the callback, whose `dlpi_phdr` points at `dlpi_phnum` program headers.
    let (visit, object) = unsafe {
        let info = &*info;
        let headers = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
        };
        (
            &mut *data.cast::<Visit<F, R>>(),
            Object {
                base: info.dlpi_addr as usize,
                headers,
            },
        )
    };
    if object.segment_of(visit.addr).is_none() {
        return 0;
    }
    if let Some(f) = visit.f.take() {
        visit.out = Some(f(&object));
    }
    1
}
