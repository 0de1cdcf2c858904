//! The conformance suite on each domain handle (this binary never changes the standard domains).

use alloc_domains::{MEM, OBJECT, RAW};

alloc_core::conformance_tests!(raw_domain_conforms, RAW);
alloc_core::conformance_tests!(mem_domain_conforms, MEM);
alloc_core::conformance_tests!(object_domain_conforms, OBJECT);
alloc_core::global_alloc_conformance_tests!(
    global_front_conforms,
    alloc_domains::GlobalFront::new(MEM)
);

#[test]
fn standard_domains_are_listed_with_their_default_allocators() {
    let ds = alloc_domains::domains();
    let names: Vec<_> = ds
        .iter()
        .take(3)
        .map(|d| (d.name, d.allocator.as_str()))
        .collect();
    assert_eq!(
        names,
        [("raw", "system"), ("mem", "pool"), ("object", "pool")]
    );
    assert_eq!(alloc_domains::preset(), alloc_domains::Preset::Pool);
}
