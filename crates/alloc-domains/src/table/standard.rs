//! The standard allocators (statics, so start-up installs them without allocating), their
//! records, and start-up: the bootstrap allocator that reads `DOMALLOC` on a domain's first call.

use super::*;

// The standard allocators, as statics: start-up and `setup_debug_hooks` on the standard
// configuration install them without allocating.

pub(super) static SYSTEM: System = System;
/// Where the standard pools' arenas come from: PEP 445's arena allocator, swappable at run time
/// ([`set_arena_allocator`]).
pub(super) static OS_ARENAS: OsArenas = OsArenas::new();
pub(super) static ARENAS: SwappableArenas = SwappableArenas::new(&OS_ARENAS);
/// The mem domain's blocks of up to 1 KiB: pymalloc's geometry with its 16-byte classes
/// continued to 1 KiB ([`PoolConfig::WIDE`], the one the pools' fast paths are compiled for), so
/// that one path serves every small request, whether its size is above 512 bytes or not.
pub const SMALL_POOL: PoolConfig = PoolConfig::WIDE;
/// The mem domain's blocks of 1 KiB to 8 KiB: 128-byte classes in 64 KiB pools (at most an
/// eighth lost to rounding, at 1,025 bytes; under 2% at the top).
pub const MEDIUM_POOL: PoolConfig = PoolConfig {
    spacing: 128,
    threshold: 8 << 10,
    pool_size: 64 << 10,
    arena_size: 4 << 20,
    ..PoolConfig::DEFAULT
};
/// The mem domain's blocks above 8 KiB up to 64 KiB: 1 KiB classes in 256 KiB pools (at most an
/// eighth lost to rounding).
pub const LARGE_POOL: PoolConfig = PoolConfig {
    spacing: 1 << 10,
    threshold: 64 << 10,
    pool_size: 256 << 10,
    arena_size: 16 << 20,
    ..PoolConfig::DEFAULT
};
/// The mem domain's blocks above 64 KiB: a span each, freed spans cached for reuse.
pub type MemSpans = Spans<&'static OsArenas>;
/// The mem domain's pool of blocks of 8 KiB to 64 KiB; above, [`MemSpans`].
pub type LargePool = PoolAllocator<&'static OsArenas, &'static MemSpans>;
/// The mem domain's pool of blocks of 1 KiB to 8 KiB; above, [`LargePool`].
pub type MediumPool = PoolAllocator<&'static OsArenas, &'static LargePool>;
/// The mem domain's pool: 16-byte classes up to 1 KiB ([`SMALL_POOL`]), then [`MediumPool`] (three pool
/// allocators composed by their large-block parameter, each with its per-thread heaps and
/// remote frees). The medium and large pools take their arenas from the OS directly: PEP 445's
/// arena allocator ([`set_arena_allocator`]) feeds the small-object pools, as CPython's does.
pub type MemPool = PoolAllocator<&'static SwappableArenas, &'static MediumPool>;
pub(super) static SPANS: MemSpans = Spans::with_provider(&OS_ARENAS);
pub(super) static LARGE: LargePool =
    PoolAllocator::with_valid_config(LARGE_POOL, &OS_ARENAS, &SPANS);
pub(super) static MEDIUM: MediumPool =
    PoolAllocator::with_valid_config(MEDIUM_POOL, &OS_ARENAS, &LARGE);
/// The mem domain's small-object pool takes its arenas from a reservation of its own by default
/// (no other allocator takes arenas there), so that the C library's `free` tells its blocks by
/// their address alone (see `FAST_FREE`); PEP 445's arena allocator replaces it as it replaces
/// `ARENAS` ([`set_arena_allocator`] sets both).
pub(super) static RESERVED: ReservedArenas = ReservedArenas::new();
pub(super) static POOL_ARENAS: SwappableArenas = SwappableArenas::new(&RESERVED);
pub(super) static POOL: MemPool =
    PoolAllocator::with_valid_config(SMALL_POOL, &POOL_ARENAS, &MEDIUM);

/// `PoolConfig::secure` over a configuration (`DOMALLOC=pool_secure`).
pub(super) const fn secure(c: PoolConfig) -> PoolConfig {
    PoolConfig { secure: true, ..c }
}
pub(super) static SECURE_LARGE: LargePool =
    PoolAllocator::with_valid_config(secure(LARGE_POOL), &OS_ARENAS, &SPANS);
pub(super) static SECURE_MEDIUM: MediumPool =
    PoolAllocator::with_valid_config(secure(MEDIUM_POOL), &OS_ARENAS, &SECURE_LARGE);
pub(super) static SECURE_POOL: MemPool =
    PoolAllocator::with_valid_config(secure(SMALL_POOL), &ARENAS, &SECURE_MEDIUM);
/// The object domain's pool: large requests to whatever the mem domain has now (PEP 445's
/// fallback of `PyObject_Malloc` on `PyMem_Malloc`), so a hook on mem sees them.
pub(super) type ObjectPool = PoolAllocator<&'static SwappableArenas, Domain>;
pub(super) static OBJECT_POOL: ObjectPool =
    PoolAllocator::with_parts(&ARENAS, Domain(DomainId::MEM));
pub(super) static SECURE_OBJECT_POOL: ObjectPool =
    PoolAllocator::with_valid_config(secure(PoolConfig::DEFAULT), &ARENAS, Domain(DomainId::MEM));
pub(super) static RAW_DEBUG: Guarded<System> = Guarded::new(System)
    .with_api(b'r')
    .with_ownership_tracking();
pub(super) static MEM_DEBUG_SYSTEM: Guarded<System> = Guarded::new(System)
    .with_api(b'm')
    .with_ownership_tracking();
pub(super) static OBJECT_DEBUG_SYSTEM: Guarded<System> = Guarded::new(System)
    .with_api(b'o')
    .with_ownership_tracking();
pub(super) static MEM_DEBUG_POOL: Guarded<&MemPool> =
    Guarded::new(&POOL).with_api(b'm').with_ownership_tracking();
pub(super) static OBJECT_DEBUG_POOL: Guarded<&ObjectPool> = Guarded::new(&OBJECT_POOL)
    .with_api(b'o')
    .with_ownership_tracking();

pub(super) const fn record(
    alloc: &'static DynAllocator,
    precise: bool,
    debug_hook: bool,
) -> Installed {
    Installed {
        alloc,
        previous: ptr::null_mut(),
        precise,
        debug_hook,
        // Records installed at start-up precede every allocation.
        guards_all: debug_hook,
        forwards: false,
        direct: true,
        heap: false,
        generation: 0,
        mark: AtomicU8::new(LIVE),
    }
}

/// The allocator of a removed domain ([`remove_domain`]), which a stale handle reaches: it makes
/// no block (every allocation fails), owns none, and a free through it does nothing (the domain
/// owned no live block when it was removed, so the pointer is none of its).
pub(super) struct Vacant;

pub(super) static VACANT: Vacant = Vacant;

// SAFETY: it returns no block at all.
unsafe impl DomainAllocator for Vacant {
    fn malloc(&self, _size: usize) -> Option<NonNull<u8>> {
        None
    }
    fn calloc(&self, _nelem: usize, _elsize: usize) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn realloc(&self, _ptr: *mut u8, _new_size: usize) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn free(&self, _ptr: *mut u8) {}
    fn malloc_aligned(&self, _layout: Layout) -> Option<NonNull<u8>> {
        None
    }
    fn calloc_aligned(&self, _layout: Layout) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn free_aligned(&self, _ptr: NonNull<u8>, _layout: Layout) {}
    unsafe fn realloc_aligned(
        &self,
        _ptr: NonNull<u8>,
        _layout: Layout,
        _new_size: usize,
    ) -> Option<NonNull<u8>> {
        None
    }
    fn owns(&self, _ptr: *const u8) -> Ownership {
        Ownership::NotOwned
    }
    fn name(&self) -> &str {
        "removed"
    }
}

/// The record of a removed domain's slot: of no generation, so that every id of the slot's
/// earlier domains sees a removed domain.
pub(super) static REC_VACANT: Installed = Installed {
    generation: NO_GENERATION,
    ..record(&VACANT, true, false)
};

pub(super) static REC_SYSTEM: Installed = record(&SYSTEM, false, false);
// The pool claims its blocks; its large ones are the C library's, which every allocator here
// hands to the C library (see the rule).
pub(super) static REC_POOL: Installed = record(&POOL, true, false);
pub(super) static REC_OBJECT_POOL: Installed = record(&OBJECT_POOL, true, false);
pub(super) static REC_SECURE_POOL: Installed = record(&SECURE_POOL, true, false);
pub(super) static REC_SECURE_OBJECT_POOL: Installed = record(&SECURE_OBJECT_POOL, true, false);
pub(super) static REC_RAW_DEBUG: Installed = record(&RAW_DEBUG, true, true);
pub(super) static REC_MEM_DEBUG_SYSTEM: Installed = record(&MEM_DEBUG_SYSTEM, true, true);
pub(super) static REC_OBJECT_DEBUG_SYSTEM: Installed = record(&OBJECT_DEBUG_SYSTEM, true, true);
// The debug hooks remember every block they make: they claim all of theirs.
pub(super) static REC_MEM_DEBUG_POOL: Installed = record(&MEM_DEBUG_POOL, true, true);
pub(super) static REC_OBJECT_DEBUG_POOL: Installed = record(&OBJECT_DEBUG_POOL, true, true);

// `DOMALLOC_GUARD_SAMPLE=N`: sampled guard pages over each preset's mem allocator (mapped at the
// first sample only). Their records keep the flags of the allocator they wrap.
static MEM_GUARD_POOL: GuardPages<&MemPool> = GuardPages::new(&POOL);
static MEM_GUARD_SECURE_POOL: GuardPages<&MemPool> = GuardPages::new(&SECURE_POOL);
static MEM_GUARD_SYSTEM: GuardPages<System> = GuardPages::new(System);
static MEM_GUARD_DEBUG_POOL: GuardPages<&Guarded<&MemPool>> = GuardPages::new(&MEM_DEBUG_POOL);
static MEM_GUARD_DEBUG_SYSTEM: GuardPages<&Guarded<System>> = GuardPages::new(&MEM_DEBUG_SYSTEM);
static REC_MEM_GUARD_POOL: Installed = record(&MEM_GUARD_POOL, true, false);
static REC_MEM_GUARD_SECURE_POOL: Installed = record(&MEM_GUARD_SECURE_POOL, true, false);
static REC_MEM_GUARD_SYSTEM: Installed = record(&MEM_GUARD_SYSTEM, false, false);
static REC_MEM_GUARD_DEBUG_POOL: Installed = record(&MEM_GUARD_DEBUG_POOL, true, true);
static REC_MEM_GUARD_DEBUG_SYSTEM: Installed = record(&MEM_GUARD_DEBUG_SYSTEM, true, true);

/// Before start-up, each standard domain holds a bootstrap allocator that configures the table
/// from the environment on its first call, then forwards to what it installed. After start-up no
/// call reaches it, so the fast path never checks whether the table is ready.
pub(super) struct Bootstrap(DomainId);

pub(super) static BOOT_RAW: Bootstrap = Bootstrap(DomainId::RAW);
pub(super) static BOOT_MEM: Bootstrap = Bootstrap(DomainId::MEM);
pub(super) static BOOT_OBJECT: Bootstrap = Bootstrap(DomainId::OBJECT);
pub(super) static REC_BOOT_RAW: Installed = record(&BOOT_RAW, false, false);
pub(super) static REC_BOOT_MEM: Installed = record(&BOOT_MEM, false, false);
pub(super) static REC_BOOT_OBJECT: Installed = record(&BOOT_OBJECT, false, false);

/// Configures the standard domains from `DOMALLOC`, once, without allocating.
/// The prefixes of this crate's functions, for tracers to skip (`alloc_core::plumbing`).
static FRAMES: alloc_core::plumbing::Prefixes = &["alloc_domains::"];

pub(super) fn start() {
    if START.load(Ordering::Acquire) == START_DONE {
        return;
    }
    alloc_core::plumbing::register(&FRAMES);
    if START
        .compare_exchange(
            START_UNDONE,
            START_RUNNING,
            Ordering::Acquire,
            Ordering::Acquire,
        )
        .is_err()
    {
        while START.load(Ordering::Acquire) != START_DONE {
            std::hint::spin_loop();
        }
        return;
    }
    // The grace periods' fence mode (a system call, no allocation).
    crate::os::membarrier::init();
    let value = read_env(c"DOMALLOC");
    let preset = match &value {
        None => Preset::default(),
        Some(v) => match Preset::from_bytes(v.bytes()).filter(|_| !v.cut) {
            Some(p) => p,
            None => {
                let strict = read_env(c"DOMALLOC_STRICT").is_some_and(|s| s.bytes() == b"1");
                report_unknown_preset(v, strict);
                Preset::default()
            }
        },
    };
    let (raw, mem, object): (&'static Installed, &'static Installed, &'static Installed) =
        match preset {
            Preset::Malloc => (&REC_SYSTEM, &REC_SYSTEM, &REC_SYSTEM),
            Preset::Pool => (&REC_SYSTEM, &REC_POOL, &REC_OBJECT_POOL),
            Preset::PoolSecure => (&REC_SYSTEM, &REC_SECURE_POOL, &REC_SECURE_OBJECT_POOL),
            Preset::Debug | Preset::PoolDebug => {
                (&REC_RAW_DEBUG, &REC_MEM_DEBUG_POOL, &REC_OBJECT_DEBUG_POOL)
            }
            Preset::MallocDebug => (
                &REC_RAW_DEBUG,
                &REC_MEM_DEBUG_SYSTEM,
                &REC_OBJECT_DEBUG_SYSTEM,
            ),
        };
    let mem = guard_pages_over(preset).unwrap_or(mem);
    // Before the records are published: a call that reaches them counts if the domain does.
    stats_from_env();
    PRESET.store(preset as u8, Ordering::Relaxed);
    for (slot, rec, name) in [
        (&TABLE[0], raw, "raw"),
        (&TABLE[1], mem, "mem"),
        (&TABLE[2], object, "object"),
    ] {
        slot.set_name(name);
        // Release: publishes the record (statics) and the name; paired with readers' Acquire.
        slot.current.store(rec_ptr(rec), Ordering::Release);
    }
    START.store(START_DONE, Ordering::Release);
}

/// The mem domain's record under `DOMALLOC_GUARD_SAMPLE=N` with N > 0: sampled guard pages
/// (`GuardPages`, one allocation in N) over the preset's mem allocator. `None` when the variable
/// is unset or 0; a value that is no number is reported as a bad `DOMALLOC` is (and ignored).
/// `DOMALLOC_GUARD_UNDERFLOW=1` chooses underflow mode.
pub(super) fn guard_pages_over(preset: Preset) -> Option<&'static Installed> {
    let value = read_env(c"DOMALLOC_GUARD_SAMPLE")?;
    let Some(n) = parse_guard_sample(value.bytes()).filter(|_| !value.cut) else {
        let strict = read_env(c"DOMALLOC_STRICT").is_some_and(|s| s.bytes() == b"1");
        report_bad_value(
            b"DOMALLOC_GUARD_SAMPLE",
            &value,
            b"a number (one allocation in N guarded; 0: off)",
            b"off",
            strict,
        );
        return None;
    };
    if n == 0 {
        return None;
    }
    let underflow = read_env(c"DOMALLOC_GUARD_UNDERFLOW").is_some_and(|v| v.bytes() == b"1");
    macro_rules! configured {
        ($guard:expr, $record:expr) => {{
            $guard.set_sample_rate(n);
            $guard.set_underflow(underflow);
            &$record
        }};
    }
    Some(match preset {
        Preset::Pool => configured!(MEM_GUARD_POOL, REC_MEM_GUARD_POOL),
        Preset::PoolSecure => configured!(MEM_GUARD_SECURE_POOL, REC_MEM_GUARD_SECURE_POOL),
        Preset::Malloc => configured!(MEM_GUARD_SYSTEM, REC_MEM_GUARD_SYSTEM),
        Preset::Debug | Preset::PoolDebug => {
            configured!(MEM_GUARD_DEBUG_POOL, REC_MEM_GUARD_DEBUG_POOL)
        }
        Preset::MallocDebug => configured!(MEM_GUARD_DEBUG_SYSTEM, REC_MEM_GUARD_DEBUG_SYSTEM),
    })
}

/// Reports a `DOMALLOC` value that names no preset (see [`report_bad_value`]).
pub(super) fn report_unknown_preset(value: &EnvValue, strict: bool) {
    report_bad_value(
        b"DOMALLOC",
        value,
        b"malloc, pool, debug, malloc_debug, pool_debug, pool_secure",
        b"the default, pool",
        strict,
    );
}

/// Reports a bad value of the environment variable `var`: one line on stderr, written at once,
/// with the value escaped and cut (see `EnvValue::write_escaped`); then, under
/// `DOMALLOC_STRICT=1`, ends the process with status 1 before anything else runs (as
/// `PYTHONMALLOC=bogus` does), and otherwise goes on with `fallback`. Allocates nothing: it runs
/// inside the first `malloc`.
pub(super) fn report_bad_value(
    var: &[u8],
    value: &EnvValue,
    accepted: &[u8],
    fallback: &[u8],
    strict: bool,
) {
    use std::io::Write as _;
    let mut line = [0u8; 512];
    let mut len = 0;
    let mut put = |b: &[u8]| {
        let n = b.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&b[..n]);
        len += n;
    };
    put(b"domalloc: unknown ");
    put(var);
    put(b" value \"");
    value.write_escaped(&mut put);
    put(b"\"; accepted values: ");
    put(accepted);
    if strict {
        put(b" (DOMALLOC_STRICT=1: stopping)\n");
    } else {
        put(b"; using ");
        put(fallback);
        put(b"\n");
    }
    let _ = std::io::stderr().write_all(&line[..len]);
    if strict {
        crate::os::exit_now(1);
    }
}

/// The preset the standard domains started with (after start-up).
pub fn preset() -> Preset {
    start();
    match PRESET.load(Ordering::Relaxed) {
        0 => Preset::Malloc,
        1 => Preset::Pool,
        2 => Preset::Debug,
        3 => Preset::MallocDebug,
        4 => Preset::PoolDebug,
        _ => Preset::PoolSecure,
    }
}

// SAFETY: every call starts the table and forwards to the allocator now installed in the domain,
// which upholds the contract; the bootstrap itself makes no block.
unsafe impl DomainAllocator for Bootstrap {
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        start();
        Domain(self.0).malloc(size)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).realloc(ptr, new_size) }
    }
    unsafe fn free(&self, ptr: *mut u8) {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).free(ptr) }
    }
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        start();
        Domain(self.0).calloc(nelem, elsize)
    }
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).free_sized(ptr, size) }
    }
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        start();
        Domain(self.0).malloc_aligned(layout)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        start();
        Domain(self.0).calloc_aligned(layout)
    }
    // Every entry point forwards, so that a block is always released through the family of the
    // allocator that made it (a provided one would answer with another family).
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).free_aligned(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).realloc_aligned(ptr, layout, new_size) }
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        start();
        // SAFETY: forwarded.
        unsafe { Domain(self.0).usable_size(ptr) }
    }
    fn name(&self) -> &str {
        "bootstrap"
    }
}
