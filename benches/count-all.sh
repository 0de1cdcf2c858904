#!/bin/bash
# Instructions per malloc+free pair, counted by callgrind, for each bench allocator at 64, 256
# and 2048 bytes, then the C library at 64, 1024 and 100,000 bytes and its other entry points
# (`calloc`, `realloc` in place and moving, `posix_memalign`: benches/c/count.sh).
# Usage: benches/count-all.sh [REPO] [TARGET_DIR]   (after cargo build --release -p
# domalloc-benches -p alloc-capi)
cd "${1:-$(dirname "$0")/..}"; T=${2:-./target}
b=$T/release/domalloc-bench
for a in pool pool-heap domain counting guarded system; do
  for s in 64 256 2048; do
   r() { DOMALLOC_BENCH_ALLOCATOR=$a valgrind --tool=callgrind --callgrind-out-file=/dev/null $b --workload pairs --allocator $a --samples 1 --scale $1 --sizes $s 2>&1 | sed -n 's/.*refs: *//p' | tr -d ,; }
   x=$(r 0.02); y=$(r 0.04); echo "$a $s $(( (y-x)/80000 ))"
  done
done
for s in 64 1024 100000 calloc realloc realloc_move realloc_medium realloc_medium_move memalign; do
  bash benches/c/count.sh $T/release/libdomalloc.so $s
done
