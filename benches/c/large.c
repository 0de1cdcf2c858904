/* A large-block loop (argv: ops): 8 live blocks of 64 KiB to 1 MiB, a random one replaced OPS
 * times; the first and last page of each block written. Prints ns_per_op. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

int main(int argc, char **argv) {
    long ops = argc > 1 ? atol(argv[1]) : 20000;
    uint64_t x = 88172645463325252ull;
    char *slot[8] = {0};
    double t0 = now_ns();
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned k = x % 8;
        size_t size = (64u << 10) + (x >> 8) % ((1u << 20) - (64u << 10) + 1);
        free(slot[k]);
        slot[k] = malloc(size);
        slot[k][0] = (char)i;
        slot[k][size - 1] = (char)i;
    }
    for (int k = 0; k < 8; k++) free(slot[k]);
    printf("ns_per_op=%.3f\n", (now_ns() - t0) / (double)ops);
    return 0;
}
