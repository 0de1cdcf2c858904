//! [`SwappableArenas`]: PEP 445's arena allocator API (`PyObject_GetArenaAllocator` /
//! `PyObject_SetArenaAllocator`) as an [`ArenaProvider`] whose source can be replaced at run time.
//!
//! Every arena goes back to the provider that made it, never to one installed later: the index of
//! the maker is recorded per 1 MiB chunk in a [`ChunkMap`] (as the registry's owners are), written when the
//! arena is made and read when it is freed, decommitted or committed. Only arena acquisition and
//! release reach this type; a pool's allocations and frees never do.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use alloc_core::lock::Lock;
use alloc_core::{ArenaError, ArenaProvider};
use thiserror::Error;

use alloc_core::chunk_map::ChunkMap;
use core::sync::atomic::AtomicU8;

use crate::registry::{CHUNK_SHIFT, OsLeaves};
use crate::sync::Ordering;

/// An arena provider that can be installed in a [`SwappableArenas`]: shared by every thread.
pub type DynArenaProvider = dyn ArenaProvider + Sync;

/// The most providers one [`SwappableArenas`] can have installed over its life (each stays known
/// while arenas it made may be alive).
pub const MAX_PROVIDERS: usize = 16;

/// Why a provider could not be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SwapError {
    /// Every provider slot has been used.
    #[error("no room for another arena provider: at most {max} over the allocator's life")]
    TooManyProviders {
        /// [`MAX_PROVIDERS`].
        max: usize,
    },
}

/// Per chunk: the index plus one of the provider that made the arena covering it (0: none).
static MAKERS: ChunkMap<AtomicU8> = ChunkMap::new();

/// Records `maker` (index plus one, or 0 to clear) for every chunk of `[base, base + size)`.
fn record(base: usize, size: usize, maker: u8) -> bool {
    let chunks = size.div_ceil(1 << CHUNK_SHIFT).max(1);
    for i in 0..chunks {
        let addr = base + (i << CHUNK_SHIFT);
        let slot = if maker != 0 {
            MAKERS.get_or_insert(addr, &OsLeaves::NEW).ok()
        } else {
            MAKERS.get(addr)
        };
        let Some(slot) = slot else {
            return false;
        };
        // Release: pairs with `maker_of`'s Acquire (the free of an arena follows its making).
        slot.store(maker, Ordering::Release);
    }
    true
}

/// The index plus one of the provider that made the arena holding `addr` (0: unknown).
fn maker_of(addr: usize) -> u8 {
    MAKERS.get(addr).map_or(0, |m| m.load(Ordering::Acquire))
}

struct Providers {
    all: [Option<&'static DynArenaProvider>; MAX_PROVIDERS],
    current: usize,
    count: usize,
}

/// An [`ArenaProvider`] whose source can be replaced while arenas are live: PEP 445's
/// `PyObject_SetArenaAllocator`. `set` installs a new source for the arenas made from then on;
/// each arena is freed (and decommitted, committed) through the provider that made it.
///
/// ```
/// use alloc_arena::{OsArenas, PoolAllocator, SwappableArenas};
/// use alloc_core::{DomainAllocator, System};
///
/// static OS: OsArenas = OsArenas::new();
/// static ARENAS: SwappableArenas = SwappableArenas::new(&OS);
/// static POOL: PoolAllocator<&SwappableArenas> = PoolAllocator::with_parts(&ARENAS, System);
///
/// let p = POOL.malloc(64).unwrap();
/// static OTHER: OsArenas = OsArenas::with_huge_pages(true);
/// ARENAS.set(&OTHER).unwrap(); // new arenas come from OTHER; `p`'s arena still goes back to OS
/// // SAFETY: a live block, freed once.
/// unsafe { POOL.free(p.as_ptr()) };
/// ```
pub struct SwappableArenas {
    providers: Lock<Providers>,
}

impl SwappableArenas {
    /// A swappable source of arenas that starts with `initial`.
    pub const fn new(initial: &'static DynArenaProvider) -> Self {
        let mut all = [None; MAX_PROVIDERS];
        all[0] = Some(initial);
        SwappableArenas {
            providers: Lock::new(Providers {
                all,
                current: 0,
                count: 1,
            }),
        }
    }

    /// Fork support: takes the lock that arena acquisitions and releases hold (a leaf: nothing
    /// else is taken while it is held), so that a `fork` does not copy it held by a thread the
    /// child will not have. Release it with [`after_fork_parent`](Self::after_fork_parent) or
    /// [`after_fork_child`](Self::after_fork_child).
    pub fn prepare_fork(&self) {
        self.providers.acquire_for_fork();
    }

    /// Fork support, in the parent after `fork()`: releases what
    /// [`prepare_fork`](Self::prepare_fork) took.
    ///
    /// # Safety
    /// Only on the thread that called `prepare_fork`, after it.
    pub unsafe fn after_fork_parent(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.providers.release_after_fork() };
    }

    /// Fork support, in the child after `fork()`: releases what the parent's
    /// [`prepare_fork`](Self::prepare_fork) took.
    ///
    /// # Safety
    /// Only in the child, on the thread the fork returned in, after the parent's `prepare_fork`.
    pub unsafe fn after_fork_child(&self) {
        // SAFETY: the caller's guarantee.
        unsafe { self.providers.release_after_fork() };
    }

    /// The provider new arenas come from (PEP 445's `PyObject_GetArenaAllocator`).
    pub fn get(&self) -> &'static DynArenaProvider {
        let p = self.providers.lock();
        p.all[p.current].unwrap_or_else(|| unreachable!("the current index is always filled"))
    }

    /// Makes `provider` the source of new arenas (PEP 445's `PyObject_SetArenaAllocator`). Arenas
    /// already made keep going back to their maker. Installing a provider that was installed
    /// before reuses its slot. The switch is one store under the lock: an arena acquisition sees
    /// either the old provider or the new one, never a mix.
    pub fn set(&self, provider: &'static DynArenaProvider) -> Result<(), SwapError> {
        let mut p = self.providers.lock();
        let count = p.count;
        let known = p.all[..count]
            .iter()
            .position(|q| q.is_some_and(|q| same(q, provider)));
        let index = match known {
            Some(i) => i,
            None if count < MAX_PROVIDERS => {
                p.all[count] = Some(provider);
                p.count = count + 1;
                count
            }
            None => {
                return Err(SwapError::TooManyProviders { max: MAX_PROVIDERS });
            }
        };
        p.current = index;
        Ok(())
    }

    /// Whether [`set`](Self::set) would install `provider` now: it was installed before, or
    /// there is room for another.
    pub fn has_room_for(&self, provider: &'static DynArenaProvider) -> bool {
        let p = self.providers.lock();
        p.count < MAX_PROVIDERS
            || p.all[..p.count]
                .iter()
                .any(|q| q.is_some_and(|q| same(q, provider)))
    }

    /// The provider that made the arena holding `ptr`, if it was made through this type.
    fn maker(&self, ptr: NonNull<u8>) -> Option<&'static DynArenaProvider> {
        let m = maker_of(ptr.as_ptr() as usize);
        if m == 0 {
            return None;
        }
        self.providers.lock().all[usize::from(m - 1)]
    }
}

fn same(a: &'static DynArenaProvider, b: &'static DynArenaProvider) -> bool {
    ptr::addr_eq(a, b)
}

// SAFETY: every arena comes from an installed provider, which upholds the contract, and goes back
// to that same provider (recorded per chunk when made); the records are cleared before the arena
// is returned, so a later arena at the same address is attributed to its own maker.
unsafe impl ArenaProvider for SwappableArenas {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        let (index, provider) = {
            let p = self.providers.lock();
            let current = p.current;
            (
                current,
                p.all[current].unwrap_or_else(|| unreachable!("filled")),
            )
        };
        let arena = provider.alloc(layout)?;
        if !record(arena.as_ptr() as usize, layout.size(), index as u8 + 1) {
            // SAFETY: just made with this layout, never used.
            unsafe { provider.free(arena, layout) };
            return Err(ArenaError::Unsupported {
                size: layout.size(),
                align: layout.align(),
                reason: "the arena lies outside the address range a swappable provider can record",
            });
        }
        Ok(arena)
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        let Some(maker) = self.maker(ptr) else {
            debug_assert!(false, "an arena this provider did not make");
            return;
        };
        record(ptr.as_ptr() as usize, layout.size(), 0);
        // SAFETY: the caller's guarantee, and `maker` made this arena.
        unsafe { maker.free(ptr, layout) }
    }

    unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: the caller's guarantee, forwarded to the arena's maker.
        self.maker(ptr)
            .is_some_and(|m| unsafe { m.decommit(ptr, len) })
    }

    unsafe fn commit(&self, ptr: NonNull<u8>, len: usize) -> Result<(), ArenaError> {
        match self.maker(ptr) {
            // SAFETY: the caller's guarantee, forwarded to the arena's maker.
            Some(m) => unsafe { m.commit(ptr, len) },
            None => Ok(()),
        }
    }

    fn fresh_memory_is_zeroed(&self) -> bool {
        // Known only per provider; the pool does not rely on it when the answer is no.
        false
    }
}
