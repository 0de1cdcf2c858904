/* Four bugs memcheck must report alike whether malloc is glibc's or domalloc's (preloaded, built
 * with the `valgrind` feature): `cargo xtask valgrind` runs this program under both and compares
 * the reports. Every size is a multiple of 16, so a pool block has the size the program asked
 * for and memcheck names the same block sizes under both allocators. Each bug uses a size class
 * of its own, so that no earlier block of the program sits next to it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keep the compiler from removing the accesses (the program is also built with -O0). */
static volatile unsigned char sink;
static void *volatile hold;

int main(void) {
    /* 1. A use after free: a read of a freed block. */
    unsigned char *freed = malloc(48);
    if (!freed) return 1;
    memset(freed, 1, 48);
    free(freed);
    sink = ((volatile unsigned char *)freed)[8];

    /* 2. An overflow: a write one byte past the end of a block. */
    unsigned char *block = malloc(176);
    if (!block) return 1;
    memset(block, 2, 176);
    ((volatile unsigned char *)block)[176] = 3;
    free(block);

    /* 3. An uninitialised read: a branch on a byte never written. */
    unsigned char *fresh = malloc(96);
    if (!fresh) return 1;
    if (((volatile unsigned char *)fresh)[5] == 42) sink = 1;
    free(fresh);

    /* 4. A leak: the only pointer to a block is lost. */
    unsigned char *lost = malloc(208);
    if (!lost) return 1;
    memset(lost, 4, 208);
    hold = lost;
    lost = NULL;
    hold = NULL;

    puts("done");
    return 0;
}
