//! Links `libdomalloc.so` with `hot-text.ld` on x86-64 linux with a GNU toolchain (whose default
//! linker, rust-lld, takes a script of `INSERT` commands beside its default layout): the
//! allocator's code first in the text, so that fewer of the library's pages become resident in a
//! program (see the script). `DOMALLOC_NO_HOT_TEXT=1` at build time links without it (for a
//! linker that does not take such a script).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-env-changed=DOMALLOC_NO_HOT_TEXT");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let off = env::var_os("DOMALLOC_NO_HOT_TEXT").is_some_and(|v| v != "0");
    if os == "linux" && arch == "x86_64" && target_env == "gnu" && !off {
        let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let script = Path::new(&dir).join("hot-text.ld");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
    }
}
