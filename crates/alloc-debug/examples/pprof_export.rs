//! A small program's heap, written as a gzipped pprof profile.
//!
//! `cargo run --release -p alloc-debug --example pprof_export [PATH]`
//!
//! Every allocation of the process goes through `Tracing<PoolAllocator>` (the global allocator),
//! with eight frames per traceback. The program keeps a cache of parsed records, takes a
//! snapshot and writes it with `Snapshot::write_pprof` to PATH (by default
//! `heap-<pid>.pb.gz` in the temporary directory). `pprof -top PATH` lists the sites by bytes
//! live (`inuse_space`, the default sample type); `pprof -http=: PATH` opens the graph and the
//! flame graph; `-sample_index=inuse_objects` counts blocks instead.

use std::collections::BTreeMap;
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

/// One parsed record.
struct Record {
    name: String,
    tags: Vec<String>,
    payload: Box<[u8]>,
}

fn parse(line: &str) -> Record {
    let mut fields = line.split(';');
    let name = fields.next().unwrap_or_default().to_string();
    let tags = fields
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let size = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Record {
        name,
        tags,
        payload: vec![0u8; size].into_boxed_slice(),
    }
}

/// Keeps every record parsed, by name.
fn cache(n: usize) -> BTreeMap<String, Record> {
    (0..n)
        .map(|i| {
            let line = format!("item-{i};red,green,n{};{}", i % 17, 64 + (i % 5) * 192);
            let record = parse(&line);
            (record.name.clone(), record)
        })
        .collect()
}

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("heap-{}.pb.gz", std::process::id())));
    let records = cache(3000);
    let payload: usize = records.values().map(|r| r.payload.len()).sum();
    let tags: usize = records.values().map(|r| r.tags.len()).sum();

    let snapshot = GLOBAL.inner().take_snapshot();
    let written = File::create(&path)
        .map_err(alloc_debug::SnapshotFileError::from)
        .and_then(|f| snapshot.write_pprof(BufWriter::new(f)));
    if let Err(e) = written {
        eprintln!("pprof_export: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!(
        "{} records cached ({tags} tags, {payload} payload bytes); {} blocks live ({} bytes)",
        records.len(),
        snapshot.traces().len(),
        snapshot.total_size()
    );
    println!("{}", path.display());
    ExitCode::SUCCESS
}
