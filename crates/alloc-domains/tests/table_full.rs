//! The table is bounded, and says so (its own binary: it fills the table).

use alloc_core::System;
use alloc_domains::{DomainError, MAX_DOMAINS, add_domain};

#[test]
fn adding_past_the_last_slot_is_a_typed_error() {
    let mut added = 0;
    let err = loop {
        let name: &'static str = Box::leak(format!("fill-{added}").into_boxed_str());
        match add_domain(name, &System) {
            Ok(_) => added += 1,
            Err(e) => break e,
        }
        assert!(added <= MAX_DOMAINS);
    };
    assert_eq!(added, MAX_DOMAINS - 3, "every slot but the standard three");
    assert_eq!(err, DomainError::TableFull { max: MAX_DOMAINS });
}
