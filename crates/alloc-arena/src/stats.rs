//! Statistics in the spirit of `sys._debugmallocstats()`: readable as a struct, printable as a table.

use core::fmt;

use crate::size_class::MAX_CLASSES;

/// One size class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class in bytes.
    pub block_size: usize,
    /// Pools holding blocks of this class (used or full).
    pub pools: usize,
    /// Blocks allocated.
    pub blocks_in_use: usize,
    /// Blocks free in those pools (freed, or never carved yet).
    pub blocks_free: usize,
}

/// A snapshot of a pool allocator's memory, computed on demand (nothing is counted on the fast
/// paths).
///
/// ```
/// use alloc_arena::PoolAllocator;
/// use alloc_core::DomainAllocator;
///
/// let pool = PoolAllocator::new();
/// let p = pool.malloc(40).unwrap();
/// let s = pool.stats();
/// assert_eq!(s.classes()[2].block_size, 48);
/// assert_eq!(s.classes()[2].blocks_in_use, 1);
/// assert_eq!(s.arenas, 1);
/// println!("{s}"); // the table
/// // SAFETY: `p` is live and freed once.
/// unsafe { pool.free(p.as_ptr()) };
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolStats {
    pub(crate) classes: [ClassStats; MAX_CLASSES],
    pub(crate) nclasses: usize,
    /// Pool size in bytes.
    pub pool_size: usize,
    /// Arena size in bytes.
    pub arena_size: usize,
    /// Arenas mapped now.
    pub arenas: usize,
    /// The most arenas mapped at once.
    pub arenas_highest: usize,
    /// Arenas mapped since the allocator was made.
    pub arenas_allocated: usize,
    /// Arenas returned to the provider since the allocator was made.
    pub arenas_released: usize,
    /// Empty pools (ready for any class), committed or not.
    pub pools_empty: usize,
    /// Empty pools whose pages are decommitted now.
    pub pools_decommitted: usize,
    /// Decommits done since the allocator was made.
    pub pools_decommitted_total: usize,
    /// Pools never used since their arena was mapped.
    pub pools_unused: usize,
    /// Empty pools the heaps keep committed on top of `PoolConfig::retain_bytes`, learned from
    /// pools given back at once and taken again within the purge delay (a program that frees a
    /// large structure and builds another); they still go back once they stay empty for the
    /// delay, and on `trim`.
    pub pools_learned: usize,
    /// Bytes mapped for arenas (`arenas * arena_size`).
    pub bytes_mapped: usize,
    /// Bytes of allocated blocks (block sizes, not requested sizes).
    pub bytes_in_use: usize,
    /// Bytes of free blocks inside pools that hold a class.
    pub bytes_free_in_pools: usize,
}

impl Default for PoolStats {
    fn default() -> Self {
        PoolStats {
            classes: [ClassStats::default(); MAX_CLASSES],
            nclasses: 0,
            pool_size: 0,
            arena_size: 0,
            arenas: 0,
            arenas_highest: 0,
            arenas_allocated: 0,
            arenas_released: 0,
            pools_empty: 0,
            pools_decommitted: 0,
            pools_decommitted_total: 0,
            pools_unused: 0,
            pools_learned: 0,
            bytes_mapped: 0,
            bytes_in_use: 0,
            bytes_free_in_pools: 0,
        }
    }
}

impl PoolStats {
    /// Statistics of nothing, for a pool allocator of geometry `g` (the sum of no heaps).
    #[cfg_attr(not(any(unix, windows)), allow(dead_code))] // `PoolAllocator`'s
    pub(crate) fn empty(g: &crate::size_class::Geometry) -> Self {
        let mut s = PoolStats {
            nclasses: g.nclasses,
            pool_size: g.pool_size,
            arena_size: g.arena_size,
            ..PoolStats::default()
        };
        for (c, cs) in s.classes.iter_mut().enumerate().take(g.nclasses) {
            cs.block_size = g.block_size(c);
        }
        s
    }

    /// Adds the statistics of another heap or pool whose classes are these as far as both go
    /// (the same spacing, of any threshold: pymalloc's 32 classes and `PoolConfig::WIDE`'s 64);
    /// the sum has the classes of the one with more. High-water marks add up too: the sum is an
    /// upper bound of the allocators' together.
    pub fn add(&mut self, o: &PoolStats) {
        let shared = self.nclasses.min(o.nclasses);
        debug_assert!(
            self.classes[..shared]
                .iter()
                .zip(&o.classes[..shared])
                .all(|(a, b)| a.block_size == b.block_size),
            "statistics of pools of other classes"
        );
        if o.nclasses > self.nclasses {
            for c in self.nclasses..o.nclasses {
                self.classes[c].block_size = o.classes[c].block_size;
            }
            self.nclasses = o.nclasses;
        }
        for (a, b) in self.classes.iter_mut().zip(&o.classes) {
            a.pools += b.pools;
            a.blocks_in_use += b.blocks_in_use;
            a.blocks_free += b.blocks_free;
        }
        self.arenas += o.arenas;
        self.arenas_highest += o.arenas_highest;
        self.arenas_allocated += o.arenas_allocated;
        self.arenas_released += o.arenas_released;
        self.pools_empty += o.pools_empty;
        self.pools_decommitted += o.pools_decommitted;
        self.pools_decommitted_total += o.pools_decommitted_total;
        self.pools_unused += o.pools_unused;
        self.pools_learned += o.pools_learned;
        self.bytes_mapped += o.bytes_mapped;
        self.bytes_in_use += o.bytes_in_use;
        self.bytes_free_in_pools += o.bytes_free_in_pools;
    }

    /// Per size class, smallest first.
    pub fn classes(&self) -> &[ClassStats] {
        &self.classes[..self.nclasses]
    }

    /// Blocks allocated, over all classes.
    pub fn blocks_in_use(&self) -> usize {
        self.classes().iter().map(|c| c.blocks_in_use).sum()
    }

    /// The share of mapped bytes not holding allocated blocks (0 when nothing is mapped): headers,
    /// free blocks, empty and never-used pools, and the tail of each pool that no block fills.
    pub fn fragmentation(&self) -> f64 {
        if self.bytes_mapped == 0 {
            return 0.0;
        }
        1.0 - self.bytes_in_use as f64 / self.bytes_mapped as f64
    }
}

impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Small block threshold = {}, in {} size classes.",
            self.classes().last().map_or(0, |c| c.block_size),
            self.nclasses
        )?;
        writeln!(f)?;
        writeln!(f, "class   size   num pools   blocks in use  avail blocks")?;
        writeln!(f, "-----   ----   ---------   -------------  ------------")?;
        for (i, c) in self.classes().iter().enumerate() {
            if c.pools == 0 {
                continue;
            }
            writeln!(
                f,
                "{i:5} {:6} {:11} {:15} {:13}",
                c.block_size, c.pools, c.blocks_in_use, c.blocks_free
            )?;
        }
        writeln!(f)?;
        let rows: [(&str, usize); 12] = [
            ("# arenas allocated total", self.arenas_allocated),
            ("# arenas reclaimed", self.arenas_released),
            ("# arenas highwater mark", self.arenas_highest),
            ("# arenas allocated current", self.arenas),
            ("bytes in allocated blocks", self.bytes_in_use),
            ("bytes in available blocks", self.bytes_free_in_pools),
            ("# empty pools", self.pools_empty),
            ("# empty pools decommitted", self.pools_decommitted),
            ("# pools never used", self.pools_unused),
            ("# empty pools kept as learned", self.pools_learned),
            ("bytes mapped for arenas", self.bytes_mapped),
            ("pool size / arena size", self.pool_size),
        ];
        for (name, value) in rows {
            if name.starts_with("pool size") {
                writeln!(f, "{name:<36} = {} / {}", value, self.arena_size)?;
            } else {
                writeln!(f, "{name:<36} = {value:>15}")?;
            }
        }
        write!(
            f,
            "{:<36} = {:>14.2}%",
            "fragmentation",
            self.fragmentation() * 100.0
        )
    }
}
