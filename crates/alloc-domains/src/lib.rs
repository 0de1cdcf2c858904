//! # alloc-domains: PEP 445 allocator domains
//!
//! This crate will hold the domain table: the raw, mem and object domains plus domains users add by
//! name; `get`, `set` and `hook` of each domain's allocator with safe replacement; change callbacks;
//! `setup_debug_hooks()`; configuration from the environment (like `PYTHONMALLOC`); and a global
//! front that routes Rust's `#[global_allocator]` through a domain.
//!
//! Nothing is exported yet: the table arrives with its tests. Until then, compose allocators from
//! [`alloc_core`] directly.
