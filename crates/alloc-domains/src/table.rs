//! The domain table: which allocator each domain uses now, the chain of those it used before, the
//! change callbacks, and the start-up configuration.
//!
//! # Reading is one atomic load
//!
//! Each domain's slot holds an `AtomicPtr` to an [`Installed`] record (the allocator, the record it
//! replaced, whether it can tell its own blocks). Allocation loads the record (Acquire, paired with
//! the Release that published it) and calls the allocator through its vtable: one atomic load and
//! one indirect call, plus, on the allocating side, a relaxed read of the slot's `used` flag (set
//! once, at the domain's first allocation; the replacement rule below needs it). Records are never
//! freed: a record may be read by a thread that loaded it just
//! before a replacement, and blocks its allocator made may outlive it.
//!
//! # Replacing is safe (the rule)
//!
//! A free must reach the allocator that made the block. Each record keeps the one it replaced, so a
//! domain has a chain of allocators, newest first. A free goes to the newest allocator that claims
//! the block: `owns == Owned`, and, since an allocator's memory may also hold the blocks of a
//! header decorator stacked on it (a debug hook's blocks start inside the allocator's), one of its
//! own blocks starts there (`DomainAllocator::starts_block`). Once the walk passes a debug hook
//! installed before the domain's first allocation, the hook made every block, so the block is
//! its (to free or to report). A pointer in some allocator's memory where no block of anyone's
//! starts (a hook's block freed already, a pointer inside a block) goes to the newest debug hook,
//! which reports it, or else to that allocator, whose own checks do. A block no allocator claims
//! goes to the newest allocator that cannot tell its blocks from others', or else to the newest
//! debug hook, or else to the oldest (the one the domain started with).
//!
//! **Forwarding hooks** ([`hook_forwarding`], PEP 445's hook pattern: a counting, tracing or
//! fault-injecting wrapper) make no blocks: they hand out those of the allocator below them. They
//! claim nothing, are accepted at any time, and a block of the allocator below them is freed
//! through the newest of them, so the hook sees every free while it is installed. [`set`] with the
//! allocator they were installed over takes them out of the chain again (the pattern's restore),
//! so hooking and unhooking does not lengthen the chain. A chain whose records all forward down to
//! the oldest routes every free to the current allocator with no lookup.
//!
//! For that to be right, an allocator that cannot claim its own blocks (it answers `Unknown`, like
//! the C library) may only become current in a domain that has not served an allocation yet, or
//! one whose chain holds it already (set back). And blocks nobody claims must mean the same to
//! every allocator they may reach: here they are the C library's (its own blocks, and the large
//! blocks a pool over it passes to it), and the C library, the pool and the decorators over them
//! all hand such a block to the C library's `free`. A pool built over another large-block
//! allocator, in a domain that also used the C library, would break that; do not mix them in one
//! domain.
//! [`set`] and [`hook`] check it: on a domain that has allocated, the new allocator must claim
//! its blocks, or the call is refused with [`DomainError::AmbiguousOwnership`]. Whether it does is
//! asked without calling it where it can say (it answers `NotOwned` for an address no allocator
//! made); only one that answers `Unknown` there (a pool whose large blocks are the C library's)
//! is asked for one probe block. The pool allocators claim their blocks; so do the debug
//! decorators over anything (each remembers the blocks it made, once asked: every allocator is
//! asked, with `DomainAllocator::track_ownership`, before it is installed, and one that made
//! blocks before it was asked counts as not claiming them); a decorator that returns its inner
//! blocks unchanged claims what its inner allocator claims. With a single allocator in the chain
//! (the usual case) a free is one atomic load and one indirect call, like an allocation.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

use alloc_arena::{
    DynArenaProvider, NO_KEY, OsArenas, PoolAllocator, PoolConfig, Spans, SwapError,
    SwappableArenas,
};
use alloc_core::{DomainAllocator, Ownership, System};
use alloc_debug::{GuardPages, Guarded};
use thiserror::Error;

use crate::config::{EnvValue, Preset, parse_guard_sample, read_env};

/// An allocator a domain can use: any `DomainAllocator` shared between threads for the rest of the
/// program.
pub type DynAllocator = dyn DomainAllocator + Send + Sync;

/// A change callback: called with the domain and its allocator at registration and after each
/// change.
pub type ChangeCallback = dyn Fn(DomainId, &'static DynAllocator) + Send + Sync;

/// The most domains a program can have (the three standard ones included).
pub const MAX_DOMAINS: usize = 16;
/// The most change callbacks registered at once.
pub const MAX_CALLBACKS: usize = 32;

/// A domain: an index into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(u8);

impl DomainId {
    /// The raw domain (`PyMem_RawMalloc`): usable from any thread at any time; the C library by
    /// default.
    pub const RAW: DomainId = DomainId(0);
    /// The mem domain (`PyMem_Malloc`): the pool allocator by default.
    pub const MEM: DomainId = DomainId(1);
    /// The object domain (`PyObject_Malloc`): the pool allocator by default.
    pub const OBJECT: DomainId = DomainId(2);

    /// The domain's index in the table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The id with index `i` (for C callers and tables that store ids as numbers); whether a
    /// domain has it is checked where it is used ([`DomainError::UnknownDomain`]).
    pub const fn from_index(i: u8) -> DomainId {
        DomainId(i)
    }

    /// The API id byte the debug hooks write for this domain: `'r'`, `'m'`, `'o'` for the standard
    /// domains (as CPython), then `'A'`, `'B'`, ... for user domains.
    pub const fn api_id(self) -> u8 {
        match self.0 {
            0 => b'r',
            1 => b'm',
            2 => b'o',
            n => b'A' + (n - 3),
        }
    }
}

/// What can go wrong with the table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DomainError {
    /// A domain needs a name.
    #[error("a domain name must not be empty")]
    EmptyName,
    /// Names are unique.
    #[error("a domain named {0:?} already exists")]
    DuplicateName(&'static str),
    /// The table is full.
    #[error("no room for another domain: the table holds {max}")]
    TableFull {
        /// [`MAX_DOMAINS`].
        max: usize,
    },
    /// No domain has this id.
    #[error("no domain has id {0}")]
    UnknownDomain(u8),
    /// The replacement could capture blocks of the allocators before it; see the module
    /// documentation of the rule.
    #[error(
        "domain {domain:?} has served allocations, and allocator {allocator:?} cannot tell its \
         blocks from those of the allocators before it; install it before the domain's first \
         allocation, or wrap an allocator that can"
    )]
    AmbiguousOwnership {
        /// The domain's name.
        domain: &'static str,
        /// The refused allocator's name.
        allocator: String,
    },
    /// The arena allocator could not be installed.
    #[error(transparent)]
    ArenaAllocator(#[from] SwapError),
    /// The callback table is full.
    #[error("no room for another change callback: at most {max}")]
    TooManyCallbacks {
        /// [`MAX_CALLBACKS`].
        max: usize,
    },
}

/// One allocator installed in a domain.
pub(crate) struct Installed {
    alloc: &'static DynAllocator,
    previous: Option<&'static Installed>,
    /// Whether the allocator claims the blocks it makes (`owns == Owned`).
    precise: bool,
    /// Whether this is a debug hook put by `setup_debug_hooks`.
    debug_hook: bool,
    /// A debug hook installed before the domain's first allocation: every block of the domain was
    /// made through it, so a block nobody claims is foreign, and goes to it to be reported.
    guards_all: bool,
    /// The allocator forwards every call to the one it replaced and hands out that one's blocks
    /// unchanged ([`hook_forwarding`]): it makes no block of its own, claims none, and a block of
    /// the allocator below it is freed through it (so the hook sees the free).
    forwards: bool,
    /// Every record of the chain from this one down forwards to the oldest (or this is the
    /// oldest): the current allocator frees every block, with no lookup.
    direct: bool,
}

struct Slot {
    current: AtomicPtr<Installed>,
    used: AtomicBool,
    name: AtomicPtr<u8>,
    name_len: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            current: AtomicPtr::new(ptr::null_mut()),
            used: AtomicBool::new(false),
            name: AtomicPtr::new(ptr::null_mut()),
            name_len: AtomicU64::new(0),
        }
    }

    fn name(&self) -> &'static str {
        let p = self.name.load(Ordering::Acquire);
        if p.is_null() {
            return "";
        }
        let len = self.name_len.load(Ordering::Relaxed) as usize;
        // SAFETY: name and length were stored together from a `&'static str` (length first, then
        // the pointer with Release), and never change afterwards.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(p, len)) }
    }

    fn set_name(&self, name: &'static str) {
        self.name_len.store(name.len() as u64, Ordering::Relaxed);
        self.name.store(name.as_ptr().cast_mut(), Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// The standard allocators, as statics: start-up and `setup_debug_hooks` on the standard
// configuration install them without allocating.

static SYSTEM: System = System;
/// Where the standard pools' arenas come from: PEP 445's arena allocator, swappable at run time
/// ([`set_arena_allocator`]).
static OS_ARENAS: OsArenas = OsArenas::new();
static ARENAS: SwappableArenas = SwappableArenas::new(&OS_ARENAS);
/// The mem domain's blocks of 513 bytes to 8 KiB: 128-byte classes in 64 KiB pools (at most a
/// fifth lost to rounding, at 513 bytes; under 2% at the top).
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
/// The mem domain's pool of blocks of 513 bytes to 8 KiB; above, [`LargePool`].
pub type MediumPool = PoolAllocator<&'static OsArenas, &'static LargePool>;
/// The mem domain's pool: pymalloc's classes up to 512 bytes, then [`MediumPool`] (three pool
/// allocators composed by their large-block parameter, each with its per-thread heaps and
/// remote frees). The medium and large pools take their arenas from the OS directly: PEP 445's
/// arena allocator ([`set_arena_allocator`]) feeds the small-object pools, as CPython's does.
pub type MemPool = PoolAllocator<&'static SwappableArenas, &'static MediumPool>;
static SPANS: MemSpans = Spans::with_provider(&OS_ARENAS);
static LARGE: LargePool = PoolAllocator::with_valid_config(LARGE_POOL, &OS_ARENAS, &SPANS);
static MEDIUM: MediumPool = PoolAllocator::with_valid_config(MEDIUM_POOL, &OS_ARENAS, &LARGE);
static POOL: MemPool = PoolAllocator::with_parts(&ARENAS, &MEDIUM);

/// `PoolConfig::secure` over a configuration (`DOMALLOC=pool_secure`).
const fn secure(c: PoolConfig) -> PoolConfig {
    PoolConfig { secure: true, ..c }
}
static SECURE_LARGE: LargePool =
    PoolAllocator::with_valid_config(secure(LARGE_POOL), &OS_ARENAS, &SPANS);
static SECURE_MEDIUM: MediumPool =
    PoolAllocator::with_valid_config(secure(MEDIUM_POOL), &OS_ARENAS, &SECURE_LARGE);
static SECURE_POOL: MemPool =
    PoolAllocator::with_valid_config(secure(PoolConfig::DEFAULT), &ARENAS, &SECURE_MEDIUM);
/// The object domain's pool: large requests to whatever the mem domain has now (PEP 445's
/// fallback of `PyObject_Malloc` on `PyMem_Malloc`), so a hook on mem sees them.
type ObjectPool = PoolAllocator<&'static SwappableArenas, Domain>;
static OBJECT_POOL: ObjectPool = PoolAllocator::with_parts(&ARENAS, Domain(DomainId::MEM));
static SECURE_OBJECT_POOL: ObjectPool =
    PoolAllocator::with_valid_config(secure(PoolConfig::DEFAULT), &ARENAS, Domain(DomainId::MEM));
static RAW_DEBUG: Guarded<System> = Guarded::new(System)
    .with_api(b'r')
    .with_ownership_tracking();
static MEM_DEBUG_SYSTEM: Guarded<System> = Guarded::new(System)
    .with_api(b'm')
    .with_ownership_tracking();
static OBJECT_DEBUG_SYSTEM: Guarded<System> = Guarded::new(System)
    .with_api(b'o')
    .with_ownership_tracking();
static MEM_DEBUG_POOL: Guarded<&MemPool> =
    Guarded::new(&POOL).with_api(b'm').with_ownership_tracking();
static OBJECT_DEBUG_POOL: Guarded<&ObjectPool> = Guarded::new(&OBJECT_POOL)
    .with_api(b'o')
    .with_ownership_tracking();

const fn record(alloc: &'static DynAllocator, precise: bool, debug_hook: bool) -> Installed {
    Installed {
        alloc,
        previous: None,
        precise,
        debug_hook,
        // Records installed at start-up precede every allocation.
        guards_all: debug_hook,
        forwards: false,
        direct: true,
    }
}

static REC_SYSTEM: Installed = record(&SYSTEM, false, false);
// The pool claims its blocks; its large ones are the C library's, which every allocator here
// hands to the C library (see the rule).
static REC_POOL: Installed = record(&POOL, true, false);
static REC_OBJECT_POOL: Installed = record(&OBJECT_POOL, true, false);
static REC_SECURE_POOL: Installed = record(&SECURE_POOL, true, false);
static REC_SECURE_OBJECT_POOL: Installed = record(&SECURE_OBJECT_POOL, true, false);
static REC_RAW_DEBUG: Installed = record(&RAW_DEBUG, true, true);
static REC_MEM_DEBUG_SYSTEM: Installed = record(&MEM_DEBUG_SYSTEM, true, true);
static REC_OBJECT_DEBUG_SYSTEM: Installed = record(&OBJECT_DEBUG_SYSTEM, true, true);
// The debug hooks remember every block they make: they claim all of theirs.
static REC_MEM_DEBUG_POOL: Installed = record(&MEM_DEBUG_POOL, true, true);
static REC_OBJECT_DEBUG_POOL: Installed = record(&OBJECT_DEBUG_POOL, true, true);

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
struct Bootstrap(DomainId);

static BOOT_RAW: Bootstrap = Bootstrap(DomainId::RAW);
static BOOT_MEM: Bootstrap = Bootstrap(DomainId::MEM);
static BOOT_OBJECT: Bootstrap = Bootstrap(DomainId::OBJECT);
static REC_BOOT_RAW: Installed = record(&BOOT_RAW, false, false);
static REC_BOOT_MEM: Installed = record(&BOOT_MEM, false, false);
static REC_BOOT_OBJECT: Installed = record(&BOOT_OBJECT, false, false);

const fn rec_ptr(r: &'static Installed) -> *mut Installed {
    ptr::from_ref(r).cast_mut()
}

static TABLE: [Slot; MAX_DOMAINS] = {
    let mut t = [const { Slot::new() }; MAX_DOMAINS];
    t[0].current = AtomicPtr::new(rec_ptr(&REC_BOOT_RAW));
    t[1].current = AtomicPtr::new(rec_ptr(&REC_BOOT_MEM));
    t[2].current = AtomicPtr::new(rec_ptr(&REC_BOOT_OBJECT));
    t
};

const START_UNDONE: u8 = 0;
const START_RUNNING: u8 = 1;
const START_DONE: u8 = 2;
static START: AtomicU8 = AtomicU8::new(START_UNDONE);

/// The standard pool's fast-path key (`PoolAllocator::fast_key`) while the mem domain's allocator
/// is that pool (`REC_POOL`, with nothing before it) and the domain has served an allocation;
/// `NO_KEY` otherwise. While it holds the key, every call on the mem domain goes to `POOL`
/// directly, with no indirect call, and the C library's `malloc` and `free` take the pool's
/// fast paths with it.
///
/// It is set only under the writer lock, after checking both facts, and cleared under the same
/// lock before any other record is stored in the slot, so it never holds the key while another
/// record is current. A thread that read the key just before a replacement calls `POOL`, which is
/// what a thread that loaded the old record just before the replacement does too.
static FAST_MEM: AtomicU32 = AtomicU32::new(NO_KEY);
static PRESET: AtomicU8 = AtomicU8::new(0);

/// Configures the standard domains from `DOMALLOC`, once, without allocating.
fn start() {
    if START.load(Ordering::Acquire) == START_DONE {
        return;
    }
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
fn guard_pages_over(preset: Preset) -> Option<&'static Installed> {
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
fn report_unknown_preset(value: &EnvValue, strict: bool) {
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
fn report_bad_value(var: &[u8], value: &EnvValue, accepted: &[u8], fallback: &[u8], strict: bool) {
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
        // `_exit`, not `exit`: no atexit handler may run (one would allocate, and come back into
        // the start-up this thread is in the middle of).
        #[cfg(unix)]
        // SAFETY: ends the process; nothing of it is used afterwards.
        unsafe {
            libc::_exit(1)
        };
        #[cfg(not(unix))]
        std::process::abort();
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

// ---------------------------------------------------------------------------------------------
// Reading.

fn slot(id: DomainId) -> Result<&'static Slot, DomainError> {
    let s = TABLE
        .get(id.index())
        .ok_or(DomainError::UnknownDomain(id.0))?;
    if s.current.load(Ordering::Acquire).is_null() {
        return Err(DomainError::UnknownDomain(id.0));
    }
    Ok(s)
}

#[inline]
fn current(id: DomainId) -> &'static Installed {
    // Acquire: pairs with the Release that published the record.
    let p = TABLE[id.index()].current.load(Ordering::Acquire);
    debug_assert!(!p.is_null(), "domain {} is not in the table", id.0);
    // SAFETY: installed records are statics or leaked boxes, never freed; the slot of an existing
    // domain never holds null (handles are only made for existing domains).
    unsafe { &*p }
}

/// The allocator that made `ptr`, by the rule in the module documentation.
#[inline]
fn owner_of(id: DomainId, ptr: *const u8) -> &'static DynAllocator {
    let rec = current(id);
    if rec.direct {
        rec.alloc
    } else {
        route(rec, ptr)
    }
}

#[cold]
fn route(newest: &'static Installed, ptr: *const u8) -> &'static DynAllocator {
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
fn chain_answer(id: DomainId, ask: impl Fn(&DynAllocator) -> Ownership) -> Ownership {
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

// ---------------------------------------------------------------------------------------------
// Writing: one writer at a time; readers never wait.

struct Callbacks {
    slots: [Option<(u64, DomainId, &'static ChangeCallback)>; MAX_CALLBACKS],
    next_id: u64,
}

struct Writer {
    callbacks: Callbacks,
}

static WRITER: alloc_core::lock::Lock<Writer> = alloc_core::lock::Lock::new(Writer {
    callbacks: Callbacks {
        slots: [None; MAX_CALLBACKS],
        next_id: 1,
    },
});

// ---------------------------------------------------------------------------------------------
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
    Ok(ARENAS.set(provider)?)
}

/// Statistics of the standard pools (mem's and object's together), as the calling thread can see
/// them: its own heaps and every heap no thread owns (see `PoolAllocator::stats`).
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

// ---------------------------------------------------------------------------------------------
// Fork: take every lock an allocation can hold, so that the child does not inherit one held by a
// thread it does not have.

/// Calls `f` on every allocator installed in any domain, current or kept for its blocks, newest
/// first; an allocator installed twice is reached twice (fork handling is idempotent for that).
fn for_each_installed(mut f: impl FnMut(&'static DynAllocator)) {
    for s in &TABLE {
        // Acquire: pairs with the Release that published the record.
        let p = s.current.load(Ordering::Acquire);
        // SAFETY: installed records are statics or leaked boxes, never freed.
        let mut r = unsafe { p.as_ref() };
        while let Some(rec) = r {
            f(rec.alloc);
            r = rec.previous;
        }
    }
}

/// Fork support for a process whose allocations go through the domains: call it in the parent
/// just before `fork()` (a `pthread_atfork` prepare handler). It takes the table's writer lock,
/// then asks every installed allocator to take its own locks
/// ([`DomainAllocator::prepare_fork`](alloc_core::DomainAllocator::prepare_fork)), so that the
/// child does not inherit a lock held by a thread that does not exist there.
pub fn prepare_fork() {
    WRITER.acquire_for_fork();
    for_each_installed(|a| a.prepare_fork());
    // Last: the standard pools' arena source, a leaf lock their arena acquisitions hold.
    ARENAS.prepare_fork();
}

/// Fork support, in the parent after `fork()`: releases what [`prepare_fork`] took.
///
/// # Safety
/// Only on the thread that called [`prepare_fork`], after it.
pub unsafe fn after_fork_parent() {
    // SAFETY: taken by `prepare_fork` on this thread (the caller's guarantee).
    unsafe { ARENAS.after_fork_parent() };
    // SAFETY: the caller's guarantee, which is each allocator's.
    for_each_installed(|a| unsafe { a.after_fork_parent() });
    // SAFETY: `prepare_fork` took it on this thread.
    unsafe { WRITER.release_after_fork() };
}

/// Fork support, in the child after `fork()`: releases what [`prepare_fork`] took in the parent
/// and leaves every domain usable by the child's only thread.
///
/// # Safety
/// Only in the child of a `fork()` whose parent called [`prepare_fork`] just before, on the
/// thread the fork returned in.
pub unsafe fn after_fork_child() {
    // SAFETY: taken by the parent's `prepare_fork` (the caller's guarantee).
    unsafe { ARENAS.after_fork_child() };
    // SAFETY: the caller's guarantee, which is each allocator's.
    for_each_installed(|a| unsafe { a.after_fork_child() });
    // SAFETY: `prepare_fork` took it in the parent, on the thread that continues here.
    unsafe { WRITER.release_after_fork() };
}

fn leak(rec: Installed) -> &'static Installed {
    Box::leak(Box::new(rec))
}

/// An address no allocator made a block at (a static of this crate), for [`claims_its_blocks`].
static NOBODYS: u8 = 0;

/// Whether `alloc` claims the blocks it makes: asked to track its blocks (a header decorator
/// remembers them only when asked; an allocator that cannot claim blocks, a C allocator, says no),
/// it must cover every live one; and it must tell a pointer it never made (`NotOwned` for an
/// address of this crate's statics, which by the contract means it never disowns one of its
/// own), asked without calling any of its allocation functions. Only an allocator that cannot
/// tell there (`Unknown`: a pool whose large blocks are the C library's, an allocator that leaves
/// `owns` to the provided answer) is asked for a probe block, to see whether it claims it. Hooks
/// that forward ([`hook_forwarding`]) are never asked anything.
fn claims_its_blocks(alloc: &DynAllocator) -> bool {
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
fn in_chain(rec: &'static Installed, alloc: &DynAllocator) -> bool {
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
static RETIRED: alloc_core::lock::Lock<Vec<&'static Installed>> =
    alloc_core::lock::Lock::new(Vec::new());

/// Keeps the records from `top` down to (not including) `to` in [`RETIRED`].
fn retire_above(top: &'static Installed, to: &'static Installed) {
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
fn under_forwarders(rec: &'static Installed, alloc: &DynAllocator) -> Option<&'static Installed> {
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
struct Layer {
    alloc: &'static DynAllocator,
    precise: bool,
    debug_hook: bool,
    forwards: bool,
}

/// Installs `new` over the current record of `id` under the writer lock, checking the
/// replacement rule; returns the callbacks to call.
fn install(
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
fn publish(w: &mut Writer, id: DomainId, rec: &'static Installed) -> Vec<&'static ChangeCallback> {
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

fn notify(id: DomainId, callbacks: Vec<&'static ChangeCallback>) {
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
fn wrap_current(
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

// ---------------------------------------------------------------------------------------------
// The handle.

/// A domain as a [`DomainAllocator`], for generic code and for `#[global_allocator]` (through
/// [`GlobalFront`](crate::GlobalFront)): every call goes to the allocator the domain uses at that
/// moment, frees to the allocator that made the block.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_domains::MEM;
///
/// let p = MEM.malloc(64).unwrap(); // PyMem_Malloc
/// // SAFETY: a live block of the mem domain, freed once.
/// unsafe { MEM.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Domain(pub(crate) DomainId);

impl Domain {
    /// The handle of an existing domain.
    pub fn new(id: DomainId) -> Result<Domain, DomainError> {
        start();
        slot(id)?;
        Ok(Domain(id))
    }

    /// The domain's id.
    pub const fn id(self) -> DomainId {
        self.0
    }

    #[inline]
    fn alloc_side(self) -> &'static DynAllocator {
        mark_used(self.0);
        let rec = current(self.0);
        if self.0 == DomainId::MEM && ptr::eq(rec, &REC_POOL) {
            enable_fast_mem();
        }
        rec.alloc
    }

    /// `malloc_aligned` through the domain's current allocator (out of line: the common case is
    /// the standard pool, inlined into the caller).
    #[inline(never)]
    fn malloc_aligned_slow(self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_side().malloc_aligned(layout)
    }

    /// `free_aligned` through the allocator that made the block (out of line).
    ///
    /// # Safety
    /// As for `DomainAllocator::free_aligned`.
    #[inline(never)]
    unsafe fn free_aligned_slow(self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's guarantee; the block goes to the allocator that made it.
        unsafe { owner_of(self.0, ptr.as_ptr()).free_aligned(ptr, layout) }
    }

    /// Whether this is the mem domain on its standard pool (see `FAST_MEM`). Relaxed: `POOL` is
    /// a static, so there is nothing to acquire.
    #[inline(always)]
    fn fast_mem(self) -> bool {
        self.fast_key() != NO_KEY
    }

    /// The standard pool's fast-path key if this is the mem domain on it (see `FAST_MEM`),
    /// [`NO_KEY`] otherwise.
    #[inline(always)]
    fn fast_key(self) -> u32 {
        if self.0 == DomainId::MEM {
            FAST_MEM.load(Ordering::Relaxed)
        } else {
            NO_KEY
        }
    }
}

/// The mem domain's standard pool and the key of its fast paths (`PoolAllocator::malloc_fast`,
/// `free_fast`): the pool's key while it is the domain's only allocator and has served it,
/// [`NO_KEY`] otherwise (after any `set` or `hook` of the mem domain, under another preset, and
/// before the domain's first allocation), which sends every fast call the long way. The C
/// library's `malloc` and `free` start here.
///
/// ```
/// use alloc_core::DomainAllocator;
/// use alloc_domains::{MEM, mem_fast_path};
///
/// let p = MEM.malloc(64).unwrap();
/// let (pool, key) = mem_fast_path();
/// // SAFETY: the key is the pool's (or `NO_KEY`); `p` is a live block of the mem domain, freed
/// // once: by the pool's fast path, or else by the domain.
/// unsafe {
///     if !pool.free_fast(p.as_ptr(), key) {
///         MEM.free(p.as_ptr());
///     }
/// }
/// ```
#[inline(always)]
pub fn mem_fast_path() -> (&'static MemPool, u32) {
    (&POOL, FAST_MEM.load(Ordering::Relaxed))
}

/// The C library's long way into the mem domain's standard pools, while they are its allocator
/// ([`mem_fast_path`] gives a key): `free` with the hardened default's whole check in whichever
/// of the three pools holds `ptr`, glibc's `free` for a pointer elsewhere.
///
/// # Safety
/// The mem domain's fast path is on; `ptr` is null, a live block of the mem domain, or a block
/// of glibc's; a bad pointer into the pools is caught (reported, then abort), not undefined.
pub unsafe fn free_standard_checked(ptr: *mut u8) {
    // SAFETY: the caller's guarantee; each pool is handed only a pointer in its own arenas, and
    // the spans take their own and hand anything else to glibc.
    unsafe {
        let done = match standard_owner(ptr) {
            Standard::Small => POOL.free_checked(ptr),
            Standard::Medium => MEDIUM.free_fast_in_arenas(ptr) || MEDIUM.free_checked(ptr),
            Standard::Large => LARGE.free_fast_in_arenas(ptr) || LARGE.free_checked(ptr),
            Standard::Other => alloc_arena::report_other_allocator("free", ptr),
            Standard::Span | Standard::Outside => false,
        };
        if !done {
            SPANS.free(ptr);
        }
    }
}

/// The C library's long way into the mem domain's standard pools for a request above the
/// small pool's 512 bytes, while they are its allocator ([`mem_fast_path`] gives a key): the
/// pool of its size directly, not through each pool's large-block routing.
pub fn malloc_standard_large(size: usize) -> Option<NonNull<u8>> {
    if size <= MEDIUM_POOL.threshold {
        MEDIUM.malloc(size)
    } else if size <= LARGE_POOL.threshold {
        LARGE.malloc(size)
    } else {
        SPANS.malloc(size)
    }
}

/// The hardened default's whole check of a pointer the C library is handed (`realloc`,
/// `malloc_usable_size`: `op`) in the mem domain's standard pools and spans; returns whether the
/// pointer lies there (one registry lookup routes it), false for a pointer elsewhere (glibc's,
/// or another domain's). See [`free_standard_checked`].
pub fn check_standard_live(ptr: *const u8, op: &str) -> bool {
    match standard_owner(ptr) {
        Standard::Small => POOL.check_live(ptr, op),
        Standard::Medium => MEDIUM.check_live(ptr, op),
        Standard::Large => LARGE.check_live(ptr, op),
        Standard::Span => true,
        Standard::Other => alloc_arena::report_other_allocator(op, ptr),
        Standard::Outside => false,
    }
}

/// Turns the mem domain's fast path on now if the domain uses its standard pool alone (marking
/// the domain as having allocated, as its first allocation would): for a caller about to allocate
/// through the pool directly before any allocation went through the domain (the C library's
/// aligned entry points). Returns the key, [`NO_KEY`] if the domain has another allocator.
#[cold]
pub fn enable_mem_fast_path() -> u32 {
    start();
    if ptr::eq(current(DomainId::MEM), &REC_POOL) {
        mark_used(DomainId::MEM);
        enable_fast_mem();
    }
    FAST_MEM.load(Ordering::Relaxed)
}

/// Records that domain `id` has served an allocation (the replacement rule reads it).
#[inline]
fn mark_used(id: DomainId) {
    let s = &TABLE[id.index()];
    if !s.used.load(Ordering::Relaxed) {
        s.used.store(true, Ordering::Release);
    }
}

/// Which of the mem domain's standard allocators holds a pointer, by one registry lookup.
enum Standard {
    Small,
    Medium,
    Large,
    Span,
    /// Another allocator's arena (the object domain's pool, a user domain's).
    Other,
    /// No arena of domalloc's: glibc's.
    Outside,
}

fn standard_owner(ptr: *const u8) -> Standard {
    match alloc_arena::arena_owner(ptr) {
        0 => Standard::Outside,
        o if o == POOL.registry_id() => Standard::Small,
        o if o == MEDIUM.registry_id() => Standard::Medium,
        o if o == LARGE.registry_id() => Standard::Large,
        o if o == SPANS.registry_id() => Standard::Span,
        _ => Standard::Other,
    }
}

/// Sets `FAST_MEM` if the mem domain has served allocations through the standard pool and still
/// uses it. A writer holding the lock (it may allocate through this very domain) means "not now":
/// the next allocation tries again.
#[cold]
#[inline(never)]
fn enable_fast_mem() {
    if let Some(_w) = WRITER.try_lock()
        && ptr::eq(current(DomainId::MEM), &REC_POOL)
        && TABLE[DomainId::MEM.index()].used.load(Ordering::Relaxed)
    {
        FAST_MEM.store(POOL.fast_key(), Ordering::Relaxed);
    }
}

/// The raw domain (`PyMem_RawMalloc` and friends).
pub const RAW: Domain = Domain(DomainId::RAW);
/// The mem domain (`PyMem_Malloc` and friends).
pub const MEM: Domain = Domain(DomainId::MEM);
/// The object domain (`PyObject_Malloc` and friends).
pub const OBJECT: Domain = Domain(DomainId::OBJECT);

// SAFETY: every block comes from an allocator installed in the domain (each upholds the contract);
// every free, realloc and size query goes to the allocator that made the block, by the rule in the
// module documentation.
unsafe impl DomainAllocator for Domain {
    #[inline]
    fn malloc(&self, size: usize) -> Option<NonNull<u8>> {
        let key = self.fast_key();
        if key != NO_KEY {
            // SAFETY: the key `FAST_MEM` holds is the pool's fast key.
            if let Some(p) = unsafe { POOL.malloc_fast(size, key) } {
                return Some(p);
            }
            return POOL.malloc(size);
        }
        self.alloc_side().malloc(size)
    }
    #[inline]
    fn calloc(&self, nelem: usize, elsize: usize) -> Option<NonNull<u8>> {
        if self.fast_mem() {
            return POOL.calloc(nelem, elsize);
        }
        self.alloc_side().calloc(nelem, elsize)
    }
    unsafe fn realloc(&self, ptr: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.malloc(new_size);
        }
        if self.fast_mem() {
            // SAFETY: the caller's guarantee; with `FAST_MEM` set, the pool made every block of
            // the domain (it is the domain's only allocator).
            return unsafe { POOL.realloc(ptr, new_size) };
        }
        // SAFETY: the caller's guarantee; the block goes to the allocator that made it.
        unsafe { owner_of(self.0, ptr).realloc(ptr, new_size) }
    }
    #[inline]
    unsafe fn free(&self, ptr: *mut u8) {
        if self.fast_mem() {
            // SAFETY: as for realloc (the pool's free takes null).
            return unsafe { POOL.free(ptr) };
        }
        if ptr.is_null() {
            return;
        }
        // SAFETY: as for realloc.
        unsafe { owner_of(self.0, ptr).free(ptr) }
    }
    #[inline]
    unsafe fn free_sized(&self, ptr: NonNull<u8>, size: usize) {
        if self.fast_mem() {
            // SAFETY: as for realloc.
            return unsafe { POOL.free_sized(ptr, size) };
        }
        // SAFETY: as for realloc.
        unsafe { owner_of(self.0, ptr.as_ptr()).free_sized(ptr, size) }
    }
    #[inline(always)]
    fn malloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        let key = self.fast_key();
        if key != NO_KEY {
            // The pool's own fast path first (the key is its), as the C library's `malloc` does.
            if layout.align() <= alloc_core::MIN_ALIGN
                // SAFETY: the key `FAST_MEM` holds is the pool's fast key.
                && let Some(p) = unsafe { POOL.malloc_fast(layout.size(), key) }
            {
                return Some(p);
            }
            return POOL.malloc_aligned(layout);
        }
        self.malloc_aligned_slow(layout)
    }
    fn calloc_aligned(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_side().calloc_aligned(layout)
    }
    #[inline(always)]
    unsafe fn free_aligned(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.fast_mem() {
            // SAFETY: as for realloc. (The sized free reads no registry: cheaper here than the
            // pool's `free_fast`, which the C library needs for unsized frees.)
            return unsafe { POOL.free_aligned(ptr, layout) };
        }
        // SAFETY: as for realloc.
        unsafe { self.free_aligned_slow(ptr, layout) }
    }
    unsafe fn realloc_aligned(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: as for realloc.
        unsafe { owner_of(self.0, ptr.as_ptr()).realloc_aligned(ptr, layout, new_size) }
    }
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        if self.fast_mem() {
            // SAFETY: as for realloc.
            return unsafe { POOL.usable_size(ptr) };
        }
        // SAFETY: as for realloc.
        unsafe { owner_of(self.0, ptr.as_ptr()).usable_size(ptr) }
    }
    fn owns(&self, ptr: *const u8) -> Ownership {
        chain_answer(self.0, |a| a.owns(ptr))
    }
    fn starts_block(&self, ptr: *const u8) -> Ownership {
        chain_answer(self.0, |a| a.starts_block(ptr))
    }
    fn name(&self) -> &str {
        TABLE[self.0.index()].name()
    }
    fn write_origin(&self, ptr: *const u8, out: &mut dyn core::fmt::Write) -> bool {
        owner_of(self.0, ptr).write_origin(ptr, out)
    }
    fn write_origin_aligned(
        &self,
        ptr: *const u8,
        layout: Layout,
        out: &mut dyn core::fmt::Write,
    ) -> bool {
        owner_of(self.0, ptr).write_origin_aligned(ptr, layout, out)
    }
}
