//! Writing the table: one writer at a time under a lock, readers never wait. `set`, the hooks,
//! user domains, change callbacks and the debug-hook setup.

use super::*;

// Writing: one writer at a time; readers never wait.

pub(super) struct Callbacks {
    slots: [Option<(u64, DomainId, &'static ChangeCallback)>; MAX_CALLBACKS],
    next_id: u64,
}

pub(super) struct Writer {
    callbacks: Callbacks,
}

pub(super) static WRITER: alloc_core::lock::Lock<Writer> = alloc_core::lock::Lock::new(Writer {
    callbacks: Callbacks {
        slots: [None; MAX_CALLBACKS],
        next_id: 1,
    },
});

/// How many records made by `Box` are not freed yet (see [`table_records`]).
static RECORDS: AtomicUsize = AtomicUsize::new(0);

/// A record made by `Box`, for the table (freed after a grace period once taken out of it).
pub(super) fn boxed(rec: Installed) -> *mut Installed {
    RECORDS.fetch_add(1, Ordering::Relaxed);
    Box::into_raw(Box::new(Installed { heap: true, ..rec }))
}

/// How many records the table holds in memory beyond its statics: one per allocator installed
/// with [`set`], [`hook`], [`hook_forwarding`], [`add_domain`] or [`setup_debug_hooks`], until a
/// set-back takes it out of its domain's chain or its domain is removed and a grace period has
/// passed. For diagnostics and tests: hooking and unhooking a domain any number of times leaves
/// it where it was.
pub fn table_records() -> usize {
    RECORDS.load(Ordering::Relaxed)
}

/// An address no allocator made a block at (a static of this crate), for [`claims_its_blocks`].
pub(super) static NOBODYS: u8 = 0;

/// Whether `alloc` claims the blocks it makes, asked without calling any of its allocation
/// functions: asked to track its blocks (a header decorator remembers them only when asked; an
/// allocator that cannot claim blocks, a C allocator, says no), it must cover every live one; and
/// it must tell a pointer it never made (`NotOwned` for an address of this crate's statics, which
/// by the contract means it never disowns one of its own), or, where it cannot tell there
/// (`Unknown`: a pool whose large blocks are the C library's), declare that it claims every block
/// of its own (`DomainAllocator::declares_ownership`). Hooks that forward ([`hook_forwarding`])
/// are never asked anything.
pub(super) fn claims_its_blocks(alloc: &DynAllocator) -> bool {
    if !alloc.track_ownership() {
        return false;
    }
    match alloc.owns(ptr::from_ref(&NOBODYS)) {
        Ownership::NotOwned => true,
        Ownership::Owned => false,
        Ownership::Unknown => alloc.declares_ownership(),
    }
}

/// Whether `a` and `b` are the same allocator. Their addresses decide, except for allocators of
/// no size: a zero-sized static (`System`, say) may share its address with another static, so
/// those must also have the same type (the same vtable; were a type's vtable duplicated, the answer
/// is "not the same", which a caller turns into a refusal, never into a wrong route).
fn same_allocator(a: &DynAllocator, b: &DynAllocator) -> bool {
    ptr::addr_eq(a, b) && (core::mem::size_of_val(a) != 0 || ptr::eq(a, b))
}

/// Whether `alloc` is the allocator of a record of the chain from `rec` down.
pub(super) fn in_chain(rec: &Installed, alloc: &DynAllocator) -> bool {
    let mut r = Some(rec);
    while let Some(x) = r {
        if same_allocator(x.alloc, alloc) {
            return true;
        }
        r = x.previous();
    }
    false
}

/// Records taken out of the table (by a set-back, [`set`], or a removal, [`remove_domain`]) whose
/// grace period has not been had yet: freed by the next writer that can have one. Written under
/// its own lock, taken after the writer lock or alone.
pub(super) static PENDING: alloc_core::lock::Lock<Vec<Retired>> =
    alloc_core::lock::Lock::new(Vec::new());

/// Frees the records waiting in [`PENDING`] after a grace period, if one can be had now (not
/// from inside a section of the calling thread: a writer called from an allocator's `owns`, say);
/// otherwise they wait for the next writer. Called by writers after they release the writer lock.
pub(super) fn reclaim_pending() {
    if READERS.in_section() {
        return;
    }
    let batch = core::mem::take(&mut *PENDING.lock());
    let n = batch.len();
    let kept = crate::record::reclaim(&READERS, batch);
    RECORDS.fetch_sub(n - kept.len(), Ordering::Relaxed);
    if !kept.is_empty() {
        PENDING.lock().extend(kept);
    }
}

/// The record of `alloc` if it is reached from the current record of `id` through forwarding
/// records only (the hook pattern's restore: `alloc` is what the hooks above it were installed
/// over).
pub(super) fn under_forwarders(
    w: &Writer,
    id: DomainId,
    alloc: &DynAllocator,
) -> Option<*mut Installed> {
    let mut r = current_locked(w, id);
    while r.forwards {
        let below = r.previous;
        r = r.previous()?;
        if same_allocator(r.alloc, alloc) {
            return Some(below);
        }
    }
    None
}

/// What a writer installs over a domain's current record; [`install`] derives the rest.
pub(super) struct Layer {
    alloc: &'static DynAllocator,
    precise: bool,
    debug_hook: bool,
    forwards: bool,
}

/// Installs `new` over the current record of `id` under the writer lock, checking the
/// replacement rule; returns the callbacks to call.
pub(super) fn install(
    w: &mut Writer,
    id: DomainId,
    new: Layer,
) -> Result<Vec<&'static ChangeCallback>, DomainError> {
    let s = slot(id)?;
    let old = current_locked(w, id);
    let used = s.used.load(Ordering::Acquire);
    // An allocator that cannot claim its blocks is refused over live blocks of others, unless it
    // is one of the chain already (set back: its blocks are told apart as they were before).
    if !new.precise && used && !in_chain(old, new.alloc) {
        return Err(DomainError::AmbiguousOwnership {
            domain: s.name(),
            allocator: new.alloc.name().to_string(),
        });
    }
    let rec = boxed(Installed {
        alloc: new.alloc,
        previous: TABLE[id.index()].current.load(Ordering::Relaxed),
        precise: new.precise,
        debug_hook: new.debug_hook,
        guards_all: new.debug_hook && !used,
        forwards: new.forwards,
        direct: new.forwards && old.direct,
        heap: true,
        generation: id.generation,
        mark: AtomicU8::new(LIVE),
    });
    Ok(publish(w, id, rec))
}

/// Makes `rec` the current record of `id` (under the writer lock); returns the callbacks to call.
pub(super) fn publish(
    w: &mut Writer,
    id: DomainId,
    rec: *mut Installed,
) -> Vec<&'static ChangeCallback> {
    if id == DomainId::MEM {
        // Under the writer lock, before the new record is visible (see `FAST_MEM`).
        FAST_MEM.store(NO_KEY, Ordering::Relaxed);
        COUNTED_MEM.store(NO_KEY, Ordering::Relaxed);
        FAST_FREE.store(FAST_FREE_OFF, Ordering::Relaxed);
    }
    if id == DomainId::OBJECT {
        // As above (see `FAST_OBJECT`).
        FAST_OBJECT.store(false, Ordering::Relaxed);
    }
    // Release: publishes the record; paired with the Acquire of every reader.
    TABLE[id.index()].current.store(rec, Ordering::Release);
    w.callbacks
        .slots
        .iter()
        .flatten()
        .filter(|(_, d, _)| *d == id)
        .map(|&(_, _, cb)| cb)
        .collect()
}

pub(super) fn notify(id: DomainId, callbacks: Vec<&'static ChangeCallback>) {
    if callbacks.is_empty() {
        return;
    }
    let alloc = current(&section(), id).alloc;
    for cb in callbacks {
        cb(id, alloc);
    }
}

/// Makes `alloc` the allocator of a domain (PEP 445's `PyMem_SetAllocator`), keeping the
/// previous ones for the blocks they made; refused with [`DomainError::AmbiguousOwnership`] if the
/// domain has served allocations and `alloc` does not claim its own blocks (module documentation),
/// unless `alloc` is in the domain's chain already. Setting back the allocator that forwarding
/// hooks ([`hook_forwarding`]) were installed over removes those hooks from the chain: their
/// blocks are its blocks (PEP 445's hook pattern: read, wrap, later restore). None of `alloc`'s
/// functions is called. Change callbacks run after the switch, outside the table's lock.
///
/// The records of the hooks a set-back takes out are freed once no thread can be reading them
/// (after a grace period: see the module documentation), so hooking and unhooking a domain any
/// number of times keeps its memory and its cost bounded.
pub fn set(id: DomainId, alloc: &'static DynAllocator) -> Result<(), DomainError> {
    start();
    let precise = claims_its_blocks(alloc);
    let callbacks = {
        let mut w = WRITER.lock();
        slot(id)?;
        match under_forwarders(&w, id, alloc) {
            Some(rec) => {
                let top = TABLE[id.index()].current.load(Ordering::Relaxed);
                let callbacks = publish(&mut w, id, rec);
                // SAFETY: under the writer lock; the records above `rec` were just taken out of
                // the table (nothing else links to them: a record is in one chain), once.
                unsafe { retire(top, rec, &mut PENDING.lock()) };
                callbacks
            }
            None => install(
                &mut w,
                id,
                Layer {
                    alloc,
                    precise,
                    debug_hook: false,
                    forwards: false,
                },
            )?,
        }
    };
    reclaim_pending();
    notify(id, callbacks);
    Ok(())
}

/// Wraps the allocator of a domain: `wrap` gets the current allocator and returns one that
/// forwards to it (PEP 445's hook pattern); the result is installed with no window in which a
/// concurrent caller sees a half-installed allocator. `wrap` runs under the table's lock: it may
/// allocate, but must not call `set`, `hook`, `add_domain` or `on_change`.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_debug::Counting;
/// use alloc_domains::{DomainId, add_domain, hook};
///
/// let d = add_domain("doc-hook", &alloc_core::System).unwrap();
/// hook(d, |prev| Box::leak(Box::new(Counting::new(prev)))).unwrap();
/// ```
pub fn hook(
    id: DomainId,
    wrap: impl FnOnce(&'static DynAllocator) -> &'static DynAllocator,
) -> Result<(), DomainError> {
    wrap_current(id, wrap, false)
}

/// The body of [`hook`] and [`hook_forwarding`]: `wrap` the current allocator under the writer
/// lock and install the result; a forwarding wrapper makes no blocks of its own, so it is asked
/// nothing (it claims nothing, and nothing is refused).
pub(super) fn wrap_current(
    id: DomainId,
    wrap: impl FnOnce(&'static DynAllocator) -> &'static DynAllocator,
    forwards: bool,
) -> Result<(), DomainError> {
    start();
    let callbacks = {
        let mut w = WRITER.lock();
        slot(id)?;
        let alloc = wrap(current_locked(&w, id).alloc);
        let precise = forwards || claims_its_blocks(alloc);
        install(
            &mut w,
            id,
            Layer {
                alloc,
                precise,
                debug_hook: false,
                forwards,
            },
        )?
    };
    notify(id, callbacks);
    Ok(())
}

/// Wraps the allocator of a domain with a hook that forwards every call to it and hands out its
/// blocks unchanged (PEP 445's hook pattern, as tracemalloc and a counting or fault-injecting
/// hook use it): accepted at any time, whether or not the domain has allocated, and whether or
/// not the wrapper can claim blocks (a C wrapper cannot). `wrap` gets the current allocator and
/// returns the hook; it runs under the table's lock (it may allocate, but must not call `set`,
/// `hook`, `add_domain` or `on_change`). Every block of the wrapped allocator, made before or
/// after, is freed through the hook while it is installed; [`set`] with the wrapped allocator
/// puts it back and takes the hook out of the chain. None of the hook's functions is called here.
///
/// The declaration is the caller's promise: a wrapper that makes blocks of its own (a header
/// decorator such as `Guarded` or `Counting`) must be installed with [`hook`] instead.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_debug::FaultInjecting;
/// use alloc_domains::{add_domain, get, hook_forwarding, set, Domain};
///
/// let d = add_domain("doc-forwarding", &alloc_core::System).unwrap();
/// let early = Domain::new(d).unwrap().malloc(8).unwrap();
/// let old = get(d).unwrap();
/// hook_forwarding(d, |prev| Box::leak(Box::new(FaultInjecting::new(prev)))).unwrap();
/// // SAFETY: a live block of the domain, freed once (through the hook, to the C library).
/// unsafe { Domain::new(d).unwrap().free(early.as_ptr()) };
/// set(d, old).unwrap(); // the hook is gone from the chain
/// ```
pub fn hook_forwarding(
    id: DomainId,
    wrap: impl FnOnce(&'static DynAllocator) -> &'static DynAllocator,
) -> Result<(), DomainError> {
    wrap_current(id, wrap, true)
}

/// Adds a domain named `name` using `alloc`; standard domains are not special here, only in their
/// defaults. The id has the index of the first free slot (a removed domain's slot is free again)
/// and that slot's generation, so that ids of a domain removed from it are told from it.
pub fn add_domain(
    name: &'static str,
    alloc: &'static DynAllocator,
) -> Result<DomainId, DomainError> {
    start();
    if name.is_empty() {
        return Err(DomainError::EmptyName);
    }
    let precise = claims_its_blocks(alloc);
    let _w = WRITER.lock();
    if TABLE.iter().any(|s| s.occupied() && s.name() == name) {
        return Err(DomainError::DuplicateName(name));
    }
    let (i, s) = TABLE
        .iter()
        .enumerate()
        .find(|(_, s)| !s.occupied())
        .ok_or(DomainError::TableFull { max: MAX_DOMAINS })?;
    let id = DomainId {
        index: i as u8,
        generation: s.generation.load(Ordering::Relaxed),
    };
    s.set_name(name);
    s.used.store(false, Ordering::Relaxed);
    s.live_base.store(READERS.live_sum(i), Ordering::Relaxed);
    reset_stats(i);
    let rec = boxed(Installed {
        generation: id.generation,
        ..record(alloc, precise, false)
    });
    s.current.store(rec, Ordering::Release);
    Ok(id)
}

/// Removes a user domain that owns no live block: its id (and every handle made from it) then
/// names no domain ([`DomainError::Removed`]), `find` and `domains` no longer list it, its
/// change callbacks are unregistered, and its records are freed once no thread can be reading
/// them (after a grace period). A domain added later may have its index, under a new generation.
///
/// Refused with [`DomainError::StandardDomain`] for raw, mem and object, and with
/// [`DomainError::LiveBlocks`] while a block made through the domain is not freed: the table
/// counts, for user domains only, the blocks made and freed through the domain's handle (a block
/// freed directly by the allocator, not through the domain, stays counted, and keeps the domain
/// from being removed). None of the domain's allocators is called. A call through the domain
/// that runs while it is removed is the caller's race: it reaches the old allocator, or fails as
/// on a removed domain.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_domains::{Domain, DomainError, add_domain, remove_domain};
///
/// let id = add_domain("doc-remove", &alloc_core::System).unwrap();
/// let d = Domain::new(id).unwrap();
/// let p = d.malloc(16).unwrap();
/// assert!(matches!(remove_domain(id), Err(DomainError::LiveBlocks { live: 1, .. })));
/// // SAFETY: a live block of the domain, freed once.
/// unsafe { d.free(p.as_ptr()) };
/// remove_domain(id).unwrap();
/// assert!(matches!(Domain::new(id), Err(DomainError::Removed { .. })));
/// assert!(d.malloc(16).is_none()); // a stale handle reaches no allocator
/// ```
pub fn remove_domain(id: DomainId) -> Result<(), DomainError> {
    start();
    {
        let mut w = WRITER.lock();
        let s = slot(id)?;
        if id.index() < STANDARD_DOMAINS {
            return Err(DomainError::StandardDomain(s.name()));
        }
        let live = READERS
            .live_sum(id.index())
            .wrapping_sub(s.live_base.load(Ordering::Relaxed)) as i64 as isize;
        if live != 0 {
            return Err(DomainError::LiveBlocks {
                domain: s.name(),
                live,
            });
        }
        let top = s.current.load(Ordering::Relaxed);
        s.current.store(rec_ptr(&REC_VACANT), Ordering::Release);
        let next = id.generation.wrapping_add(1);
        s.generation.store(
            if next == NO_GENERATION { 0 } else { next },
            Ordering::Release,
        );
        for c in &mut w.callbacks.slots {
            if c.is_some_and(|(_, d, _)| d == id) {
                *c = None;
            }
        }
        // SAFETY: under the writer lock; the domain's whole chain was just taken out of the
        // table (its records are in no other chain), once.
        unsafe { retire(top, ptr::null_mut(), &mut PENDING.lock()) };
    }
    reclaim_pending();
    Ok(())
}

/// A registered change callback, for [`remove_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// Registers `callback` for a domain: it is called at once with the current allocator, and again
/// after every change of that domain (the change callbacks proposed for CPython in 2013). It runs
/// outside the table's lock, so it may read the table, and even change it.
pub fn on_change(
    id: DomainId,
    callback: &'static ChangeCallback,
) -> Result<CallbackId, DomainError> {
    start();
    let cid = {
        let mut w = WRITER.lock();
        slot(id)?;
        let free = w
            .callbacks
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(DomainError::TooManyCallbacks { max: MAX_CALLBACKS })?;
        let cid = w.callbacks.next_id;
        w.callbacks.next_id += 1;
        w.callbacks.slots[free] = Some((cid, id, callback));
        cid
    };
    let alloc = current(&section(), id).alloc;
    callback(id, alloc);
    Ok(CallbackId(cid))
}

/// Unregisters a change callback; returns whether it was registered.
pub fn remove_callback(id: CallbackId) -> bool {
    let mut w = WRITER.lock();
    match w
        .callbacks
        .slots
        .iter_mut()
        .find(|s| s.is_some_and(|(c, _, _)| c == id.0))
    {
        Some(s) => {
            *s = None;
            true
        }
        None => false,
    }
}

/// Wraps every domain in the debug hooks (alloc-debug's `Guarded`, with the domain's API id), as
/// `PyMem_SetupDebugHooks` does. A domain already under debug hooks is left as it is, so calling it
/// twice does not wrap twice. On the standard configuration the hooks themselves are statics.
///
/// As in CPython, call it before the domains serve allocations: a hook installed then checks every
/// block freed through its domain, including blocks of other domains (API misuse). A hook installed
/// later leaves the blocks made before it to the allocators that made them, and so cannot tell a
/// foreign block from an old one.
///
/// A hook over the C library installed after its domain has allocated (raw, or any domain under
/// `DOMALLOC=malloc`) hands every pointer it did not make to the C library, as the blocks made
/// before it are the C library's: there, misuse is the C library's to find.
///
/// Returns the domains it could not hook: those whose allocator cannot say which blocks it made
/// before (a decorator used before it was installed, asked to track its blocks, answers that it
/// cannot cover them) and that have served allocations; none of the standard ones. Hook those
/// before their first allocation, or start with `DOMALLOC=debug`.
pub fn setup_debug_hooks() -> Vec<(DomainId, DomainError)> {
    start();
    let mut refused = Vec::new();
    for (i, s) in TABLE.iter().enumerate() {
        let id = DomainId {
            index: i as u8,
            generation: s.generation.load(Ordering::Acquire),
        };
        let result = {
            let mut w = WRITER.lock();
            if slot(id).is_err() {
                continue;
            }
            let cur = current_locked(&w, id);
            if cur.debug_hook {
                continue;
            }
            // The standard allocators have static hooked forms.
            let ready: Option<&'static Installed> = match i {
                1 if ptr::eq(cur, &REC_POOL) => Some(&REC_MEM_DEBUG_POOL),
                2 if ptr::eq(cur, &REC_OBJECT_POOL) => Some(&REC_OBJECT_DEBUG_POOL),
                0 if ptr::eq(cur, &REC_SYSTEM) => Some(&REC_RAW_DEBUG),
                1 if ptr::eq(cur, &REC_SYSTEM) => Some(&REC_MEM_DEBUG_SYSTEM),
                2 if ptr::eq(cur, &REC_SYSTEM) => Some(&REC_OBJECT_DEBUG_SYSTEM),
                _ => None,
            };
            let alloc: &'static DynAllocator = match ready {
                Some(r) => r.alloc,
                None => Box::leak(Box::new(Guarded::new(cur.alloc).with_api(id.api_id()))),
            };
            let precise = ready.map_or_else(|| claims_its_blocks(alloc), |r| r.precise);
            install(
                &mut w,
                id,
                Layer {
                    alloc,
                    precise,
                    debug_hook: true,
                    forwards: false,
                },
            )
        };
        match result {
            Ok(callbacks) => notify(id, callbacks),
            Err(e) => refused.push((id, e)),
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc_core::System;

    /// Another allocator of no size, of another type than `System`.
    struct OtherZst;

    // SAFETY: every call goes to `System`, which upholds the contract.
    unsafe impl DomainAllocator for OtherZst {
        fn malloc(&self, size: usize) -> Option<core::ptr::NonNull<u8>> {
            System.malloc(size)
        }
        unsafe fn free(&self, ptr: *mut u8) {
            // SAFETY: the caller's guarantee; the block is `System`'s.
            unsafe { System.free(ptr) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<core::ptr::NonNull<u8>> {
            // SAFETY: as for free.
            unsafe { System.realloc(ptr, new_size) }
        }
        fn calloc(&self, nelem: usize, elsize: usize) -> Option<core::ptr::NonNull<u8>> {
            System.calloc(nelem, elsize)
        }
    }

    static SYSTEM: System = System;
    static OTHER: OtherZst = OtherZst;

    #[test]
    fn allocators_of_no_size_are_told_apart_by_type_even_at_one_address() {
        let a: &DynAllocator = &SYSTEM;
        let b: &DynAllocator = &OTHER;
        assert!(same_allocator(a, a));
        assert!(same_allocator(b, b));
        // Whether or not the two statics share an address (they may: both have no size), they
        // are different allocators.
        assert!(!same_allocator(a, b));
        assert!(!same_allocator(b, a));
    }
}
