//! The mem domain's sized frees (`GlobalAlloc::dealloc` through `GlobalFront`), which take the
//! pool's sized fast path, or go straight to the medium pool's chain for a block above the small
//! pool's threshold: random allocations, reallocations across every size range (small pool,
//! medium, large, spans) and frees, on this thread and across threads, each block's contents
//! checked before it is resized or freed.

use std::alloc::{GlobalAlloc, Layout};

use alloc_domains::{GlobalFront, MEM};

static FRONT: GlobalFront = GlobalFront::new(MEM);

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn size(&mut self) -> usize {
        match self.next() % 10 {
            0..=5 => 1 + (self.next() % 512) as usize,
            6..=7 => 513 + (self.next() % 8000) as usize,
            8 => 8193 + (self.next() % 60_000) as usize,
            _ => 65_537 + (self.next() % 300_000) as usize,
        }
    }
}

struct Block {
    ptr: *mut u8,
    layout: Layout,
    tag: u8,
}

// SAFETY: a block is owned by whoever holds it; moved between threads whole.
unsafe impl Send for Block {}

fn fill(b: &Block) {
    // SAFETY: the block is live and `layout.size()` bytes long.
    unsafe { std::ptr::write_bytes(b.ptr, b.tag, b.layout.size()) };
}

fn check(b: &Block, len: usize) {
    // SAFETY: the block is live and at least `len` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts(b.ptr, len) };
    assert!(
        bytes.iter().all(|&x| x == b.tag),
        "block {:p} lost its contents",
        b.ptr
    );
}

fn make(rng: &mut Rng) -> Block {
    let align = if rng.next().is_multiple_of(8) { 64 } else { 8 };
    let layout = Layout::from_size_align(rng.size(), align).unwrap();
    // SAFETY: a non-zero size.
    let ptr = unsafe { FRONT.alloc(layout) };
    assert!(!ptr.is_null());
    let b = Block {
        ptr,
        layout,
        tag: rng.next() as u8,
    };
    fill(&b);
    b
}

fn free(b: Block) {
    check(&b, b.layout.size());
    // SAFETY: a live block of FRONT with its layout, freed once.
    unsafe { FRONT.dealloc(b.ptr, b.layout) };
}

fn churn(seed: u64, ops: usize, handoff: &mut Vec<Block>) {
    let mut rng = Rng(seed);
    let mut live: Vec<Block> = Vec::new();
    for _ in 0..ops {
        match rng.next() % 4 {
            0 | 1 => live.push(make(&mut rng)),
            2 if !live.is_empty() => {
                let i = (rng.next() as usize) % live.len();
                let b = live.swap_remove(i);
                free(b);
            }
            _ if !live.is_empty() => {
                let i = (rng.next() as usize) % live.len();
                let b = &mut live[i];
                let new_size = rng.size();
                check(b, b.layout.size());
                // SAFETY: a live block of FRONT with its layout; a non-zero new size.
                let p = unsafe { FRONT.realloc(b.ptr, b.layout, new_size) };
                assert!(!p.is_null());
                let kept = b.layout.size().min(new_size);
                b.ptr = p;
                check(b, kept);
                b.layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
                fill(b);
            }
            _ => {}
        }
    }
    // Half goes to another thread to free, half is freed here.
    for (i, b) in live.into_iter().enumerate() {
        if i.is_multiple_of(2) {
            handoff.push(b);
        } else {
            free(b);
        }
    }
}

#[test]
fn sized_frees_of_every_size_on_this_thread_and_across_threads_keep_every_block() {
    let mut mine = Vec::new();
    churn(0x9E37_79B9_7F4A_7C15, 20_000, &mut mine);
    let theirs = std::thread::spawn(|| {
        let mut out = Vec::new();
        churn(0xD1B5_4A32_D192_ED03, 20_000, &mut out);
        out
    })
    .join()
    .unwrap();
    // Each thread frees the other's blocks.
    let t = std::thread::spawn(move || mine.into_iter().for_each(free));
    theirs.into_iter().for_each(free);
    t.join().unwrap();
}
