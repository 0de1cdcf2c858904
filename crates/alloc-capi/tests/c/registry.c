/* Blocks of many sizes made, filled, checked and freed (in a different order than made), then
 * whether the process holds a read-only anonymous mapping of 256 to 512 MiB: the pools' flat
 * registry table, which an address-space limit refuses (the registry's tree then serves every
 * lookup); and one of at least 8 GiB: the small pool's reservation of arenas (16 GiB, less the
 * arenas in use), which the same limit refuses (arenas are then mapped one by one). Prints
 * "blocks: ok", "flat table: yes" or "no", and "reservation: yes" or "no". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 20000

int main(void) {
    static unsigned char *blocks[N];
    static size_t sizes[N];
    unsigned seed = 1;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            sizes[i] = 1 + (seed >> 8) % (i % 50 == 0 ? 200000 : 600);
            blocks[i] = malloc(sizes[i]);
            if (!blocks[i]) return 2;
            memset(blocks[i], (unsigned char)i, sizes[i]);
        }
        for (int i = N - 1; i >= 0; i -= 2) {
            for (size_t k = 0; k < sizes[i]; k += 61)
                if (blocks[i][k] != (unsigned char)i) return 3;
            free(blocks[i]);
        }
        for (int i = N - 2; i >= 0; i -= 2) {
            for (size_t k = 0; k < sizes[i]; k += 61)
                if (blocks[i][k] != (unsigned char)i) return 3;
            free(blocks[i]);
        }
    }
    printf("blocks: ok\n");
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return 4;
    char line[512];
    int flat = 0, reservation = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi, offset;
        char perms[8], dev[16];
        unsigned long inode;
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, &offset, dev, &inode) == 6 &&
            !strcmp(perms, "r--p") && inode == 0) {
            if (hi - lo >= (256ul << 20) && hi - lo <= (512ul << 20)) flat = 1;
            if (hi - lo >= (8ul << 30)) reservation = 1;
        }
    }
    fclose(maps);
    printf("flat table: %s\n", flat ? "yes" : "no");
    printf("reservation: %s\n", reservation ? "yes" : "no");
    return 0;
}
