//! A small program's heap, written as a DHAT profile that DHAT's viewer opens.
//!
//! `cargo run --release -p alloc-debug --example dhat_export [PATH]`
//!
//! Every allocation of the process goes through `Tracing<PoolAllocator>` (the global allocator),
//! with eight frames per traceback. The program builds an index of the words of some generated
//! text, takes a snapshot and writes it with `Snapshot::write_dhat` to PATH (by default
//! `dhat-heap-<pid>.json` in the temporary directory). Open DHAT's `dh_view.html` (installed with
//! Valgrind, e.g. `/usr/libexec/valgrind/dh_view.html`) in a browser and load the file: the tree
//! shows the bytes and blocks live at the snapshot by allocation site, then by caller.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use alloc_arena::PoolAllocator;
use alloc_core::AsGlobalAlloc;
use alloc_debug::Tracing;

#[global_allocator]
static GLOBAL: AsGlobalAlloc<Tracing<PoolAllocator>> =
    AsGlobalAlloc::new(Tracing::new(PoolAllocator::new()).with_depth(8));

/// Some text: `n` lines of words from a small vocabulary.
fn text(n: usize) -> Vec<String> {
    const WORDS: [&str; 12] = [
        "pool", "arena", "block", "free", "alloc", "guard", "trace", "frame", "heap", "domain",
        "size", "class",
    ];
    (0..n)
        .map(|i| {
            (0..8)
                .map(|j| WORDS[(i * 7 + j * 5) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Where each word occurs: (line, column) pairs by word.
fn index(lines: &[String]) -> HashMap<String, Vec<(usize, usize)>> {
    let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (l, line) in lines.iter().enumerate() {
        for (c, word) in line.split(' ').enumerate() {
            index.entry(word.to_string()).or_default().push((l, c));
        }
    }
    index
}

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("dhat-heap-{}.json", std::process::id()))
        });
    let lines = text(2000);
    let index = index(&lines);

    let snapshot = GLOBAL.inner().take_snapshot();
    let written = File::create(&path)
        .map_err(alloc_debug::SnapshotFileError::from)
        .and_then(|f| snapshot.write_dhat(BufWriter::new(f)));
    if let Err(e) = written {
        eprintln!("dhat_export: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let points = snapshot.to_dhat().program_points.len();
    println!(
        "{} lines, {} distinct words indexed; {} blocks live ({} bytes) at {points} program points",
        lines.len(),
        index.len(),
        snapshot.traces().len(),
        snapshot.total_size()
    );
    println!("{}", path.display());
    ExitCode::SUCCESS
}
