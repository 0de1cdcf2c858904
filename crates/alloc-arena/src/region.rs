//! [`RegionArenas`]: arenas carved from a memory region the caller hands over (a `static` buffer,
//! or memory an embedding application owns), with no OS calls: PEP 445's "Python running on
//! embedded devices with low memory".

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;

use alloc_core::{ArenaError, ArenaProvider};
use thiserror::Error;

use crate::sync::SpinLock;

/// The most arenas one region can hold (the free map's size): 4 GiB of 1 MiB arenas.
pub const MAX_REGION_ARENAS: usize = 4096;

/// Why a region cannot serve as arena memory: refused when the provider is made, never later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The region has no bytes.
    #[error("the region is empty (zero bytes)")]
    ZeroSized,
    /// The region does not start at a multiple of the arena size, which arenas must be aligned to
    /// (a pool finds a block's arena by masking its address).
    #[error(
        "the region at {addr:#x} is not aligned to the arena size ({arena_size} bytes); align the \
         buffer, e.g. with #[repr(align({arena_size}))]"
    )]
    Misaligned {
        /// The region's first address.
        addr: usize,
        /// The arena size it must be a multiple of.
        arena_size: usize,
    },
    /// The region cannot hold a single arena.
    #[error("the region of {len} bytes is too small for one arena of {arena_size} bytes")]
    TooSmall {
        /// The region's length in bytes.
        len: usize,
        /// The arena size.
        arena_size: usize,
    },
    /// The arena size is not a power of two of at least 4 KiB.
    #[error("the arena size {arena_size} is not a power of two of at least 4096 bytes")]
    BadArenaSize {
        /// The refused arena size.
        arena_size: usize,
    },
}

/// Which arenas of the region are taken: one bit per arena.
struct FreeMap {
    taken: [u64; MAX_REGION_ARENAS / 64],
    /// Arenas taken now.
    count: usize,
}

/// An [`ArenaProvider`] over a memory region handed over by the caller: the region is cut into
/// arenas of one size, aligned to it; `alloc` hands out a free one, `free` takes it back for reuse.
/// It makes no OS call and needs no `std`. Exhausting the region is an ordinary failure
/// ([`ArenaError::Exhausted`], so the pool's allocation returns null / `AllocError`), never a panic.
///
/// ```
/// use alloc_arena::{Heap, RegionArenas};
/// use alloc_core::{DomainAllocator, System};
///
/// #[repr(C, align(1048576))]
/// struct Region([u8; 4 << 20]);
/// static mut REGION: Region = Region([0; 4 << 20]);
///
/// // SAFETY: the static is handed over here once and never touched otherwise.
/// let region: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(REGION)).0 };
/// let arenas = RegionArenas::new(region).expect("a 4 MiB region of 1 MiB arenas");
/// assert_eq!(arenas.arenas_total(), 4);
/// let heap = Heap::with_parts(arenas, System);
/// let p = heap.malloc(100).unwrap();
/// assert!(heap.with_provider(|r| r.contains(p.as_ptr())));
/// // SAFETY: a live block, freed once.
/// unsafe { heap.free(p.as_ptr()) };
/// ```
pub struct RegionArenas {
    /// The region's first byte (a pointer, not an address, so that `from_buffer` is `const`).
    base: *mut u8,
    /// The region's length in bytes (its arenas: [`RegionArenas::placed`]).
    len: usize,
    arena_size: usize,
    map: SpinLock<FreeMap>,
}

// SAFETY: the region is this provider's alone (the constructors' contract), and every change to
// which arenas are handed out is made under the free map's lock; `base` is only an address to
// compute arenas from.
unsafe impl Send for RegionArenas {}
// SAFETY: as for `Send`: `&self` methods read fixed fields or take the lock.
unsafe impl Sync for RegionArenas {}

/// The default arena size (1 MiB), which a [`RegionBuffer`] is aligned to.
const BUFFER_ARENA: usize = 1 << 20;

/// A memory region for [`RegionArenas`] as a `static`: `N` bytes aligned to the default arena
/// size (1 MiB), zero-initialised (so it costs no space in a program's image), for
/// [`RegionArenas::from_buffer`] in a `const` context, so that a `#[global_allocator]` static
/// can be a pool over it.
///
/// ```
/// use alloc_arena::{RegionArenas, RegionBuffer};
///
/// static BUFFER: RegionBuffer<{ 2 << 20 }> = RegionBuffer::new();
/// // SAFETY: `BUFFER` is handed to this provider only.
/// static ARENAS: RegionArenas = unsafe { RegionArenas::from_buffer(&BUFFER) };
/// assert_eq!(ARENAS.arenas_total(), 2);
/// ```
#[repr(C, align(1048576))]
pub struct RegionBuffer<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the bytes are reached only through the one `RegionArenas` the buffer is handed to
// (`from_buffer`'s contract), which hands each arena to one owner at a time.
unsafe impl<const N: usize> Sync for RegionBuffer<N> {}

impl<const N: usize> RegionBuffer<N> {
    /// A zeroed buffer.
    pub const fn new() -> Self {
        RegionBuffer(UnsafeCell::new([0; N]))
    }
}

impl<const N: usize> Default for RegionBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl RegionArenas {
    /// Arenas of 1 MiB (the pool's default arena size) over `buffer`, in a `const` context: the
    /// buffer's type guarantees the alignment, and a buffer smaller than one arena is a
    /// compile-time error. Regions past `MAX_REGION_ARENAS` arenas are used up to that many.
    ///
    /// # Safety
    /// The buffer is handed to this provider alone: no other `RegionArenas` is made over it, and
    /// nothing else reads or writes it while the provider or an arena it handed out is alive.
    pub const unsafe fn from_buffer<const N: usize>(buffer: &'static RegionBuffer<N>) -> Self {
        const {
            assert!(
                N >= BUFFER_ARENA,
                "a RegionBuffer must hold one 1 MiB arena"
            )
        };
        RegionArenas {
            base: buffer.0.get().cast::<u8>(),
            len: N,
            arena_size: BUFFER_ARENA,
            map: SpinLock::new(FreeMap {
                taken: [0; MAX_REGION_ARENAS / 64],
                count: 0,
            }),
        }
    }

    /// Arenas of 1 MiB (the pool's default arena size) over `region`.
    pub fn new(region: &'static mut [u8]) -> Result<Self, RegionError> {
        Self::with_arena_size(region, 1 << 20)
    }

    /// Arenas of `arena_size` bytes over `region`.
    pub fn with_arena_size(
        region: &'static mut [u8],
        arena_size: usize,
    ) -> Result<Self, RegionError> {
        // SAFETY: a `'static mut` slice is ours for the rest of the program.
        unsafe { Self::from_raw(region.as_mut_ptr(), region.len(), arena_size) }
    }

    /// Arenas of `arena_size` bytes over the `len` bytes at `base`.
    ///
    /// # Safety
    /// The memory is valid for reads and writes, and used by nothing else, for as long as the
    /// provider or any arena it handed out is alive.
    pub unsafe fn from_raw(
        base: *mut u8,
        len: usize,
        arena_size: usize,
    ) -> Result<Self, RegionError> {
        if !arena_size.is_power_of_two() || arena_size < 4096 {
            return Err(RegionError::BadArenaSize { arena_size });
        }
        if len == 0 {
            return Err(RegionError::ZeroSized);
        }
        let addr = base as usize;
        if !addr.is_multiple_of(arena_size) {
            return Err(RegionError::Misaligned { addr, arena_size });
        }
        if len < arena_size {
            return Err(RegionError::TooSmall { len, arena_size });
        }
        Ok(RegionArenas {
            base,
            len,
            arena_size,
            map: SpinLock::new(FreeMap {
                taken: [0; MAX_REGION_ARENAS / 64],
                count: 0,
            }),
        })
    }

    /// How many arenas the region holds.
    pub fn arenas_total(&self) -> usize {
        self.placed().1
    }

    /// How many arenas are free now.
    pub fn arenas_free(&self) -> usize {
        self.placed().1 - self.map.with(|m| m.count)
    }

    /// Where the first arena lies, and how many arenas the region holds (at most
    /// `MAX_REGION_ARENAS`): its base, aligned as the constructors made sure, and as many as fit
    /// in its length. A [`RegionBuffer`]'s alignment is its type's, which a
    /// program's loader must honour; where one does not (valgrind loads a position-independent
    /// program at an address that keeps only page alignment, whatever its segments ask for), the
    /// first arena starts at the next multiple of the arena size in the buffer, and the arenas
    /// that fit from there (one fewer) are used: the pools' address arithmetic needs aligned
    /// arenas, and would otherwise take blocks for pointers inside others.
    #[inline]
    fn placed(&self) -> (usize, usize) {
        let base = self.base as usize;
        let start = (base + (self.arena_size - 1)) & !(self.arena_size - 1);
        let fit = self.len.saturating_sub(start - base) / self.arena_size;
        (start, fit.min(MAX_REGION_ARENAS))
    }

    /// The arena size.
    pub fn arena_size(&self) -> usize {
        self.arena_size
    }

    /// Whether `ptr` lies in the region's arenas.
    pub fn contains(&self, ptr: *const u8) -> bool {
        let (start, arenas) = self.placed();
        let a = ptr as usize;
        a >= start && a < start + arenas * self.arena_size
    }
}

// SAFETY: arenas are disjoint `arena_size` slices of the region at multiples of `arena_size` from
// an aligned start (the base, checked at construction, or the first multiple in the region where
// a loader did not align a buffer: `placed`), all inside the region; each is handed out at most
// once until freed (the free map, under its lock); the region outlives the provider (the
// constructors' contract).
unsafe impl ArenaProvider for RegionArenas {
    fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, ArenaError> {
        if layout.size() > self.arena_size || layout.align() > self.arena_size || layout.size() == 0
        {
            return Err(ArenaError::Unsupported {
                size: layout.size(),
                align: layout.align(),
                reason: "a region provider serves arenas of at most its arena size and alignment",
            });
        }
        let (start, arenas) = self.placed();
        let slot = self.map.with(|m| {
            let words = arenas.div_ceil(64);
            for (w, word) in m.taken[..words].iter_mut().enumerate() {
                if *word == u64::MAX {
                    continue;
                }
                let bit = (!*word).trailing_zeros() as usize;
                let i = w * 64 + bit;
                if i >= arenas {
                    break;
                }
                *word |= 1 << bit;
                m.count += 1;
                return Some(i);
            }
            None
        });
        match slot {
            Some(i) => {
                // SAFETY: arena `i < arenas` lies inside the region (`placed`), which is not
                // null; `start` is the base or a later address in the region.
                Ok(unsafe {
                    NonNull::new_unchecked(
                        self.base
                            .add(start - self.base as usize)
                            .add(i * self.arena_size),
                    )
                })
            }
            None => Err(ArenaError::Exhausted {
                size: layout.size(),
                available: 0,
            }),
        }
    }

    unsafe fn free(&self, ptr: NonNull<u8>, _layout: Layout) {
        let (start, arenas) = self.placed();
        let i = (ptr.as_ptr() as usize - start) / self.arena_size;
        debug_assert!(i < arenas, "an arena that is not the region's");
        self.map.with(|m| {
            let (w, bit) = (i / 64, i % 64);
            debug_assert!(m.taken[w] & (1 << bit) != 0, "an arena freed twice");
            m.taken[w] &= !(1 << bit);
            m.count -= 1;
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A buffer that a loader left unaligned (as valgrind places a position-independent program,
    /// keeping page alignment only): its arenas start at the first multiple of the arena size in
    /// it, one fewer fit, and each is aligned and inside the buffer. The buffer is heap memory
    /// (its address unknown to the compiler, unlike a typed static's alignment), shifted by a
    /// page from an aligned address.
    #[test]
    fn a_buffer_the_loader_left_unaligned_gives_aligned_arenas_inside_it() {
        const MIB: usize = 1 << 20;
        let mut mem = std::vec![0u8; 4 * MIB].into_boxed_slice();
        let to_aligned = (mem.as_ptr() as usize).next_multiple_of(MIB) - mem.as_ptr() as usize;
        let aligned = mem[to_aligned..].as_mut_ptr();
        // SAFETY: 3 MiB from an aligned address inside the 4 MiB, this test's alone, which
        // outlive the provider (declared after them, so dropped before).
        let mut r = unsafe { RegionArenas::from_raw(aligned, 3 * MIB, MIB) }.unwrap();
        assert_eq!(r.arenas_total(), 3);
        // Where a loader that kept page alignment only would have put the buffer's bytes.
        // SAFETY: a page into the 3 MiB.
        r.base = unsafe { r.base.add(4096) };
        r.len -= 4096;
        let (lo, hi) = (r.base as usize, r.base as usize + r.len);
        assert_eq!(r.arenas_total(), 2);
        let layout = Layout::from_size_align(MIB, MIB).unwrap();
        let (a, b) = (r.alloc(layout).unwrap(), r.alloc(layout).unwrap());
        assert!(r.alloc(layout).is_err(), "two arenas fit");
        for p in [a, b] {
            let at = p.as_ptr() as usize;
            assert_eq!(at % MIB, 0, "an arena at {at:#x} is not aligned");
            assert!(at >= lo && at + MIB <= hi, "an arena outside the buffer");
            assert!(r.contains(p.as_ptr()));
        }
        assert!(!r.contains(r.base));
        // SAFETY: arenas handed out above, each freed once.
        unsafe { r.free(a, layout) };
        assert_eq!(r.arenas_free(), 1);
        // SAFETY: as above.
        unsafe { r.free(b, layout) };
        assert_eq!(r.arenas_free(), 2);
    }
}
