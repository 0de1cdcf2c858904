//! Reading the table: a domain's current record, and the routing of a free to the allocator that
//! made the block (the rule in the `table` module's documentation).

use super::*;

// Reading.

pub(super) fn slot(id: DomainId) -> Result<&'static Slot, DomainError> {
    let s = TABLE
        .get(id.index())
        .ok_or(DomainError::UnknownDomain(id.0))?;
    if s.current.load(Ordering::Acquire).is_null() {
        return Err(DomainError::UnknownDomain(id.0));
    }
    Ok(s)
}

#[inline]
pub(super) fn current(id: DomainId) -> &'static Installed {
    // Acquire: pairs with the Release that published the record.
    let p = TABLE[id.index()].current.load(Ordering::Acquire);
    debug_assert!(!p.is_null(), "domain {} is not in the table", id.0);
    // SAFETY: installed records are statics or leaked boxes, never freed; the slot of an existing
    // domain never holds null (handles are only made for existing domains).
    unsafe { &*p }
}

/// The allocator that made `ptr`, by the rule in the module documentation.
#[inline]
pub(super) fn owner_of(id: DomainId, ptr: *const u8) -> &'static DynAllocator {
    let rec = current(id);
    if rec.direct {
        rec.alloc
    } else {
        route(rec, ptr)
    }
}

#[cold]
pub(super) fn route(newest: &'static Installed, ptr: *const u8) -> &'static DynAllocator {
    let mut hook: Option<&'static DynAllocator> = None;
    let mut imprecise: Option<&'static DynAllocator> = None;
    let mut oldest = newest.alloc;
    // The newest of the forwarding records just above the one being looked at: the allocator a
    // block of that one is freed through.
    let mut through: Option<&'static DynAllocator> = None;
    // The first allocator whose memory holds `ptr` where none of its blocks starts.
    let mut inside: Option<&'static DynAllocator> = None;
    let mut r = Some(newest);
    while let Some(rec) = r {
        r = rec.previous;
        if rec.forwards {
            through = through.or(Some(rec.alloc));
            continue;
        }
        let freer = through.take().unwrap_or(rec.alloc);
        if rec.alloc.owns(ptr) == Ownership::Owned {
            // An allocator's memory may also hold the blocks of a header decorator stacked on it
            // (a debug hook: its blocks start inside the allocator's): a pointer there where none
            // of the allocator's own blocks starts is the decorator's (it claims its live ones,
            // further along), or a bad pointer for a debug hook to report, or for the allocator's
            // own checks.
            if rec.alloc.starts_block(ptr) != Ownership::NotOwned {
                return freer;
            }
            inside = inside.or(Some(freer));
        }
        if rec.guards_all {
            // Every block of the domain was made through this hook: nothing older made any.
            return freer;
        }
        if rec.debug_hook && hook.is_none() {
            hook = Some(freer);
        }
        if !rec.precise && imprecise.is_none() {
            imprecise = Some(freer);
        }
        oldest = freer;
    }
    match inside {
        // In an allocator's memory, no block of anyone's: never the C library's.
        Some(owner) => hook.unwrap_or(owner),
        None => imprecise.or(hook).unwrap_or(oldest),
    }
}

/// `Owned` if an allocator of the domain's chain answers `Owned` to `ask`, else `Unknown` if one
/// cannot tell, else `NotOwned`.
pub(super) fn chain_answer(id: DomainId, ask: impl Fn(&DynAllocator) -> Ownership) -> Ownership {
    let mut r = Some(current(id));
    let mut answer = Ownership::NotOwned;
    while let Some(rec) = r {
        if rec.forwards {
            // Its blocks are those of the allocators below.
            r = rec.previous;
            continue;
        }
        match ask(rec.alloc) {
            Ownership::Owned => return Ownership::Owned,
            Ownership::Unknown => answer = Ownership::Unknown,
            Ownership::NotOwned => {}
        }
        r = rec.previous;
    }
    answer
}

/// Whether every block of the domain was made through a debug hook that is still in its chain
/// (`DOMALLOC=debug`, `pool_debug`, `malloc_debug`, or `setup_debug_hooks` before the domain's
/// first allocation): then any pointer freed through the domain that its allocators do not
/// claim (a block freed before, an interior pointer, another domain's block) is the hook's to
/// report, never a block of the C library's. The C library's `free` sends every pointer to the
/// domain then.
pub fn guards_every_block(id: DomainId) -> bool {
    start();
    if slot(id).is_err() {
        return false;
    }
    let mut r = Some(current(id));
    while let Some(rec) = r {
        if rec.guards_all {
            return true;
        }
        r = rec.previous;
    }
    false
}

/// The allocator a domain uses now (PEP 445's `PyMem_GetAllocator`).
pub fn get(id: DomainId) -> Result<&'static DynAllocator, DomainError> {
    start();
    slot(id)?;
    Ok(current(id).alloc)
}

/// The name of a domain.
pub fn name(id: DomainId) -> Result<&'static str, DomainError> {
    start();
    Ok(slot(id)?.name())
}

/// One domain, as [`domains`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its id.
    pub id: DomainId,
    /// Its name.
    pub name: &'static str,
    /// The name of the allocator it uses now.
    pub allocator: String,
}

/// Every domain with its name and current allocator, standard domains first.
pub fn domains() -> Vec<DomainInfo> {
    start();
    (0..MAX_DOMAINS)
        .filter_map(|i| {
            let id = DomainId(i as u8);
            slot(id).ok().map(|s| DomainInfo {
                id,
                name: s.name(),
                allocator: current(id).alloc.name().to_string(),
            })
        })
        .collect()
}

/// The domain named `name`, if any.
pub fn find(name: &str) -> Option<DomainId> {
    domains().into_iter().find(|d| d.name == name).map(|d| d.id)
}
