//! Configuration from the environment: `DOMALLOC=` with `PYTHONMALLOC`'s vocabulary.

use thiserror::Error;

/// The environment variable read at start-up.
pub const ENV_VAR: &str = "DOMALLOC";

/// What the standard domains start with, as `PYTHONMALLOC` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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
}

/// The accepted values of `DOMALLOC`, as they are spelled.
pub const PRESET_NAMES: &[&str] = &["malloc", "pool", "debug", "malloc_debug", "pool_debug"];

/// A `DOMALLOC` value that names no preset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown allocator preset {value:?}: expected one of malloc, pool, debug, malloc_debug, pool_debug"
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

/// Reads `DOMALLOC` without allocating into `buf`; returns the value's bytes (empty if unset, or
/// too long to be a preset name).
pub(crate) fn read_env(buf: &mut [u8; 64]) -> &[u8] {
    #[cfg(unix)]
    {
        // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated string that stays
        // valid while the environment is not modified (start-up: nothing modifies it yet).
        let value = unsafe { libc::getenv(c"DOMALLOC".as_ptr()) };
        if value.is_null() {
            return &buf[..0];
        }
        // SAFETY: as above.
        let bytes = unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes();
        if bytes.len() > buf.len() {
            buf.fill(b'?');
            return &buf[..];
        }
        buf[..bytes.len()].copy_from_slice(bytes);
        &buf[..bytes.len()]
    }
    #[cfg(windows)]
    {
        // SAFETY: a NUL-terminated name and a buffer of the given length.
        let n = unsafe {
            windows_sys::Win32::System::Environment::GetEnvironmentVariableA(
                c"DOMALLOC".as_ptr().cast(),
                buf.as_mut_ptr(),
                buf.len() as u32,
            )
        } as usize;
        if n >= buf.len() {
            buf.fill(b'?');
            return &buf[..];
        }
        &buf[..n]
    }
    #[cfg(not(any(unix, windows)))]
    {
        &buf[..0]
    }
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
}
