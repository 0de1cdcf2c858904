/* A loop of malloc(SIZE) + free pairs (argv: pairs, size), for benches/c/count.sh and for
 * timing the exported malloc under LD_PRELOAD against the peers. */
#include <stdlib.h>
#include <stdio.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    size_t sz = argc > 2 ? atol(argv[2]) : 64;
    void *volatile sink;
    for (long i = 0; i < n; i++) { void *p = malloc(sz); sink = p; free(p); }
    (void)sink;
    return 0;
}
