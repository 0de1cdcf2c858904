//! Fork while other threads allocate: with the domains' fork handlers registered, the child can
//! always allocate (no lock inherited from a thread it does not have); each child is given a few
//! seconds, and one that hangs fails the test.
#![cfg(unix)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloc_domains::{GlobalFront, MEM};

#[global_allocator]
static GLOBAL: GlobalFront = GlobalFront::new(MEM);

extern "C" fn prepare() {
    alloc_domains::prepare_fork();
}
extern "C" fn parent() {
    // SAFETY: pthread_atfork runs this after `prepare`, on the forking thread.
    unsafe { alloc_domains::after_fork_parent() }
}
extern "C" fn child() {
    // SAFETY: pthread_atfork runs this in the child, on the thread the fork returned in, after
    // `prepare` ran in the parent.
    unsafe { alloc_domains::after_fork_child() }
}

/// Waits for `pid` for at most `limit`; kills it and returns None if it does not end.
fn wait_for(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waiting on our own child, with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: our own child, still running.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn children_forked_under_allocation_pressure_can_allocate() {
    // Debug hooks too, so the guard decorator's locks are part of what must be taken.
    assert!(alloc_domains::setup_debug_hooks().is_empty());
    // SAFETY: registering plain functions that only call the domains' fork handlers.
    let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    assert_eq!(r, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep: Vec<String> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    keep.push(format!("thread {t} string {i}"));
                    if keep.len() > 500 {
                        keep.drain(..250);
                    }
                    i += 1;
                }
                i
            })
        })
        .collect();
    // Under valgrind (`cargo xtask valgrind`), which runs one thread at a time and starts every
    // child afresh at its pace, a few rounds (each one a child that allocates under memcheck).
    let rounds = if std::env::var_os("DOMALLOC_UNDER_VALGRIND").is_some() {
        3
    } else {
        100
    };
    for round in 0..rounds {
        // SAFETY: the child only allocates through the domains (made usable by the handlers),
        // checks, and leaves with `_exit`, running no destructor of the parent's state.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let v: Vec<String> = (0..2000).map(|i| format!("child {round} {i}")).collect();
            let ok = v
                .iter()
                .enumerate()
                .all(|(i, s)| s.ends_with(&i.to_string()));
            drop(v);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let status = wait_for(pid, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("child {round} hung: a lock was inherited held"));
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child {round} failed: status {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
}
