//! Configuration from the environment: `DOMALLOC=` with `PYTHONMALLOC`'s vocabulary.

use thiserror::Error;

/// The environment variable read at start-up.
pub const ENV_VAR: &str = "DOMALLOC";

/// What the standard domains start with, as `PYTHONMALLOC` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Preset {
    /// Every domain uses the C library (`PYTHONMALLOC=malloc`).
    Malloc,
    /// Raw uses the C library, mem and object the pool allocator (the default, as CPython's
    /// `pymalloc`).
    #[default]
    Pool,
    /// The default allocators under the debug hooks (`PYTHONMALLOC=debug`).
    Debug,
    /// The C library under the debug hooks in every domain (`malloc_debug`).
    MallocDebug,
    /// The pool allocator under the debug hooks (`pool_debug`, CPython's `pymalloc_debug`).
    PoolDebug,
    /// The pool allocator hardened further (`pool_secure`): encoded and checked free-list links,
    /// new pools handed out in random order, no bins, every free checked against its pool's free
    /// list (see `PoolConfig::secure`); no fast path.
    PoolSecure,
}

/// The accepted values of `DOMALLOC`, as they are spelled.
pub const PRESET_NAMES: &[&str] = &[
    "malloc",
    "pool",
    "debug",
    "malloc_debug",
    "pool_debug",
    "pool_secure",
];

/// A `DOMALLOC` value that names no preset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown allocator preset {value:?}: expected one of malloc, pool, debug, malloc_debug, pool_debug, pool_secure"
)]
pub struct UnknownPreset {
    /// The value given.
    pub value: String,
}

impl Preset {
    /// The preset named `name` (an empty name is the default).
    ///
    /// ```
    /// use alloc_domains::Preset;
    /// assert_eq!(Preset::parse("pool_debug"), Ok(Preset::PoolDebug));
    /// assert!(Preset::parse("jemalloc").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<Preset, UnknownPreset> {
        Preset::from_bytes(name.as_bytes()).ok_or_else(|| UnknownPreset {
            value: name.to_string(),
        })
    }

    /// As [`parse`](Self::parse), without allocating (for start-up).
    pub(crate) fn from_bytes(name: &[u8]) -> Option<Preset> {
        Some(match name {
            b"" | b"pool" | b"pymalloc" => Preset::Pool,
            b"malloc" => Preset::Malloc,
            b"debug" => Preset::Debug,
            b"malloc_debug" => Preset::MallocDebug,
            b"pool_debug" | b"pymalloc_debug" => Preset::PoolDebug,
            b"pool_secure" => Preset::PoolSecure,
            _ => return None,
        })
    }

    /// Whether the preset puts the debug hooks on every domain.
    pub fn debug_hooks(self) -> bool {
        matches!(
            self,
            Preset::Debug | Preset::MallocDebug | Preset::PoolDebug
        )
    }

    /// Whether mem and object use the pool allocator (otherwise the C library).
    pub fn uses_pool(self) -> bool {
        !matches!(self, Preset::Malloc | Preset::MallocDebug)
    }
}

/// The environment variable that puts sampled guard pages (`alloc_debug::GuardPages`) over the
/// mem domain's allocator at start-up: one allocation in N is guarded (0: off, the default;
/// 1: every allocation while the guarded slots last). Read with `DOMALLOC`, at the first
/// allocation; works with every preset. `DOMALLOC_GUARD_UNDERFLOW=1` beside it places the blocks
/// against the start of their slots (underflows fault instead of overflows).
pub const GUARD_SAMPLE_VAR: &str = "DOMALLOC_GUARD_SAMPLE";

/// A `DOMALLOC_GUARD_SAMPLE` value: a decimal number of at most 9 digits; `None` otherwise.
pub(crate) fn parse_guard_sample(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')),
    )
}

/// The longest part of a bad `DOMALLOC` value a report shows.
pub(crate) const SHOWN: usize = 64;

/// An environment variable read without allocating: its first bytes, and whether it had more.
pub(crate) struct EnvValue {
    buf: [u8; SHOWN],
    len: usize,
    /// The value is longer than `buf` (and so no preset name).
    pub(crate) cut: bool,
}

impl EnvValue {
    /// The bytes read (all of the value unless `cut`).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the value for a one-line report: printable ASCII as it is (`"` and `\` escaped),
    /// every other byte as `\xNN` (control characters, bytes of non-ASCII text), and `…` after a
    /// value cut at [`SHOWN`] bytes. Never allocates.
    pub(crate) fn write_escaped(&self, out: &mut impl FnMut(&[u8])) {
        for &b in self.bytes() {
            match b {
                b'"' => out(b"\\\""),
                b'\\' => out(b"\\\\"),
                0x20..=0x7e => out(&[b]),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out(&[
                        b'\\',
                        b'x',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                }
            }
        }
        if self.cut {
            out("\u{2026}".as_bytes());
        }
    }
}

/// Reads environment variable `name` without allocating; `None` if it is unset.
pub(crate) fn read_env(name: &core::ffi::CStr) -> Option<EnvValue> {
    let mut v = EnvValue {
        buf: [0; SHOWN],
        len: 0,
        cut: false,
    };
    let (copied, full) = crate::os::getenv(name, &mut v.buf)?;
    v.len = copied;
    v.cut = full > SHOWN;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_parses_and_others_do_not() {
        for name in PRESET_NAMES {
            assert!(Preset::parse(name).is_ok(), "{name}");
        }
        assert_eq!(Preset::parse(""), Ok(Preset::Pool));
        assert_eq!(Preset::parse("pymalloc_debug"), Ok(Preset::PoolDebug));
        let e = Preset::parse("tcmalloc").unwrap_err();
        assert!(e.to_string().contains("\"tcmalloc\""));
        assert!(e.to_string().contains("malloc_debug"));
        assert!(Preset::Debug.debug_hooks() && !Preset::Pool.debug_hooks());
        assert!(!Preset::MallocDebug.uses_pool() && Preset::PoolDebug.uses_pool());
    }

    #[test]
    fn guard_sample_values_are_decimal_numbers() {
        assert_eq!(parse_guard_sample(b"0"), Some(0));
        assert_eq!(parse_guard_sample(b"5000"), Some(5000));
        assert_eq!(parse_guard_sample(b"999999999"), Some(999_999_999));
        for bad in [&b""[..], b"-1", b"1e3", b" 1", b"1000000000", b"one"] {
            assert_eq!(parse_guard_sample(bad), None, "{bad:?}");
        }
    }
}
