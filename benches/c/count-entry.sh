#!/bin/bash
# Instructions per iteration of a loop of benches/c/entry.c (calloc, realloc, realloc_move,
# memalign) under a preloaded allocator, counted by callgrind as count.sh counts the pairs: the
# difference of two runs (100,000 and 200,000 iterations) over 100,000.
# Usage: benches/c/count-entry.sh [LIBRARY.so|""] MODE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=${1:-}; mode=${2:-calloc}
exe=$(mktemp -d)/entry
gcc -O2 -o "$exe" "$here/entry.c"
run() {
    LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$1" "$mode" 2>&1 |
        sed -n 's/.*refs: *//p' | tr -d ,
}
a=$(run 100000); b=$(run 200000)
echo "${lib:-glibc} $mode: $(( (b - a) / 100000 )) instructions an iteration"
