//! The first part of `cargo xtask valgrind`: memcheck sees inside domalloc's pools as it sees
//! inside glibc's heap. One C program with four bugs (`xtask/data/memcheck_bugs.c`: a use after
//! free, an overflow, an uninitialised read and a leak) runs under memcheck twice, with glibc's
//! `malloc` and with `libdomalloc.so` built with the `valgrind` feature preloaded; the errors
//! memcheck reports (their kinds, and where the address lies relative to which block) must be
//! the same, and must be the four bugs.
//!
//! `--soname-synonyms=somalloc=nouserintercepts` keeps memcheck from replacing the `malloc` of a
//! preloaded library with its own (it still replaces glibc's): the program's `malloc` is then
//! domalloc's, which tells memcheck about its blocks through client requests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Result, cargo, root};

/// Builds the library with the feature, the program, runs both and compares.
pub(crate) fn same_reports_as_glibc() -> Result {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "alloc-capi",
        "--features",
        "valgrind",
        // Its own directory: the library without the feature keeps its place in target/release.
        "--target-dir",
        "target/valgrind",
    ]);
    let lib = crate::build(
        "building libdomalloc with --features valgrind",
        build,
        "domalloc",
        ".so",
    )?;
    let dir = std::env::temp_dir().join(format!("domalloc-memcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = dir.join("memcheck_bugs");
    let src = root().join("xtask/data/memcheck_bugs.c");
    // -O0: every access of the program stays as written.
    let status = Command::new("cc")
        .args(["-O0", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    if !status.success() {
        return Err(format!("cc could not compile {}", src.display()));
    }
    eprintln!(
        "\n==> memcheck on {} under glibc and under domalloc",
        src.display()
    );
    let glibc = memcheck(&exe, None)?;
    let domalloc = memcheck(&exe, Some(&lib))?;
    let _ = std::fs::remove_dir_all(&dir);
    let (g, d) = (errors(&glibc), errors(&domalloc));
    for kind in EXPECTED {
        if !g.iter().any(|e| e.starts_with(kind)) {
            return Err(format!(
                "memcheck under glibc did not report `{kind}`: the program lost a bug\n{glibc}"
            ));
        }
    }
    if g != d {
        return Err(format!(
            "memcheck reports differ\n  glibc:    {g:?}\n  domalloc: {d:?}\n\
             --- glibc ---\n{glibc}\n--- domalloc ---\n{domalloc}"
        ));
    }
    for e in &d {
        eprintln!("    both: {e}");
    }
    eprintln!("    ok: the same {} reports", d.len());
    Ok(())
}

/// The four bugs' reports, as `errors` words them (each must be among glibc's).
const EXPECTED: [&str; 4] = [
    "Invalid read of size 1",
    "Invalid write of size 1",
    "Conditional jump or move depends on uninitialised value(s)",
    "208 bytes in 1 blocks are definitely lost",
];

/// Memcheck's report (stderr) of `exe`, with `lib` preloaded as the program's `malloc`, or
/// glibc's.
fn memcheck(exe: &Path, lib: Option<&PathBuf>) -> Result<String> {
    let mut c = Command::new("valgrind");
    c.args([
        "--leak-check=full",
        "--soname-synonyms=somalloc=nouserintercepts",
    ])
    .arg(exe)
    .env_remove("LD_PRELOAD")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    if let Some(lib) = lib {
        // valgrind passes the environment on to the program it runs.
        c.env("LD_PRELOAD", lib).env("DOMALLOC", "pool");
    }
    let out = c
        .output()
        .map_err(|e| format!("valgrind (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "valgrind failed ({})\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The errors of a memcheck report, in order, without what differs between two runs (process
/// ids, addresses, stack frames, loss record numbers): each error's first line, the line that
/// places its address relative to a block (`is 8 bytes inside a block of size 48 free'd`), and
/// each leak record's size and kind.
fn errors(report: &str) -> Vec<String> {
    const HEADLINES: [&str; 9] = [
        "Invalid read of size",
        "Invalid write of size",
        "Conditional jump or move depends on uninitialised",
        "Use of uninitialised value",
        "Invalid free()",
        "Mismatched free()",
        "Syscall param",
        "Source and destination overlap",
        "Argument 'size' of function",
    ];
    let mut found = Vec::new();
    for line in report.lines() {
        // "==1234== text": the text after the second "==".
        let Some(text) = line
            .strip_prefix("==")
            .and_then(|l| l.split_once("== "))
            .map(|(_, t)| t.trim())
        else {
            continue;
        };
        if HEADLINES.iter().any(|h| text.starts_with(h)) {
            found.push(text.to_string());
        } else if let Some(place) = text
            .strip_prefix("Address 0x")
            .and_then(|rest| rest.split_once(' '))
            .map(|(_, place)| place)
            .filter(|place| place.contains("a block of size"))
        {
            found.push(format!("address {place}"));
        } else if let Some((what, _)) = text.split_once(" in loss record ") {
            found.push(what.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::errors;

    #[test]
    fn errors_keep_kinds_and_places_and_drop_what_changes_between_runs() {
        let report = "\
==17121== Memcheck, a memory error detector
==17121== Invalid read of size 1
==17121==    at 0x1091BA: main (memcheck_bugs.c:20)
==17121==  Address 0x5204008 is 8 bytes inside a block of size 48 free'd
==17121==    at 0x48AC4CD: free (lib.rs:145)
==17121== Conditional jump or move depends on uninitialised value(s)
==17121== 208 bytes in 1 blocks are definitely lost in loss record 1 of 1
==17121== ERROR SUMMARY: 3 errors from 3 contexts (suppressed: 0 from 0)
";
        assert_eq!(
            errors(report),
            [
                "Invalid read of size 1",
                "address is 8 bytes inside a block of size 48 free'd",
                "Conditional jump or move depends on uninitialised value(s)",
                "208 bytes in 1 blocks are definitely lost",
            ]
        );
    }
}
