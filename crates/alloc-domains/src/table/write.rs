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

pub(super) fn leak(rec: Installed) -> &'static Installed {
    Box::leak(Box::new(rec))
}

/// An address no allocator made a block at (a static of this crate), for [`claims_its_blocks`].
pub(super) static NOBODYS: u8 = 0;

/// Whether `alloc` claims the blocks it makes: asked to track its blocks (a header decorator
/// remembers them only when asked; an allocator that cannot claim blocks, a C allocator, says no),
/// it must cover every live one; and it must tell a pointer it never made (`NotOwned` for an
/// address of this crate's statics, which by the contract means it never disowns one of its
/// own), asked without calling any of its allocation functions. Only an allocator that cannot
/// tell there (`Unknown`: a pool whose large blocks are the C library's, an allocator that leaves
/// `owns` to the provided answer) is asked for a probe block, to see whether it claims it. Hooks
/// that forward ([`hook_forwarding`]) are never asked anything.
pub(super) fn claims_its_blocks(alloc: &DynAllocator) -> bool {
    if !alloc.track_ownership() {
        return false;
    }
    match alloc.owns(ptr::from_ref(&NOBODYS)) {
        Ownership::NotOwned => true,
        Ownership::Owned => false,
        Ownership::Unknown => {
            let Some(p) = alloc.malloc(1) else {
                return false;
            };
            let owned = alloc.owns(p.as_ptr()) == Ownership::Owned;
            // SAFETY: the probe block was just made by `alloc` and is freed once.
            unsafe { alloc.free(p.as_ptr()) };
            owned
        }
    }
}

/// Whether `alloc` is the allocator of a record of the chain from `rec` down.
pub(super) fn in_chain(rec: &'static Installed, alloc: &DynAllocator) -> bool {
    let mut r = Some(rec);
    while let Some(x) = r {
        if ptr::addr_eq(x.alloc, alloc) {
            return true;
        }
        r = x.previous;
    }
    false
}

/// Records taken out of a chain by a set-back (see [`set`]): never freed, as a thread may still be
/// in a call through one, and kept here so that they stay reachable (a leak checker sees them as
/// held, which they are). Written under the writer lock.
pub(super) static RETIRED: alloc_core::lock::Lock<Vec<&'static Installed>> =
    alloc_core::lock::Lock::new(Vec::new());

/// Keeps the records from `top` down to (not including) `to` in [`RETIRED`].
pub(super) fn retire_above(top: &'static Installed, to: &'static Installed) {
    let mut retired = RETIRED.lock();
    let mut r = top;
    while !ptr::eq(r, to) {
        retired.push(r);
        match r.previous {
            Some(p) => r = p,
            None => break,
        }
    }
}

/// The record of `alloc` if it is reached from `rec` through forwarding records only (the hook
/// pattern's restore: `alloc` is what the hooks above it were installed over).
pub(super) fn under_forwarders(
    rec: &'static Installed,
    alloc: &DynAllocator,
) -> Option<&'static Installed> {
    let mut r = rec;
    while r.forwards {
        r = r.previous?;
        if ptr::addr_eq(r.alloc, alloc) {
            return Some(r);
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
    let old = current(id);
    let used = s.used.load(Ordering::Acquire);
    // An allocator that cannot claim its blocks is refused over live blocks of others, unless it
    // is one of the chain already (set back: its blocks are told apart as they were before).
    if !new.precise && used && !in_chain(old, new.alloc) {
        return Err(DomainError::AmbiguousOwnership {
            domain: s.name(),
            allocator: new.alloc.name().to_string(),
        });
    }
    let rec = leak(Installed {
        alloc: new.alloc,
        previous: Some(old),
        precise: new.precise,
        debug_hook: new.debug_hook,
        guards_all: new.debug_hook && !used,
        forwards: new.forwards,
        direct: new.forwards && old.direct,
    });
    Ok(publish(w, id, rec))
}

/// Makes `rec` the current record of `id` (under the writer lock); returns the callbacks to call.
pub(super) fn publish(
    w: &mut Writer,
    id: DomainId,
    rec: &'static Installed,
) -> Vec<&'static ChangeCallback> {
    if id == DomainId::MEM {
        // Under the writer lock, before the new record is visible (see `FAST_MEM`).
        FAST_MEM.store(NO_KEY, Ordering::Relaxed);
    }
    // Release: publishes the record; paired with the Acquire of every reader.
    TABLE[id.index()]
        .current
        .store(rec_ptr(rec), Ordering::Release);
    w.callbacks
        .slots
        .iter()
        .flatten()
        .filter(|(_, d, _)| *d == id)
        .map(|&(_, _, cb)| cb)
        .collect()
}

pub(super) fn notify(id: DomainId, callbacks: Vec<&'static ChangeCallback>) {
    let alloc = current(id).alloc;
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
pub fn set(id: DomainId, alloc: &'static DynAllocator) -> Result<(), DomainError> {
    start();
    let precise = claims_its_blocks(alloc);
    let callbacks = {
        let mut w = WRITER.lock();
        slot(id)?;
        match under_forwarders(current(id), alloc) {
            Some(rec) => {
                retire_above(current(id), rec);
                publish(&mut w, id, rec)
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
        let alloc = wrap(current(id).alloc);
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
/// defaults.
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
    if TABLE
        .iter()
        .any(|s| !s.current.load(Ordering::Acquire).is_null() && s.name() == name)
    {
        return Err(DomainError::DuplicateName(name));
    }
    let (i, s) = TABLE
        .iter()
        .enumerate()
        .find(|(_, s)| s.current.load(Ordering::Acquire).is_null())
        .ok_or(DomainError::TableFull { max: MAX_DOMAINS })?;
    s.set_name(name);
    s.used.store(false, Ordering::Relaxed);
    let rec = leak(record(alloc, precise, false));
    s.current.store(rec_ptr(rec), Ordering::Release);
    Ok(DomainId(i as u8))
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
    callback(id, current(id).alloc);
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
    for i in 0..MAX_DOMAINS {
        let id = DomainId(i as u8);
        if slot(id).is_err() {
            continue;
        }
        let result = {
            let mut w = WRITER.lock();
            let cur = current(id);
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
