/* The pair loop: malloc(SIZE) + free, OPS times (argv: ops, size). Prints ns_per_op. Also the
 * program benches/c/count.sh counts instructions of. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    size_t sz = argc > 2 ? (size_t)atol(argv[2]) : 64;
    void *volatile sink;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        void *p = malloc(sz);
        sink = p;
        free(p);
    }
    (void)sink;
    printf("ns_per_op=%.3f\n", (now_ns() - t0) / (double)n);
    return 0;
}
