/* Larson's loop on one thread, without its threads: a working set of 5,000 blocks; each step
 * frees a block chosen at random and puts a block of a random size in [LO, HI] in its place,
 * writing its first byte (argv: lo, hi, steps). Prints ns a step. With sizes on both sides of
 * 512 bytes, an allocator whose path depends on that boundary takes one of two at random.
 *
 *   gcc -O2 -o /tmp/mixed_sizes benches/c/mixed_sizes.c
 *   LD_PRELOAD=target/release/libdomalloc.so /tmp/mixed_sizes 8 1000 20000000 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { LIVE = 5000, DRAWS = 1 << 16 };

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LO HI STEPS\n", argv[0]);
        return 2;
    }
    size_t lo = (size_t)atol(argv[1]), hi = (size_t)atol(argv[2]);
    long steps = atol(argv[3]);
    static void *live[LIVE];
    static unsigned size[DRAWS], victim[DRAWS];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < DRAWS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size[i] = (unsigned)(lo + x % (hi - lo + 1));
        victim[i] = (unsigned)((x >> 32) % LIVE);
    }
    for (int i = 0; i < LIVE; i++) live[i] = malloc(size[i]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long s = 0; s < steps; s++) {
        unsigned v = victim[s & (DRAWS - 1)];
        free(live[v]);
        char *p = malloc(size[(s * 7) & (DRAWS - 1)]);
        p[0] = 'a';
        live[v] = p;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / steps);
    for (int i = 0; i < LIVE; i++) free(live[i]);
    return 0;
}
