//! Call stacks: captured as return addresses without allocating, resolved to file and line only
//! when a report is made.
//!
//! Capture ([`stack`](super::stack): the platform's unwinder, the unwind tables read once per
//! return address, or the frame-pointer chain where the program keeps one; no lock, no
//! allocation) keeps return addresses. An allocation made
//! through `Vec::push` or `#[global_allocator]` passes through frames that say nothing about the
//! program (the standard library's `alloc`, the global-allocator shims, domalloc's adapters and
//! decorators): capture passes over up to [`PLUMBING_FRAMES`] of them at the top of the stack
//! (each return address classified once, by [`frame_is_plumbing`]), and resolution drops any
//! leading frames of those crates again before cutting the traceback to its depth: a depth of 1
//! names the line of the program that asked for memory, as tracemalloc's does.
//!
//! Resolution (`backtrace::resolve`) reads debug information and allocates through the global
//! allocator. It runs with [`Busy`] set, so that a `Tracing` installed as the global allocator
//! leaves those allocations untraced, and never under one of Tracing's locks.

use core::cell::Cell;
use core::fmt::{self, Write};
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use hashbrown::HashMap;

/// The deepest traceback a [`Tracing`](super::Tracing) records.
pub const MAX_DEPTH: usize = 64;

/// The most frames of the allocation machinery a capture passes over before the program's.
pub const PLUMBING_FRAMES: usize = 16;

/// The most words a captured stack takes.
pub(crate) const CAPTURE_WORDS: usize = MAX_DEPTH + PLUMBING_FRAMES;

/// Function-name prefixes of the frames that allocate on a program's behalf, of this crate and
/// the crates below it; the crates above it register their own (`alloc_core::plumbing`).
const PLUMBING: &[&str] = &[
    "alloc_debug::",
    "alloc_core::",
    "alloc::",
    "core::alloc",
    "core::ptr",
    "std::alloc",
    "std::sys",
    "__rust",
    "__rdl",
    "__rg",
    "backtrace::",
    "hashbrown::",
    "allocator_api2::",
];

std::thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside Tracing's own work (resolving frames, building a snapshot): its
/// allocations through a `Tracing` are not traced. Restores the previous state on drop.
pub(crate) struct Busy(bool);

impl Busy {
    pub(crate) fn enter() -> Self {
        Busy(BUSY.with(|b| b.replace(true)))
    }

    /// Whether this thread is inside Tracing's own work (false while the thread's locals are
    /// being torn down, where nothing can be asked).
    #[inline]
    pub(crate) fn active() -> bool {
        BUSY.try_with(Cell::get).unwrap_or(true)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let previous = self.0;
        let _ = BUSY.try_with(|b| b.set(previous));
    }
}

/// A caller-given allocation site: code that knows its own call sites names them instead of
/// paying for a stack capture (see [`with_tag`](super::with_tag)).
///
/// ```
/// use alloc_debug::Tag;
///
/// static PARSER: Tag = Tag::new("parser", 7);
/// let here = Tag::here();
/// assert_eq!((PARSER.file(), PARSER.line()), ("parser", 7));
/// assert!(here.file().ends_with(".rs"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    file: &'static str,
    line: u32,
}

impl Tag {
    /// A tag naming `file` and `line` (any name a report should show).
    pub const fn new(file: &'static str, line: u32) -> Self {
        Tag { file, line }
    }

    /// The source location of the caller.
    #[track_caller]
    pub fn here() -> Self {
        let l = core::panic::Location::caller();
        Tag {
            file: l.file(),
            line: l.line(),
        }
    }

    /// The file (or name) this tag gives.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line this tag gives.
    pub fn line(&self) -> u32 {
        self.line
    }

    pub(crate) fn words(&self) -> [usize; 3] {
        [
            self.file.as_ptr() as usize,
            self.file.len(),
            self.line as usize,
        ]
    }

    /// # Safety
    /// `words` came from [`Tag::words`] of a tag (whose file is `'static`).
    pub(crate) unsafe fn from_words(words: &[usize]) -> Self {
        // SAFETY: the pointer and length are those of a `&'static str` (the caller's guarantee).
        let file = unsafe {
            core::str::from_utf8_unchecked(core::slice::from_raw_parts(
                words[0] as *const u8,
                words[1],
            ))
        };
        Tag {
            file,
            line: words[2] as u32,
        }
    }
}

std::thread_local! {
    static CURRENT_TAG: Cell<Option<Tag>> = const { Cell::new(None) };
}

/// The tag set by [`with_tag`](super::with_tag) on this thread, if any.
#[inline]
pub(crate) fn current_tag() -> Option<Tag> {
    CURRENT_TAG.try_with(Cell::get).ok().flatten()
}

pub(crate) fn swap_tag(tag: Option<Tag>) -> Option<Tag> {
    CURRENT_TAG.with(|t| t.replace(tag))
}

/// One frame of a [`Traceback`]: a file and a line, and the function when it is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// The source file (`"<unknown>"` when there is no debug information).
    pub filename: Arc<str>,
    /// The line in it (0 when unknown).
    pub lineno: u32,
    /// The function's name, without its hash (empty when unknown, or for a tag).
    pub function: Arc<str>,
}

impl Frame {
    /// A frame at `filename`, line `lineno`, in `function` (empty if unknown).
    pub fn new(filename: &str, lineno: u32, function: &str) -> Self {
        Frame {
            filename: filename.into(),
            lineno,
            function: function.into(),
        }
    }

    pub(crate) fn unknown() -> Self {
        Frame::new("<unknown>", 0, "")
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.filename, self.lineno)
    }
}

/// Where a block was allocated: frames, most recent first (tracemalloc's `Traceback`). Cheap to
/// clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Traceback(Arc<[Frame]>);

impl Traceback {
    /// A traceback of `frames`, most recent first (one unknown frame if `frames` is empty).
    pub fn new(mut frames: Vec<Frame>) -> Self {
        if frames.is_empty() {
            frames.push(Frame::unknown());
        }
        Traceback(frames.into())
    }

    /// The frames, most recent first; never empty.
    pub fn frames(&self) -> &[Frame] {
        &self.0
    }

    /// The most recent frame: the site of the allocation.
    pub fn site(&self) -> &Frame {
        &self.0[0]
    }

    /// The traceback as lines a person reads, most recent call first, each `  File "f", line n`
    /// with the function on the next line when it is known.
    pub fn format(&self) -> String {
        let mut s = String::new();
        let _ = self.write_lines(&mut s);
        s
    }

    fn write_lines(&self, out: &mut dyn Write) -> fmt::Result {
        for fr in self.frames() {
            writeln!(out, "  File \"{}\", line {}", fr.filename, fr.lineno)?;
            if !fr.function.is_empty() {
                writeln!(out, "    in {}", fr.function)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Traceback {
    /// The site (`file:line`); `{:#}` writes every frame, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            self.write_lines(f)
        } else {
            write!(f, "{}", self.site())
        }
    }
}

/// Source directories of the standard library's allocation paths (`alloc` and `core`, whose
/// generic code is named by its type parameters: `<u8 as SpecFromElem>::from_elem`).
const PLUMBING_SOURCES: &[&str] = &[
    "/library/alloc/src/",
    "/library/core/src/",
    "/library/std/src/alloc.rs",
    "/library/std/src/sys/alloc/",
];

/// Whether a function name belongs to the allocation machinery (see [`PLUMBING`] and the
/// names registered with `alloc_core::plumbing`: the pools', the domain table's, libdomalloc's
/// exports and C API, the bench runner's).
fn is_plumbing(name: &str) -> bool {
    let path = name.trim_start_matches('<');
    PLUMBING.iter().any(|p| path.starts_with(p)) || alloc_core::plumbing::is_plumbing(name)
}

/// Whether a frame belongs to the allocation machinery, by its function or its source file.
fn is_plumbing_frame(function: &str, file: Option<&str>) -> bool {
    is_plumbing(function) || file.is_some_and(|f| PLUMBING_SOURCES.iter().any(|p| f.contains(p)))
}

/// Whether every function at return address `ip` (the innermost and those inlined around it)
/// belongs to the allocation machinery: such a frame says nothing about the program. Resolves the
/// address (slow: debug information is read), allocating nothing itself; allocations of the
/// resolver run with [`Busy`] set. An address that resolves to nothing is the program's.
pub(crate) fn frame_is_plumbing(ip: usize) -> bool {
    let _busy = Busy::enter();
    let mut any = false;
    let mut all = true;
    backtrace::resolve(ip as *mut core::ffi::c_void, |sym| {
        any = true;
        let mut name = Prefix::default();
        if let Some(n) = sym.name() {
            let _ = write!(name, "{n:#}");
        }
        let file = sym.filename().and_then(|f| f.to_str());
        all &= is_plumbing_frame(name.as_str(), file);
    });
    any && all
}

/// Resolves return addresses to frames, each address once per resolver.
pub(crate) struct Resolver {
    cache: HashMap<usize, Vec<Frame>>,
}

impl Resolver {
    pub(crate) fn new() -> Self {
        Resolver {
            cache: HashMap::new(),
        }
    }

    fn frames_of(&mut self, ip: usize) -> &[Frame] {
        self.cache.entry(ip).or_insert_with(|| {
            let mut out = Vec::new();
            backtrace::resolve(ip as *mut core::ffi::c_void, |sym| {
                let function = sym.name().map(|n| format!("{n:#}")).unwrap_or_default();
                let filename = sym
                    .filename()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<unknown>".into());
                out.push(Frame::new(&filename, sym.lineno().unwrap_or(0), &function));
            });
            if out.is_empty() {
                out.push(Frame::new("<unknown>", 0, &format!("{ip:#x}")));
            }
            out
        })
    }

    /// The traceback of captured addresses: inlined frames expanded, the allocation machinery's
    /// leading frames dropped, cut to `depth` frames.
    pub(crate) fn stack(&mut self, ips: &[usize], depth: usize) -> Traceback {
        let mut all: Vec<Frame> = Vec::new();
        for &ip in ips {
            all.extend_from_slice(self.frames_of(ip));
        }
        let skip = all
            .iter()
            .position(|f| !is_plumbing_frame(&f.function, Some(&f.filename)))
            .unwrap_or(all.len().saturating_sub(depth));
        let mut kept: Vec<Frame> = all.into_iter().skip(skip).take(depth).collect();
        if kept.is_empty() {
            kept.push(Frame::unknown());
        }
        Traceback::new(kept)
    }
}

/// The traceback of a tag.
pub(crate) fn tag_traceback(tag: Tag) -> Traceback {
    Traceback::new(std::vec![Frame::new(tag.file(), tag.line(), "")])
}

/// Writes a captured stack into a report without allocating anything itself (resolution may
/// allocate through the global allocator, untraced): the leading machinery frames are skipped and
/// at most `depth` frames written.
pub(crate) fn write_stack(ips: &[usize], depth: usize, out: &mut dyn Write) -> fmt::Result {
    let _busy = Busy::enter();
    let mut written = 0;
    let mut in_plumbing = true;
    let mut result = Ok(());
    for &ip in ips {
        backtrace::resolve(ip as *mut core::ffi::c_void, |sym| {
            if written >= depth || result.is_err() {
                return;
            }
            let mut name = Prefix::default();
            if let Some(n) = sym.name() {
                let _ = write!(name, "{n:#}");
            }
            let file = sym.filename().and_then(|f| f.to_str());
            if in_plumbing && is_plumbing_frame(name.as_str(), file) {
                return;
            }
            in_plumbing = false;
            written += 1;
            result = match (sym.filename(), sym.lineno()) {
                (Some(file), Some(line)) => {
                    write!(out, "\n      File \"{}\", line {line}", file.display())
                }
                _ => write!(out, "\n      {ip:#x} {}", name.as_str()),
            };
        });
    }
    if written == 0 {
        write!(out, "\n      <no frame outside the allocator>")?;
    }
    result
}

/// The first bytes of a name, written without allocating.
struct Prefix {
    buf: [u8; 64],
    len: usize,
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Prefix {
    fn as_str(&self) -> &str {
        // Only whole characters are copied in `write_str`.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for Prefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let n = ch.len_utf8();
            if self.len + n > self.buf.len() {
                break;
            }
            ch.encode_utf8(&mut self.buf[self.len..]);
            self.len += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machinery_frames_are_recognised_by_their_crate() {
        assert!(is_plumbing("alloc::raw_vec::RawVec<T,A>::grow_one"));
        assert!(is_plumbing(
            "<alloc_core::adapters::AsGlobalAlloc<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(is_plumbing("__rustc::__rust_alloc"));
        assert!(!is_plumbing("myapp::parse"));
        assert!(!is_plumbing("<myapp::Parser as core::ops::Drop>::drop"));
        // A crate above this one registers its own frames, as libdomalloc does at load: its
        // exports and internals then pass, but not a program's own wrapper.
        static RUST: alloc_core::plumbing::Prefixes = &["domalloc::"];
        static C: alloc_core::plumbing::Prefixes = &["malloc", "domalloc_*"];
        alloc_core::plumbing::register(&RUST);
        alloc_core::plumbing::register_c_names(&C);
        assert!(is_plumbing("malloc"));
        assert!(is_plumbing("domalloc::malloc_slow"));
        assert!(is_plumbing("domalloc_malloc"));
        assert!(!is_plumbing("malloc_wrapper"));
        assert!(!is_plumbing("hold_buffers"));
        assert!(!is_plumbing("domalloc_benches::workloads::pairs"));
    }

    #[test]
    fn a_name_prefix_is_cut_at_a_character_boundary() {
        let mut p = Prefix::default();
        let _ = write!(p, "{}", "é".repeat(40));
        assert_eq!(p.as_str(), "é".repeat(32));
    }
}
