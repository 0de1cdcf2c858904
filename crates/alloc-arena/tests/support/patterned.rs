//! Blocks that carry a pattern derived from their address, checked byte by byte before they are
//! freed: shared by the thread tests.

use alloc_arena::PoolAllocator;
use alloc_core::DomainAllocator;

/// A live block of the pool and its size; its bytes hold `pattern`.
pub struct Block {
    pub ptr: *mut u8,
    pub size: usize,
}
// SAFETY: a block is plain memory handed from thread to thread by value.
unsafe impl Send for Block {}

pub fn pattern(ptr: *mut u8, i: usize) -> u8 {
    ((ptr as usize >> 4) as u8) ^ (i as u8).wrapping_mul(31)
}

pub fn make(pool: &PoolAllocator, size: usize) -> Block {
    let ptr = pool.malloc(size).expect("out of memory").as_ptr();
    for i in 0..size {
        // SAFETY: `i < size` bytes of a live block.
        unsafe { ptr.add(i).write(pattern(ptr, i)) };
    }
    Block { ptr, size }
}

pub fn check_and_free(pool: &PoolAllocator, b: Block) {
    for i in 0..b.size {
        // SAFETY: `i < size` bytes of a live block.
        let got = unsafe { b.ptr.add(i).read() };
        assert_eq!(
            got,
            pattern(b.ptr, i),
            "block {:p} of {} bytes damaged at {i}",
            b.ptr,
            b.size
        );
    }
    // SAFETY: a live block of the pool, freed once.
    unsafe { pool.free(b.ptr) };
}
