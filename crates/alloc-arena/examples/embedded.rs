//! A `#[global_allocator]` with no OS and no C library: the pool over a static buffer, with its
//! large blocks from the same buffer (see `support/embedded_heap.rs`). On the host it runs and
//! prints what it saw; for a bare-metal target it builds as a `no_std`, `no_main` program whose
//! startup code calls `embedded_main`:
//!
//! ```sh
//! cargo run -p alloc-arena --example embedded
//! cargo check -p alloc-arena --no-default-features --target thumbv7em-none-eabihf --example embedded
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

#[path = "support/embedded_heap.rs"]
mod embedded_heap;

#[cfg(not(target_os = "none"))]
fn main() {
    let outcome = embedded_heap::run();
    println!("{outcome:?}");
    println!("{}", embedded_heap::GLOBAL.inner().stats());
    assert!(outcome.small_in_region && outcome.large_in_region);
}

/// The entry a bare-metal startup routine calls: the checksum of the run, or 0 if a block came
/// from outside the region.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub extern "C" fn embedded_main() -> u64 {
    let outcome = embedded_heap::run();
    if outcome.small_in_region && outcome.large_in_region {
        outcome.checksum
    } else {
        0
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
