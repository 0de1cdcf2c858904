//! PEP 445's arena allocator for the standard pools, and their statistics and trim.

use super::*;

// The arena allocator (PEP 445's `PyObject_GetArenaAllocator` / `PyObject_SetArenaAllocator`).

/// The provider the standard pools (behind `mem` and `object`) take new arenas from now.
pub fn arena_allocator() -> &'static DynArenaProvider {
    ARENAS.get()
}

/// Makes `provider` the source of the standard pools' new arenas: an embedding application hands
/// the pools its own memory (a `RegionArenas` over a buffer, say). Arenas already made keep going
/// back to the provider that made them; the pools' allocations and frees never touch the provider.
/// The switch is one store under a lock: an arena is made by the old provider or the new one.
///
/// The mem domain's small pool has a source of its own (see `RESERVED`): it takes the same
/// provider, except that the standard one (what [`arena_allocator`] gives before any set) stands
/// for its reservation there, so that setting back what was got returns the pool to it. Both
/// sources change together or not at all, under the table's writer lock.
pub fn set_arena_allocator(provider: &'static DynArenaProvider) -> Result<(), DomainError> {
    let standard: &'static DynArenaProvider = &OS_ARENAS;
    let for_pool: &'static DynArenaProvider = if ptr::addr_eq(provider, standard) {
        &RESERVED
    } else {
        provider
    };
    let _w = WRITER.lock();
    if !ARENAS.has_room_for(provider) || !POOL_ARENAS.has_room_for(for_pool) {
        return Err(SwapError::TooManyProviders {
            max: alloc_arena::MAX_PROVIDERS,
        }
        .into());
    }
    ARENAS.set(provider)?;
    Ok(POOL_ARENAS.set(for_pool)?)
}

/// Statistics of the standard pools (mem's and object's together), as the calling thread can see
/// them: its own heaps and every heap no thread owns (see `PoolAllocator::stats`). In the mem
/// pool's 64 classes (to 1 KiB); the object pool's 32 (to 512 bytes) are the first of them.
pub fn pool_stats() -> alloc_arena::PoolStats {
    let mut s = POOL.stats();
    s.add(&OBJECT_POOL.stats());
    s
}

/// Gives back what the standard pools keep for reuse (their `trim`, like `malloc_trim(0)`): in the
/// calling thread's heaps and in every heap no thread owns.
pub fn trim_pools() {
    POOL.trim();
    OBJECT_POOL.trim();
    MEDIUM.trim();
    LARGE.trim();
    SPANS.trim();
    SECURE_POOL.trim();
    SECURE_OBJECT_POOL.trim();
    SECURE_MEDIUM.trim();
    SECURE_LARGE.trim();
}
