//! The table is bounded, and says so (its own binary: it fills the table).

use alloc_core::System;
use alloc_domains::{DomainError, MAX_DOMAINS, add_domain};

#[test]
fn adding_past_the_last_slot_is_a_typed_error() {
    const NAMES: [&str; MAX_DOMAINS] = [
        "fill-0", "fill-1", "fill-2", "fill-3", "fill-4", "fill-5", "fill-6", "fill-7", "fill-8",
        "fill-9", "fill-10", "fill-11", "fill-12", "fill-13", "fill-14", "fill-15",
    ];
    let mut added = 0;
    let err = loop {
        match add_domain(NAMES[added], &System) {
            Ok(_) => added += 1,
            Err(e) => break e,
        }
        assert!(added <= MAX_DOMAINS);
    };
    assert_eq!(added, MAX_DOMAINS - 3, "every slot but the standard three");
    assert_eq!(err, DomainError::TableFull { max: MAX_DOMAINS });
}
