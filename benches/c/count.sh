#!/bin/bash
# Instructions per malloc+free pair of a C loop (benches/c/pairs.c) under a preloaded allocator,
# counted by callgrind: the difference of two runs (100,000 and 200,000 pairs) over 100,000, so
# start-up cancels out. Usage: benches/c/count.sh [LIBRARY.so|""] [SIZE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=${1:-}; size=${2:-64}
exe=$(mktemp -d)/pairs
gcc -O2 -o "$exe" "$here/pairs.c"
run() {
    LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" "$1" "$size" 2>&1 |
        sed -n 's/.*refs: *//p' | tr -d ,
}
a=$(run 100000); b=$(run 200000)
echo "${lib:-glibc} size $size: $(( (b - a) / 100000 )) instructions a pair"
