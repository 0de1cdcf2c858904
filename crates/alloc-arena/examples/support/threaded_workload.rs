//! The workload of the `threaded_program` example (also run by `tests/global_program.rs`): std
//! collections, strings, channels and threads, with blocks made on one thread and dropped on
//! another, checked at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

/// Runs `threads` workers of `items` items each; returns a summary line, panicking if any result
/// is wrong.
pub fn run(threads: usize, items: usize) -> String {
    let (tx, rx) = mpsc::channel::<(usize, Vec<String>)>();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut index: HashMap<String, Vec<u64>> = HashMap::new();
                let mut ordered: BTreeMap<u64, String> = BTreeMap::new();
                let mut batch = Vec::new();
                for i in 0..items {
                    let key = format!("worker {t} key {}", i % 997);
                    index.entry(key.clone()).or_default().push(i as u64);
                    ordered.insert(i as u64, key);
                    batch.push(format!("{t}:{i}"));
                    if batch.len() == 64 {
                        // Strings made here are dropped by the collector thread.
                        tx.send((t, std::mem::take(&mut batch))).unwrap();
                    }
                    if i % 5000 == 4999 {
                        // A short-lived helper thread that allocates and exits.
                        let words: Vec<String> = ordered
                            .range(i as u64 - 100..=i as u64)
                            .map(|(_, v)| v.clone())
                            .collect();
                        let n = thread::spawn(move || words.iter().map(String::len).sum::<usize>())
                            .join()
                            .unwrap();
                        assert!(n > 0);
                    }
                }
                tx.send((t, batch)).unwrap();
                let total: usize = index.values().map(Vec::len).sum();
                assert_eq!(total, items);
                assert_eq!(ordered.len(), items);
                index.len()
            })
        })
        .collect();
    drop(tx);
    let collector = thread::spawn(move || {
        let mut per_thread: HashMap<usize, usize> = HashMap::new();
        let mut bytes = 0usize;
        for (t, batch) in rx {
            for s in &batch {
                let (who, _) = s.split_once(':').expect("t:i");
                assert_eq!(who.parse::<usize>().unwrap(), t);
                bytes += s.len();
            }
            *per_thread.entry(t).or_default() += batch.len();
        }
        (per_thread, bytes)
    });
    let keys: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let (per_thread, bytes) = collector.join().unwrap();
    assert_eq!(per_thread.len(), threads);
    assert!(per_thread.values().all(|&n| n == items));
    format!(
        "{threads} threads x {items} items: {keys} distinct keys, {} strings ({bytes} bytes) \
         moved between threads",
        threads * items
    )
}
