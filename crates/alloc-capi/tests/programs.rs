//! Real programs under libdomalloc: a C program compiled here (threads, realloc chains, aligned
//! allocations, the error cases, fork), a C++ program (its operators new and delete), a C program
//! using `domalloc.h`, `python3` with `PYTHONMALLOC=malloc` (every Python allocation through
//! domalloc), `git`, `gcc` and `sqlite3`. Each runs with `LD_PRELOAD` under `DOMALLOC=pool` and `DOMALLOC=pool_debug` and must print
//! exactly what it prints without the library. A program that is not installed is skipped with a
//! note.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const PRESETS: &[&str] = &["pool", "pool_debug"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi")
}

/// Builds libdomalloc.so (release, its own target directory) once per test run.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let target = workspace().join("target/capi");
        announce(&format!(
            "building libdomalloc (release) for the C tests: cargo build --release -p alloc-capi \
             --target-dir {} (minutes the first time)",
            target.display()
        ));
        // Cargo's progress goes straight to the terminal.
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args(["build", "--release", "-p", "alloc-capi", "--target-dir"])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .stdin(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building libdomalloc failed ({status}): cargo's errors are above"
        );
        target.join("release/libdomalloc.so")
    })
}

/// Says what is about to be built, on the terminal itself (the test harness captures `eprintln!`
/// but not a write to stderr): a nested build can take a while.
fn announce(what: &str) {
    let _ = writeln!(std::io::stderr(), "{what}");
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skip(program: &str) {
    eprintln!("note: {program} is not installed here; its run under libdomalloc is skipped");
}

/// Runs `cmd` (built fresh by `make`) without the library and under each preset; asserts the
/// same exit status and the same standard output each time.
fn same_under_library(what: &str, make: impl Fn() -> Command) -> String {
    let plain = make().output().expect("the program runs");
    assert!(
        plain.status.success(),
        "{what} fails without the library: {plain:?}"
    );
    for preset in PRESETS {
        let mut c = make();
        c.env("LD_PRELOAD", library()).env("DOMALLOC", preset);
        let got: Output = c.output().expect("the program runs");
        assert!(
            got.status.success(),
            "{what} under DOMALLOC={preset}: {:?}\nstderr: {}",
            got.status,
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&plain.stdout),
            "{what} printed something else under DOMALLOC={preset}"
        );
    }
    String::from_utf8_lossy(&plain.stdout).into_owned()
}

fn compile(source: &str, out: &str, extra: &[&str]) -> PathBuf {
    compile_with("gcc", source, out, extra)
}

/// [`compile`] with another compiler driver (`g++` for the C++ programs).
/// `bad_free.c`, built as `out`: unoptimised (each misuse stays as written) and linked with
/// `dlsym`'s library.
fn compile_bad_free(out: &str) -> PathBuf {
    compile(
        "bad_free.c",
        out,
        &["-O0", "-Wno-free-nonheap-object", "-ldl"],
    )
}

fn compile_with(compiler: &str, source: &str, out: &str, extra: &[&str]) -> PathBuf {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(out);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(source);
    announce(&format!("compiling tests/c/{source} with {compiler}"));
    let status = Command::new(compiler)
        .args(["-O1", "-pthread", "-Wno-alloc-size-larger-than", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(extra)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} runs: {e}"));
    assert!(status.success(), "{compiler} could not compile {source}");
    exe
}

#[test]
fn a_c_program_with_threads_realloc_chains_aligned_blocks_and_fork() {
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile("stress.c", "stress", &[]);
    let out = same_under_library("stress.c", || Command::new(&exe));
    assert!(out.contains("aligned: 20 of 20"), "{out}");
    assert!(out.contains("aligned sweep: 240 of 240"), "{out}");
    assert!(out.contains("fork: 20 of 20"), "{out}");
    assert!(out.contains("realloc(p, 0) NULL"), "{out}");
    assert!(out.contains("realloc(small, 0) NULL"), "{out}");
}

#[test]
fn the_registry_serves_every_free_with_its_flat_table_and_without_it() {
    use std::os::unix::process::ExitStatusExt;
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile("registry.c", "registry", &[]);
    let bad = compile_bad_free("bad_free_registry");
    // An address-space limit of 384 MiB leaves the program room, but not the table's 512 MiB
    // reservation: the registry then records every chunk in its tree.
    let limited = |program: &Path, arg: Option<&str>, limit: bool| {
        let mut c = Command::new("sh");
        let script = if limit {
            "ulimit -v 393216; exec \"$0\" \"$@\""
        } else {
            "exec \"$0\" \"$@\""
        };
        c.arg("-c").arg(script).arg(program).args(arg);
        c.env("LD_PRELOAD", library()).env("DOMALLOC", "pool");
        c.output().expect("the program runs")
    };
    // The same limit refuses the small pool's 16 GiB reservation of arenas: its blocks then
    // come from arenas mapped one by one, which `free` finds through the registry.
    for (limit, table) in [(false, "yes"), (true, "no")] {
        let out = limited(&exe, None, limit);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "limit {limit}: {out:?}");
        assert!(stdout.contains("blocks: ok"), "{stdout}");
        assert!(
            stdout.contains(&format!("flat table: {table}")),
            "limit {limit}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("reservation: {table}")),
            "limit {limit}: {stdout}"
        );
        // The hardened default's reports come from either structure.
        for (case, says) in [
            ("double_free_small", "double free"),
            ("interior", "invalid pointer (inside a block"),
        ] {
            let out = limited(&bad, Some(case), limit);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.signal(),
                Some(6),
                "{case}, limit {limit}: {out:?}"
            );
            assert!(
                stderr.contains("domalloc: ") && stderr.contains(says),
                "{stderr}"
            );
        }
    }
}

#[test]
fn the_allocators_code_lies_together_before_the_rest_of_the_text() {
    // `hot-text.ld` (added to the link by build.rs on x86-64 linux with a GNU toolchain) puts the
    // allocator crates' functions first in `.text` (those every process runs first of all): the
    // exports, the pools' slow paths and the domain table among them, and the tracing code after
    // them; and the allocator's constants first in `.rodata`. A change of mangling or of the
    // linker's treatment of the script would fall back to the plain layout silently.
    if !cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) || std::env::var_os("DOMALLOC_NO_HOT_TEXT").is_some_and(|v| v != "0")
    {
        return;
    }
    for tool in ["readelf", "nm"] {
        if !installed(tool) {
            skip(tool);
            return;
        }
    }
    let lib = library();
    let sections = Command::new("readelf")
        .args(["-SW"])
        .arg(lib)
        .output()
        .expect("readelf runs");
    let sections = String::from_utf8_lossy(&sections.stdout);
    // `[Nr] Name Type Address Off Size ...`: the one `.text` section's address and size.
    let texts: Vec<_> = sections
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == ".text"))
        .collect();
    assert_eq!(
        texts.len(),
        1,
        "one .text section (valgrind reads its symbols):\n{sections}"
    );
    // The address of the section named `name` (the first such line).
    let section = |name: &str| -> u64 {
        let line = sections
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} in the library:\n{sections}"));
        let fields: Vec<&str> = line
            .split(']')
            .nth(1)
            .expect("a section line")
            .split_whitespace()
            .collect();
        u64::from_str_radix(fields[2], 16).expect("an address")
    };
    let start = section(".text");
    let symbols = Command::new("nm").arg(lib).output().expect("nm runs");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    // The addresses of the defined symbols (`ADDRESS TYPE NAME`; an undefined one has no
    // address) whose names contain `pattern`, of any type, or of a function type only.
    let symbols_at = |pattern: &str, code_only: bool| -> Vec<u64> {
        symbols
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (address, kind, name) = (w.next()?, w.next()?, w.next()?);
                let wanted =
                    name.contains(pattern) && (!code_only || kind.eq_ignore_ascii_case("t"));
                wanted.then(|| u64::from_str_radix(address, 16).ok())?
            })
            .collect()
    };
    let at = |pattern: &str| symbols_at(pattern, false);
    // The allocator's code is about 150 KiB; the whole text is six times that.
    let hot = start..start + (192 << 10);
    for name in [
        "malloc",
        "free",
        "realloc",
        "calloc",
        "_Znwm",
        "_ZdlPv",
        "alloc_from_pools",
        "flush_bin",
        "free_local_slow",
        "return_pool",
    ] {
        let places = at(name);
        assert!(!places.is_empty(), "{name} is in the library");
        assert!(
            places.iter().any(|a| hot.contains(a)),
            "{name} lies at the start of .text ({hot:x?}): {places:x?}"
        );
    }
    let tracing = at("Tracing$LT$A$GT$10trace_slow");
    let allocator_end = at("flush_bin").into_iter().max().expect("flush_bin");
    assert!(
        !tracing.is_empty() && tracing.iter().all(|&a| a > allocator_end),
        "the tracing code comes after the allocator's"
    );
    // The functions every process runs (start-up, the malloc family's slow paths, heaps, pools
    // and arenas), with the C runtime's start-up code and the PLT that start-up calls through,
    // lie in the first 64 KiB of code, the window the kernel maps around what runs.
    let first = start..start + (64 << 10);
    for name in [
        "8domalloc4init17h",
        "8domalloc11malloc_slow",
        "8domalloc13malloc_slower",
        "8domalloc9free_slow",
        "8domalloc11free_slower",
        "8domalloc11calloc_slow",
        "8domalloc12realloc_slow",
        "8domalloc14realloc_moving",
        "8domalloc19posix_memalign_slow",
        "12my_heap_slow",
        "16alloc_class_slow",
        "21alloc_from_pools_slow",
        "9new_arena",
        "11purge_pools",
        "8registry8register",
        "13malloc_refill",
        "5table8standard5start",
        "frame_dummy",
        "pthread_atfork",
    ] {
        // Functions only: `frame_dummy` also names an entry of `.init_array`.
        let places = symbols_at(name, true);
        assert!(!places.is_empty(), "{name} is in the library");
        assert!(
            places.iter().all(|a| first.contains(a)),
            "{name} lies in the first 64 KiB of .text ({first:x?}): {places:x?}"
        );
    }
    assert!(section(".plt") < start, "the PLT comes before .text");
    // The constants the malloc family reads lie with the tables the dynamic loader reads, in the
    // library's first 64 KiB, before the exception tables.
    let except = section(".gcc_except_table");
    for name in ["11BLOCK_MAGIC", "8BOOT_MEM"] {
        let places = at(name);
        assert!(
            !places.is_empty() && places.iter().all(|&a| a < except && a < (64 << 10)),
            "{name} lies before the exception tables, in the first 64 KiB: {places:x?}"
        );
    }
}

#[test]
fn pep_445_api_from_c() {
    run_against_library(
        "api.c",
        &["pool", "pool_debug"],
        &[
            "domains",
            "get/set",
            "arena allocator",
            "statistics",
            "tracing",
            "sampled tracing",
            "debug hooks",
        ],
    );
}

/// PEP 445's hook pattern from C (`hooks.c`): a forwarding hook installed after the domains
/// have allocated, with no hidden call, then set back; an unrelated allocator refused; user
/// domains, the list of domains and change callbacks from C, with a hook on a user domain; user
/// domains removed (refused while a block is live, the old id stale afterwards); and
/// tracemalloc's start and stop 200 times on raw, mem and object while threads allocate and free
/// through every domain and through malloc/free, every block checked, the original allocators
/// back at the end.
#[test]
fn c_hooks_start_and_stop_at_any_time_under_threads() {
    run_against_library(
        "hooks.c",
        &["pool", "pool_debug", "malloc"],
        &[
            "no hidden calls",
            "refusal",
            "user domains and change callbacks",
            "removing domains",
            "tracemalloc start/stop under threads",
        ],
    );
}

/// Per-domain statistics from C (`stats.c`): off by default (`DOMALLOC_ERR_STATS_OFF`, and
/// too late to turn on for the mem domain once it has allocated), on for every domain under
/// `DOMALLOC_STATS=1` (the exported `malloc` and `free` counted exactly in the mem domain); a
/// user domain turned on before its first allocation, with exact counts, bytes and peak from one
/// thread and from four threads whose blocks the main thread frees.
#[test]
fn per_domain_statistics_from_c() {
    let off = [
        "off by default",
        "user domain, one thread",
        "user domain, threads",
    ];
    run_against_library_with("stats.c", &["pool", "pool_debug"], &["off"], &[], &off);
    let on = [
        "mem domain through malloc and free",
        "user domain, one thread",
        "user domain, threads",
    ];
    run_against_library_with(
        "stats.c",
        &["pool", "pool_debug", "malloc"],
        &["on"],
        &[("DOMALLOC_STATS", "1")],
        &on,
    );
}

/// Compiles `source` (a program on `domalloc.h`) linked against the library, runs it under each
/// preset, and checks that it succeeds and prints `ok PART` for every part.
fn run_against_library(source: &str, presets: &[&str], parts: &[&str]) {
    run_against_library_with(source, presets, &[], &[], parts);
}

/// [`run_against_library`] with arguments and environment variables for the program.
fn run_against_library_with(
    source: &str,
    presets: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    parts: &[&str],
) {
    if !installed("gcc") {
        return skip("gcc");
    }
    let lib_dir = library().parent().unwrap().to_path_buf();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let exe = compile(
        source,
        source.trim_end_matches(".c"),
        &[
            &format!("-I{}", include.display()),
            &format!("-L{}", lib_dir.display()),
            "-ldomalloc",
            "-lpthread",
            &format!("-Wl,-rpath,{}", lib_dir.display()),
        ],
    );
    for preset in presets {
        eprintln!("{source} under DOMALLOC={preset}");
        // Cargo's LD_LIBRARY_PATH would find another build of the library before the rpath.
        let out = Command::new(&exe)
            .args(args)
            .envs(env.iter().copied())
            .env("DOMALLOC", preset)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{source} under DOMALLOC={preset}: {:?}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for part in parts {
            assert!(
                text.contains(&format!("ok {part}")),
                "{part} under {preset}:\n{text}"
            );
        }
    }
}

#[test]
fn python_object_churn_with_every_allocation_through_domalloc() {
    if !installed("python3") {
        return skip("python3");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/churn.py");
    let out = same_under_library("python3 churn.py", || {
        let mut c = Command::new("python3");
        c.arg(&script).arg("1").env("PYTHONMALLOC", "malloc");
        c
    });
    assert!(out.starts_with("checksum "), "{out}");
}

#[test]
fn a_cxx_program_reaches_the_librarys_operators_new_and_delete() {
    // The library exports C++'s replaceable operators (every form): under it a C++ program's
    // `new` and `delete` are libdomalloc's, blocks of every form come and go on several threads,
    // and failure keeps the standard's rules (bad_alloc, nullptr, the new_handler first), which
    // the library leaves to libstdc++'s own operators, called when its `malloc` fails.
    if !installed("g++") {
        return skip("g++");
    }
    let exe = compile_with("g++", "new_delete.cpp", "new_delete", &["-std=c++17"]);
    let parts = [
        "operators",
        "blocks",
        "zero",
        "aligned",
        "threads",
        "failure",
        "handler",
    ];
    // A size no allocator serves, beyond any mapping.
    let huge = "0x4000000000000000";
    let runs = std::iter::once(None).chain(["pool", "pool_debug", "debug"].map(Some));
    for preset in runs {
        let mut c = Command::new(&exe);
        c.args([if preset.is_some() { "ours" } else { "theirs" }, huge]);
        if let Some(p) = preset {
            c.env("LD_PRELOAD", library()).env("DOMALLOC", p);
        }
        let out = c.output().expect("the program runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "new_delete under {preset:?}: {:?}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for part in parts {
            assert!(
                text.contains(&format!("ok {part}")),
                "{part} under {preset:?}:\n{text}"
            );
        }
    }
    // A C program that opens a C++ module with RTLD_LOCAL (as Python opens its extensions): the
    // C++ runtime is outside the global scope, where `dlsym(RTLD_NEXT)` looks, yet a failed `new`
    // in the module must still throw (and a nothrow one answer null).
    let module = compile_with(
        "g++",
        "cxx_module.cpp",
        "cxx_module.so",
        &["-shared", "-fPIC"],
    );
    let host = compile("cxx_local.c", "cxx_local", &["-ldl"]);
    for preset in ["pool", "pool_debug"] {
        let out = Command::new(&host)
            .arg(&module)
            .arg(huge)
            .env("LD_PRELOAD", library())
            .env("DOMALLOC", preset)
            .output()
            .expect("the program runs");
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("ok local module"),
            "a C++ module opened locally under DOMALLOC={preset}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn git_makes_a_repository_and_a_commit() {
    if !installed("git") {
        return skip("git");
    }
    let run = |dir: &str| {
        let d = scratch().join(dir);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("file.txt"), "domalloc\n").unwrap();
        let script = "git init -q . && git add file.txt && \
                      git -c user.name=t -c user.email=t@t commit -q -m first && \
                      git log --format=%s && git cat-file -p HEAD^{tree}";
        let mut c = Command::new("sh");
        c.current_dir(&d).args(["-c", script]);
        c
    };
    let n = std::cell::Cell::new(0);
    let out = same_under_library("git", || {
        n.set(n.get() + 1);
        run(&format!("git{}", n.get()))
    });
    assert!(out.contains("first"), "{out}");
}

#[test]
fn gcc_compiles_a_file_to_the_same_object() {
    if !installed("gcc") {
        return skip("gcc");
    }
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("unit.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nstatic int sq(int x) { return x * x; }\n\
         int main(void) { int s = 0; for (int i = 0; i < 10; i++) s += sq(i); printf(\"%d\\n\", s); return 0; }\n",
    )
    .unwrap();
    let objects: Vec<Vec<u8>> = std::iter::once(None)
        .chain(PRESETS.iter().map(Some))
        .map(|preset| {
            let obj = dir.join(format!("unit-{}.o", preset.unwrap_or(&"plain")));
            let mut c = Command::new("gcc");
            c.args(["-O2", "-c", "-o"]).arg(&obj).arg(&src);
            if let Some(p) = preset {
                c.env("LD_PRELOAD", library()).env("DOMALLOC", p);
            }
            let out = c.output().unwrap();
            assert!(out.status.success(), "gcc under {preset:?}: {out:?}");
            std::fs::read(&obj).unwrap()
        })
        .collect();
    assert!(
        objects.windows(2).all(|w| w[0] == w[1]),
        "gcc produced another object"
    );
}

#[test]
fn sqlite3_runs_a_script() {
    if !installed("sqlite3") {
        return skip("sqlite3");
    }
    let sql = "create table t(k text primary key, v integer);\n\
               with recursive n(i) as (select 1 union all select i + 1 from n where i < 20000)\n\
               insert into t select 'key' || i, i * 7 from n;\n\
               create index tv on t(v);\n\
               select count(*), sum(v), max(length(k)) from t;\n\
               delete from t where v % 3 = 0;\n\
               select count(*) from t;\n";
    let out = same_under_library("sqlite3", || {
        let mut c = Command::new("sh");
        c.args(["-c", "printf '%s' \"$0\" | sqlite3 :memory:", sql]);
        c
    });
    assert!(out.contains("20000|"), "{out}");
}

/// Every bad free of `bad_free.c` against every preset it is caught under, each in a child
/// process: the process aborts (SIGABRT), stderr names domalloc's report (the one-line check of
/// the pools, or the debug hooks' report), never glibc's, and no block is handed out twice.
#[test]
fn every_bad_free_is_reported_by_domalloc_and_aborts() {
    use std::os::unix::process::ExitStatusExt;
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile_bad_free("bad_free");
    // (case, presets, what stderr must say under the plain pool, under the debug presets)
    let pool_line = "domalloc: ";
    let hook = "Fatal error in debug ";
    let hook_free = "Fatal error in debug free: ";
    let all = &["pool", "pool_debug", "debug", "malloc_debug", "pool_secure"][..];
    let debug = &["pool_debug", "debug", "malloc_debug"][..];
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("double_free_small", all, "double free", hook_free),
        ("double_free_other_thread", all, "double free", hook_free),
        ("double_free_no_heap_thread", all, "double free", hook_free),
        (
            "interior_no_heap_thread",
            all,
            "invalid pointer (inside a block",
            hook_free,
        ),
        (
            "interior",
            all,
            "invalid pointer (inside a block",
            hook_free,
        ),
        (
            "pool_tail",
            &["pool", "pool_secure"],
            "invalid pointer (no block of the pool was handed out there",
            "",
        ),
        (
            "uncarved",
            &["pool"],
            "invalid pointer (no block of the pool was handed out there",
            "",
        ),
        (
            "realloc_pool_tail",
            &["pool", "pool_secure"],
            "realloc(): invalid pointer (no block of the pool was handed out there",
            "",
        ),
        (
            "pool_tail_no_heap_thread",
            &["pool", "pool_secure"],
            "invalid pointer (no block of the pool was handed out there",
            "",
        ),
        (
            "misaligned",
            all,
            "invalid pointer (inside a block",
            hook_free,
        ),
        ("double_free_medium", all, "double free", hook_free),
        ("double_free_large", all, "double free", hook_free),
        (
            "realloc_freed",
            all,
            "double free",
            "Fatal error in debug realloc",
        ),
        (
            "realloc_freed_medium",
            all,
            "double free",
            "Fatal error in debug realloc",
        ),
        (
            "object_block_freed",
            all,
            "free(): invalid pointer (a block of another allocator or domain)",
            "bad ID: Allocated using API 'o', verified using API 'm'",
        ),
        (
            "usable_size_freed",
            &["pool", "pool_debug", "debug", "malloc_debug"],
            "malloc_usable_size(): ",
            "Fatal error in debug malloc_usable_size",
        ),
        (
            "reserved_no_arena",
            &["pool", "pool_debug", "debug", "malloc_debug"],
            "free(): invalid pointer (in domalloc's reserved memory, but in no arena)",
            hook_free,
        ),
        (
            "reserved_no_arena_no_heap_thread",
            &["pool", "pool_debug", "debug", "malloc_debug"],
            "free(): invalid pointer (",
            hook_free,
        ),
        (
            "realloc_reserved_no_arena",
            &["pool", "pool_debug", "debug", "malloc_debug"],
            "realloc(): invalid pointer (in domalloc's reserved memory, but in no arena)",
            "Fatal error in debug realloc",
        ),
        ("aligned_overflow", debug, "", "bad trailing pad byte"),
        ("aligned_underflow", debug, "", "bad leading pad byte"),
        ("double_free_later", all, "free(): double free", hook_free),
        (
            "double_free_pool_list",
            all,
            "free(): double free",
            hook_free,
        ),
    ];
    for &(case, presets, pool_says, debug_says) in cases {
        for &preset in presets {
            let out = Command::new(&exe)
                .arg(case)
                .env("LD_PRELOAD", library())
                .env("DOMALLOC", preset)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let what = format!(
                "{case} under DOMALLOC={preset}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            );
            assert_eq!(out.status.signal(), Some(libc_sigabrt()), "{what}");
            assert!(!stdout.contains("handed out twice"), "{what}");
            let says = if preset.ends_with("debug") {
                debug_says
            } else {
                pool_says
            };
            assert!(stderr.contains(says), "{what}");
            assert!(
                stderr.contains(pool_line) || stderr.contains(hook),
                "domalloc's report expected: {what}"
            );
            let others = stderr.lines().filter(|l| !l.starts_with(pool_line));
            for line in others {
                for glibc in [
                    "free(): ",
                    "double free or corruption",
                    "munmap_chunk",
                    "tcache",
                ] {
                    assert!(
                        !line.contains(glibc),
                        "glibc's report, not domalloc's: {what}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_pointer_in_the_reservation_is_reported_while_the_mem_domain_counts_its_statistics() {
    use std::os::unix::process::ExitStatusExt;
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile_bad_free("bad_free_stats");
    // With statistics on, `free` takes the counting path (no fast path), which must report a
    // pointer where no arena is as the plain path does, not hand it to glibc.
    for case in [
        "reserved_no_arena",
        "realloc_reserved_no_arena",
        "double_free_small",
    ] {
        let out = Command::new(&exe)
            .arg(case)
            .env("LD_PRELOAD", library())
            .env("DOMALLOC", "pool")
            .env("DOMALLOC_STATS", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc_sigabrt()), "{case}: {out:?}");
        assert!(stderr.starts_with("domalloc: "), "{case}: {stderr}");
        if case != "double_free_small" {
            assert!(
                stderr.contains("invalid pointer (in domalloc's reserved memory, but in no arena)"),
                "{case}: {stderr}"
            );
        }
    }
}

fn libc_sigabrt() -> i32 {
    6
}

/// The randomized driver (`bad_free_driver.c`): a million random valid operations of the malloc
/// family per preset (malloc, calloc, realloc, memalign, free, malloc_usable_size, blocks of 0 B
/// to 265 KiB, every block's pattern checked), with a misuse injected every 10,000 operations in a
/// forked child (a pointer inside a block, a misaligned one, a double free of a small and of a
/// medium block, a realloc of a freed block). Every misuse must end its child with domalloc's
/// report and an abort, and the valid operations must see every block intact.
#[test]
fn a_million_random_operations_with_injected_misuse_are_all_caught() {
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile(
        "bad_free_driver.c",
        "bad_free_driver",
        &["-Wno-free-nonheap-object"],
    );
    let misuses = "interior,misaligned,double_free,double_free_medium,realloc_freed";
    for (preset, seed) in [
        ("pool", "11"),
        ("pool_debug", "12"),
        ("debug", "13"),
        ("pool_secure", "14"),
        ("malloc_debug", "15"),
    ] {
        let out = Command::new(&exe)
            .args(["1000000", "10000", seed, misuses])
            .env("LD_PRELOAD", library())
            .env("DOMALLOC", preset)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "under DOMALLOC={preset}: {:?}\n{stdout}",
            out.status
        );
        assert!(
            stdout.contains("ops=1000000 injected=100 caught=100 disturbed=0"),
            "under DOMALLOC={preset}:\n{stdout}"
        );
    }
}

/// `DOMALLOC_GUARD_SAMPLE=1`: a C program's one-byte overflow, underflow (with
/// `DOMALLOC_GUARD_UNDERFLOW=1`) and use after free on a guarded block die by SIGSEGV at the
/// access, after a report naming the block, its size, the offset and where it was allocated.
#[test]
fn guard_pages_catch_a_c_programs_overflow_underflow_and_use_after_free() {
    use std::os::unix::process::ExitStatusExt;
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile("guard_pages.c", "guard_pages", &[]);
    for (case, first_line, facts) in [
        (
            "overflow",
            "domalloc: guard pages: buffer overflow: a write at",
            "offset 32, 1 byte(s) past its end",
        ),
        (
            "underflow",
            "domalloc: guard pages: buffer underflow: a write at",
            "offset -1, 1 byte(s) before its start",
        ),
        (
            "use_after_free",
            "domalloc: guard pages: use after free: a read at",
            "offset 5 in a freed block",
        ),
    ] {
        let out = Command::new(&exe)
            .arg(case)
            .env("LD_PRELOAD", library())
            .env("DOMALLOC_GUARD_SAMPLE", "1")
            .env(
                "DOMALLOC_GUARD_UNDERFLOW",
                if case == "underflow" { "1" } else { "0" },
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSEGV),
            "{case}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        let block = stdout
            .lines()
            .find_map(|l| l.strip_prefix("block "))
            .unwrap_or_else(|| panic!("{case}: {stdout}"));
        assert!(stderr.contains(first_line), "{case}: {stderr}");
        assert!(stderr.contains(facts), "{case}: {stderr}");
        assert!(
            stderr.contains(&format!("block: {block}, 32 bytes")),
            "{case}: {stderr}"
        );
        assert!(stderr.contains("allocated at: 0x"), "{case}: {stderr}");
        if case == "use_after_free" {
            assert!(stderr.contains("freed at: 0x"), "{case}: {stderr}");
        }
    }
}

/// `python3` (object churn, every allocation through malloc) and `git` (a repository and a
/// commit) print the same with every block guarded while slots last (`DOMALLOC_GUARD_SAMPLE=1`)
/// as without the library.
#[test]
fn python_and_git_print_the_same_under_guard_pages() {
    let guarded = |mut c: Command| {
        c.env("LD_PRELOAD", library())
            .env("DOMALLOC_GUARD_SAMPLE", "1");
        c
    };
    if installed("python3") {
        let script = "import collections\n\
                      d = {}\n\
                      for i in range(200000):\n    \
                          d[str(i)] = [i, str(i) * 3, (i, i + 1)]\n    \
                          if i % 3 == 0: del d[str(i // 2)]\n\
                      c = collections.Counter(len(v[1]) for v in d.values())\n\
                      print(len(d), sorted(c.items())[:5], sum(v[0] for v in d.values()))";
        let make = || {
            let mut c = Command::new("python3");
            c.args(["-c", script]).env("PYTHONMALLOC", "malloc");
            c
        };
        compare_with_plain("python3 -c (churn)", make, guarded);
    } else {
        skip("python3");
    }
    if installed("git") {
        let dir = scratch().join("guard-git");
        let _ = std::fs::remove_dir_all(&dir);
        let make = || {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("file.txt"), "guarded\n").unwrap();
            let mut c = Command::new("sh");
            c.current_dir(&dir).args([
                "-c",
                "git init -q . && git add file.txt && \
                 git -c user.name=t -c user.email=t@t commit -q -m first && \
                 git log --format=%s && git cat-file -p HEAD^{tree} && git --version",
            ]);
            c
        };
        compare_with_plain("git", make, guarded);
    } else {
        skip("git");
    }
}

/// Runs `make()` without the library and `wrap(make())` under it; asserts both succeed and print
/// the same.
fn compare_with_plain(what: &str, make: impl Fn() -> Command, wrap: impl Fn(Command) -> Command) {
    let plain = make().output().expect("the program runs");
    assert!(
        plain.status.success(),
        "{what} fails without the library: {plain:?}"
    );
    let got = wrap(make()).output().expect("the program runs");
    assert!(
        got.status.success(),
        "{what} under guard pages: {:?}\nstderr: {}",
        got.status,
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "{what} printed something else under guard pages"
    );
}

/// `DOMALLOC_TRACE_SAMPLE` under `LD_PRELOAD`: sampled tracing from the library's load, a
/// profile written at exit to `DOMALLOC_TRACE_OUT`, whose estimate of the 32 MiB the program
/// holds at exit is within a quarter (about 500 samples at 64 KiB); a bad value is reported and
/// traces nothing.
#[test]
fn sampled_tracing_from_the_environment_writes_a_profile_at_exit() {
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile("trace_env.c", "trace_env", &["-g"]);
    let dir = scratch().join("trace_env-profiles");
    std::fs::create_dir_all(&dir).unwrap();
    for preset in PRESETS {
        let out_path = dir.join(format!("profile-{preset}.txt"));
        let _ = std::fs::remove_file(&out_path);
        let out = Command::new(&exe)
            .env("LD_PRELOAD", library())
            .env("DOMALLOC", preset)
            .env("DOMALLOC_TRACE_SAMPLE", "64k")
            .env("DOMALLOC_TRACE_OUT", &out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok held"),
            "trace_env under DOMALLOC={preset}: {out:?}"
        );
        let profile = std::fs::read_to_string(&out_path)
            .unwrap_or_else(|e| panic!("no profile under DOMALLOC={preset}: {e}"));
        assert!(
            profile.contains("one sample every 65536 bytes"),
            "{profile}"
        );
        let estimate: f64 = profile
            .split("estimated: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no estimate in the profile:\n{profile}"));
        let held = (8192 * 4096) as f64;
        assert!(
            (estimate - held).abs() < held / 4.0,
            "estimated {estimate} bytes at exit, 32 MiB held:\n{profile}"
        );
        assert!(profile.contains("Top "), "{profile}");
        // The top site is the program's line, past libdomalloc's own frames.
        let top = profile
            .lines()
            .find(|l| l.starts_with("#1: "))
            .unwrap_or_else(|| panic!("no top site:\n{profile}"));
        assert!(top.contains("trace_env.c:"), "{profile}");
        assert!(profile.contains("Total allocated size"), "{profile}");
        eprintln!("{profile}");
    }
    // A value that is not a size: one line on stderr, no profile.
    let out_path = dir.join("profile-bad.txt");
    let _ = std::fs::remove_file(&out_path);
    let out = Command::new(&exe)
        .env("LD_PRELOAD", library())
        .env("DOMALLOC_TRACE_SAMPLE", "lots")
        .env("DOMALLOC_TRACE_OUT", &out_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DOMALLOC_TRACE_SAMPLE=lots is not a size"),
        "{stderr}"
    );
    assert!(!out_path.exists(), "a bad value traces nothing");
}

/// `DOMALLOC_TRACE_OUT` chooses the profile's format by its name: DHAT's JSON for `.json`,
/// pprof's gzipped protobuf for `.pb.gz`; both name the program's allocating line.
#[test]
fn the_profile_at_exit_takes_the_format_its_name_asks_for() {
    if !installed("gcc") {
        return skip("gcc");
    }
    let exe = compile("trace_env.c", "trace_env", &["-g"]);
    let dir = scratch().join("trace_env-formats");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["profile.json", "profile.pb.gz"] {
        let out_path = dir.join(name);
        let _ = std::fs::remove_file(&out_path);
        let out = Command::new(&exe)
            .env("LD_PRELOAD", library())
            .env("DOMALLOC_TRACE_SAMPLE", "64k")
            .env("DOMALLOC_TRACE_OUT", &out_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let bytes = std::fs::read(&out_path).unwrap_or_else(|e| panic!("no {name}: {e}"));
        if name.ends_with(".json") {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains("\"dhatFileVersion\":2"), "{text}");
            assert!(text.contains("trace_env.c:"), "{text}");
        } else {
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{name} is gzip");
            let unzipped = Command::new("gzip")
                .args(["-dc"])
                .arg(&out_path)
                .output()
                .unwrap();
            assert!(unzipped.status.success());
            let raw = String::from_utf8_lossy(&unzipped.stdout);
            assert!(raw.contains("inuse_space"), "{raw}");
            assert!(raw.contains("trace_env.c"), "{raw}");
        }
    }
}
