//! Size classes and the pool's tunables: pymalloc's constants as parameters.
//!
//! A request of `n` bytes (1 <= n <= threshold; 0 counts as 1) falls in class
//! `(n - 1) >> log2(spacing)`, whose blocks are `(class + 1) * spacing` bytes:
//!
//! ```text
//!   request  1..16  17..32  33..48  ...  497..512      (spacing 16, threshold 512)
//!   class      0      1       2     ...     31
//!   block     16     32      48     ...    512
//! ```
//!
//! Every block size is a multiple of the spacing (at least 16), and blocks start at pool offset 0,
//! so every block is 16-aligned, and a block of a size that is a multiple of 2^k is 2^k-aligned.

use thiserror::Error;

/// The most size classes a pool allocator can have (threshold / spacing).
pub const MAX_CLASSES: usize = 64;
/// The most pools an arena can hold (arena size / pool size).
pub const MAX_POOLS_PER_ARENA: usize = 1024;

/// The tunables of the pool allocator, with pymalloc's values as defaults.
///
/// Marangozov's 2002 question — would another spacing or pool size be better? — is answered by the
/// benches: each of these can be changed and measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    /// Distance between size classes in bytes: a power of two from 16 to 4096. Default 16.
    pub spacing: usize,
    /// The largest request served from pools; larger ones go to the large-block allocator.
    /// A multiple of `spacing`, at most `MAX_CLASSES * spacing` and a quarter of a pool. Default 512.
    pub threshold: usize,
    /// Pool size in bytes: a power of two from 4 KiB to 256 KiB. Default 16 KiB.
    pub pool_size: usize,
    /// Arena size in bytes: a power of two from 1 MiB to 64 MiB, at most `MAX_POOLS_PER_ARENA`
    /// pools. Default 1 MiB.
    pub arena_size: usize,
    /// Completely empty arenas kept mapped instead of returned to the OS, so that a workload that
    /// oscillates around an arena boundary does not map and unmap every time. Default 1.
    pub keep_empty_arenas: usize,
    /// Empty pools kept committed (their pages resident, ready for reuse), or an eighth of the
    /// pools mapped if that is more; past that, pools that stay empty for `purge_delay_ms` are
    /// decommitted, in runs. Default 64 (one arena's worth).
    pub keep_empty_pools: usize,
    /// How long an empty pool past the budget stays committed before a purge decommits it, in
    /// milliseconds. Default 1000. 0 decommits at the next purge.
    pub purge_delay_ms: u64,
    /// Bytes of empty memory (empty pools with their pages, empty arenas) a heap keeps at once
    /// after a large free, so that a program that frees a structure and builds the next one (a
    /// parser's tree, a request's objects) reuses resident pages instead of faulting fresh ones;
    /// past it, empty arenas go back to the OS and empty pools are decommitted down to half of
    /// it, at once. Default 12 MiB: after freeing any amount, a heap's resident memory is within
    /// that of what it holds live.
    pub retain_bytes: usize,
    /// The most empty memory a heap learns to keep committed on top of `retain_bytes`. A heap
    /// that gives memory back at once after a large free and then takes half of it again within
    /// `purge_delay_ms` (a program that frees a structure and builds the next, larger than
    /// `retain_bytes`) keeps its working set from then on, with a quarter more, up to this bound:
    /// the next rounds reuse resident pages instead of faulting them in again. Learned memory
    /// still goes back once it stays empty for `purge_delay_ms` (at the heap's next pool return)
    /// and at once on `trim`. Default 256 MiB; 0 never learns (and nothing is learned where
    /// `retain_bytes` is 0).
    pub learn_bytes: usize,
    /// Hardened further, at a cost (`DOMALLOC=pool_secure`): free-list links encoded with a key
    /// of the heap's and the block's address, and checked before use (a freed block's contents
    /// are not trusted: a link that does not decode to a block of its pool is reported as heap
    /// corruption); blocks of a new pool handed out in random order; no bins (every free goes to
    /// its pool, where a second free of a block on a free list is found and reported); no fast
    /// path for the C library. Default false.
    pub secure: bool,
}

impl PoolConfig {
    /// pymalloc's values: 16-byte spacing, 512-byte threshold, 16 KiB pools, 1 MiB arenas.
    pub const DEFAULT: PoolConfig = PoolConfig {
        spacing: 16,
        threshold: 512,
        pool_size: 16 << 10,
        arena_size: 1 << 20,
        keep_empty_arenas: 1,
        keep_empty_pools: 64,
        purge_delay_ms: 1000,
        retain_bytes: 12 << 20,
        learn_bytes: 256 << 20,
        secure: false,
    };

    /// pymalloc's values with the 16-byte classes continued to 1 KiB (64 classes): the
    /// configuration the fast paths of [`PoolAllocator::fast_key`](crate::PoolAllocator::fast_key)
    /// are compiled for, which the mem domain's small pool uses. One path (one size test, one
    /// registry lookup) then serves every request up to 1 KiB: a program whose sizes straddle
    /// 512 bytes does not alternate between two pools' paths at random, which costs the branch
    /// predictor about two misses an allocation and its free.
    pub const WIDE: PoolConfig = PoolConfig {
        threshold: 1024,
        ..PoolConfig::DEFAULT
    };
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig::DEFAULT
    }
}

/// A [`PoolConfig`] that cannot work, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A size that must be a power of two is not.
    #[error("{what} must be a power of two, not {value}")]
    NotPowerOfTwo {
        /// The parameter.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// A parameter is outside its range.
    #[error("{what} is {value}, but must be between {min} and {max}")]
    OutOfRange {
        /// The parameter.
        what: &'static str,
        /// Its value.
        value: usize,
        /// The smallest allowed value.
        min: usize,
        /// The largest allowed value (given the other parameters).
        max: usize,
    },
    /// The threshold is not a multiple of the spacing.
    #[error("threshold {threshold} is not a multiple of the spacing {spacing}")]
    ThresholdNotMultiple {
        /// The threshold.
        threshold: usize,
        /// The spacing.
        spacing: usize,
    },
}

/// The validated, derived form of a [`PoolConfig`] that the fast paths use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) class_shift: u32,
    pub(crate) nclasses: usize,
    pub(crate) threshold: usize,
    pub(crate) pool_shift: u32,
    pub(crate) pool_size: usize,
    pub(crate) arena_size: usize,
    pub(crate) pools_per_arena: usize,
    /// Pools at the start of each arena that hold its header (not used for blocks).
    pub(crate) header_pools: usize,
    pub(crate) keep_empty_arenas: usize,
    pub(crate) keep_empty_pools: usize,
    pub(crate) purge_delay_ms: u64,
    /// `retain_bytes` in pools.
    pub(crate) retain_pools: usize,
    /// `learn_bytes` in pools.
    pub(crate) learn_pools: usize,
    pub(crate) secure: bool,
    /// The slots of each bin of a heap (`pool_core::bin_capacity`).
    pub(crate) bin_capacity: usize,
    /// Bytes from one bin of a heap to the next (`pool_core::bin_stride`).
    pub(crate) bin_stride: usize,
}

const fn check_pow2(
    what: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if !value.is_power_of_two() {
        return Err(ConfigError::NotPowerOfTwo { what, value });
    }
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            what,
            value,
            min,
            max,
        });
    }
    Ok(())
}

const fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

impl Geometry {
    pub(crate) const fn new(c: PoolConfig) -> Result<Geometry, ConfigError> {
        if let Err(e) = check_pow2("spacing", c.spacing, 16, 4096) {
            return Err(e);
        }
        if let Err(e) = check_pow2("pool_size", c.pool_size, 4 << 10, 256 << 10) {
            return Err(e);
        }
        let max_arena = min(64 << 20, c.pool_size * MAX_POOLS_PER_ARENA);
        if let Err(e) = check_pow2("arena_size", c.arena_size, 1 << 20, max_arena) {
            return Err(e);
        }
        let max_threshold = min(MAX_CLASSES * c.spacing, c.pool_size / 4);
        if c.threshold < c.spacing || c.threshold > max_threshold {
            return Err(ConfigError::OutOfRange {
                what: "threshold",
                value: c.threshold,
                min: c.spacing,
                max: max_threshold,
            });
        }
        if !c.threshold.is_multiple_of(c.spacing) {
            return Err(ConfigError::ThresholdNotMultiple {
                threshold: c.threshold,
                spacing: c.spacing,
            });
        }
        let pools_per_arena = c.arena_size / c.pool_size;
        let header_bytes = crate::arena::header_bytes(pools_per_arena);
        let header_pools = header_bytes.div_ceil(c.pool_size);
        let bin_capacity = crate::pool_core::bin_capacity(c.threshold);
        Ok(Geometry {
            class_shift: c.spacing.trailing_zeros(),
            nclasses: c.threshold / c.spacing,
            threshold: c.threshold,
            pool_shift: c.pool_size.trailing_zeros(),
            pool_size: c.pool_size,
            arena_size: c.arena_size,
            pools_per_arena,
            header_pools,
            keep_empty_arenas: c.keep_empty_arenas,
            keep_empty_pools: c.keep_empty_pools,
            purge_delay_ms: c.purge_delay_ms,
            retain_pools: c.retain_bytes / c.pool_size,
            learn_pools: c.learn_bytes / c.pool_size,
            secure: c.secure,
            bin_capacity,
            bin_stride: crate::pool_core::bin_stride(bin_capacity),
        })
    }

    /// The class of a request of `size` bytes (`size <= threshold`).
    #[inline]
    pub(crate) const fn class_of(&self, size: usize) -> usize {
        size.saturating_sub(1) >> self.class_shift
    }

    /// The block size of `class`.
    #[inline]
    pub(crate) const fn block_size(&self, class: usize) -> usize {
        (class + 1) << self.class_shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_geometry_is_pymallocs() {
        let g = Geometry::new(PoolConfig::DEFAULT).unwrap();
        assert_eq!(g.nclasses, 32);
        assert_eq!(g.class_of(0), 0);
        assert_eq!(g.class_of(1), 0);
        assert_eq!(g.class_of(16), 0);
        assert_eq!(g.class_of(17), 1);
        assert_eq!(g.class_of(512), 31);
        assert_eq!(g.block_size(31), 512);
        assert_eq!(g.pools_per_arena, 64);
        assert_eq!(g.header_pools, 1);
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let bad = |f: fn(&mut PoolConfig)| {
            let mut c = PoolConfig::DEFAULT;
            f(&mut c);
            Geometry::new(c).unwrap_err()
        };
        assert_eq!(
            bad(|c| c.spacing = 24),
            ConfigError::NotPowerOfTwo {
                what: "spacing",
                value: 24
            }
        );
        assert!(matches!(
            bad(|c| c.spacing = 8),
            ConfigError::OutOfRange {
                what: "spacing",
                ..
            }
        ));
        assert!(matches!(
            bad(|c| c.threshold = 8192),
            ConfigError::OutOfRange {
                what: "threshold",
                ..
            }
        ));
        assert_eq!(
            bad(|c| c.threshold = 520),
            ConfigError::ThresholdNotMultiple {
                threshold: 520,
                spacing: 16
            }
        );
        assert!(matches!(
            bad(|c| c.arena_size = 1 << 19),
            ConfigError::OutOfRange {
                what: "arena_size",
                ..
            }
        ));
        let msg = std::format!("{}", bad(|c| c.pool_size = 3000));
        assert_eq!(msg, "pool_size must be a power of two, not 3000");
    }
}
