//! Reading the table: a domain's current record, and the routing of a free to the allocator that
//! made the block (the rule in the `table` module's documentation).

use super::*;

// Reading. Every read of a record is inside a section of `READERS` (or under the writer lock):
// records taken out of the table are freed only after a grace period (`crate::reclaim`).

/// The slot of an existing domain of this generation.
pub(super) fn slot(id: DomainId) -> Result<&'static Slot, DomainError> {
    let s = TABLE
        .get(id.index())
        .ok_or(DomainError::UnknownDomain(id.index))?;
    if s.generation.load(Ordering::Acquire) != id.generation {
        return Err(DomainError::Removed {
            index: id.index,
            generation: id.generation,
        });
    }
    if !s.occupied() {
        return Err(DomainError::UnknownDomain(id.index));
    }
    Ok(s)
}

/// A section of the table's readers: records read inside it are not freed before it ends.
#[inline(always)]
pub(super) fn section() -> Section<'static> {
    READERS.enter()
}

/// The current record of domain `id` (its index: the caller checks the generation where it
/// matters), valid while the section lasts.
#[inline]
pub(super) fn current<'s>(_in: &'s Section<'_>, id: DomainId) -> &'s Installed {
    // Acquire: pairs with the Release that published the record.
    let p = TABLE[id.index()].current.load(Ordering::Acquire);
    debug_assert!(!p.is_null(), "domain {} is not in the table", id.index);
    // SAFETY: the slot of a domain a handle or id was made for is never null again (a removed
    // domain's holds the static `REC_VACANT`); the record is freed only after a grace period
    // that waits for this section (`crate::reclaim`).
    let rec = unsafe { &*p };
    rec.check();
    rec
}

/// The current record of domain `id`, read under the writer lock (no record reachable from the
/// table is freed while it is held: records are retired under it, before they are freed).
pub(super) fn current_locked(_w: &Writer, id: DomainId) -> &Installed {
    let p = TABLE[id.index()].current.load(Ordering::Acquire);
    // SAFETY: as for `current`: only records taken out of the table under the lock are freed.
    unsafe { &*p }
}

/// The allocator that made `ptr`, by the rule in the module documentation; the removed domain's
/// allocator ([`REC_VACANT`]'s) for a stale id.
#[inline]
pub(super) fn owner_of(id: DomainId, ptr: *const u8) -> &'static DynAllocator {
    live_owner_of(id, ptr).unwrap_or(REC_VACANT.alloc)
}

/// [`owner_of`], `None` for a stale id (a removed domain's).
#[inline]
pub(super) fn live_owner_of(id: DomainId, ptr: *const u8) -> Option<&'static DynAllocator> {
    let s = section();
    let rec = current(&s, id);
    if rec.generation != id.generation {
        return None;
    }
    Some(rec.owner(ptr))
}

/// `Owned` if an allocator of the domain's chain answers `Owned` to `ask`, else `Unknown` if one
/// cannot tell, else `NotOwned`.
pub(super) fn chain_answer(id: DomainId, ask: impl Fn(&DynAllocator) -> Ownership) -> Ownership {
    let s = section();
    let rec = current(&s, id);
    if rec.generation != id.generation {
        return Ownership::NotOwned;
    }
    rec.answer(ask)
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
    let s = section();
    let mut r = Some(current(&s, id));
    while let Some(rec) = r {
        if rec.guards_all {
            return true;
        }
        r = rec.previous();
    }
    false
}

/// The allocator a domain uses now (PEP 445's `PyMem_GetAllocator`).
pub fn get(id: DomainId) -> Result<&'static DynAllocator, DomainError> {
    start();
    slot(id)?;
    let s = section();
    Ok(current(&s, id).alloc)
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
            let slot = &TABLE[i];
            let id = DomainId {
                index: i as u8,
                generation: slot.generation.load(Ordering::Acquire),
            };
            // The allocator's name is read (and copied) outside the section: a `String` is made.
            let alloc = {
                let s = section();
                if !slot.occupied() {
                    return None;
                }
                let rec = current(&s, id);
                if rec.generation != id.generation {
                    return None;
                }
                rec.alloc
            };
            Some(DomainInfo {
                id,
                name: slot.name(),
                allocator: alloc.name().to_string(),
            })
        })
        .collect()
}

/// The domain named `name`, if any.
pub fn find(name: &str) -> Option<DomainId> {
    domains().into_iter().find(|d| d.name == name).map(|d| d.id)
}
