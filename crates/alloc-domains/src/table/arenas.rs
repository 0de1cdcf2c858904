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
pub fn set_arena_allocator(provider: &'static DynArenaProvider) -> Result<(), DomainError> {
    // Both sources have had the same providers installed (the same count, in the same order), so
    // the second set fails only where the first did.
    ARENAS.set(provider)?;
    Ok(POOL_ARENAS.set(provider)?)
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
