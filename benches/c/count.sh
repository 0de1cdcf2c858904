#!/bin/bash
# Instructions per iteration of a C loop under a preloaded allocator, counted by callgrind: the
# difference of two runs (100,000 and 200,000 iterations) over 100,000, so start-up cancels out.
# Usage: benches/c/count.sh [LIBRARY.so|""] [SIZE|MODE]
#   SIZE (a number, 64 by default): the malloc(SIZE) + free pairs of benches/c/pairs.c;
#   MODE (calloc, realloc, realloc_move, realloc_medium, realloc_medium_move, memalign): a loop of
#   benches/c/entry.c.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=${1:-}; arg=${2:-64}
if [[ $arg =~ ^[0-9]+$ ]]; then src=pairs; what="size $arg"; unit="a pair"
else src=entry; what=$arg; unit="an iteration"; fi
exe=$(mktemp -d)/$src
gcc -O2 -o "$exe" "$here/$src.c"
run() {
    LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$1" "$arg" 2>&1 |
        sed -n 's/.*refs: *//p' | tr -d ,
}
a=$(run 100000); b=$(run 200000)
echo "${lib:-glibc} $what: $(( (b - a) / 100000 )) instructions $unit"
