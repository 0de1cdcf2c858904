/* A multi-threaded local loop (argv: ops per thread, threads): each thread keeps 64 blocks of its
 * own, 16 B to 4 KiB, and replaces a random one OPS times (a free and a malloc; every block is
 * written). Prints ns_per_op: wall time over the operations of one thread. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static long ops;

static void *worker(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    char *slot[64] = {0};
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned k = x % 64;
        size_t size = 16 + (x >> 8) % 4081;
        free(slot[k]);
        slot[k] = malloc(size);
        slot[k][0] = (char)i;
        slot[k][size - 1] = (char)i;
    }
    for (int k = 0; k < 64; k++) free(slot[k]);
    return NULL;
}

int main(int argc, char **argv) {
    ops = argc > 1 ? atol(argv[1]) : 100000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    printf("ns_per_op=%.3f\n", run_threads(worker, threads) / (double)ops);
    return 0;
}
