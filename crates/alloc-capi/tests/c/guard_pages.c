/* A memory error on a block that libdomalloc guards (run with DOMALLOC_GUARD_SAMPLE=1, so every
 * block is sampled while slots last): argv[1] is overflow (one byte past the end), underflow (one
 * byte before the start; with DOMALLOC_GUARD_UNDERFLOW=1) or use_after_free (a read after free).
 * The process must die by SIGSEGV at the access, after the library's report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    volatile char *p = malloc(32);
    if (!p)
        return 3;
    printf("block %p\n", (void *)p);
    fflush(stdout);
    if (!strcmp(argv[1], "overflow")) {
        p[32] = 1;
    } else if (!strcmp(argv[1], "underflow")) {
        p[-1] = 1;
    } else if (!strcmp(argv[1], "use_after_free")) {
        free((void *)p);
        char c = p[5];
        printf("read %d\n", c);
    } else {
        return 2;
    }
    puts("not caught");
    return 0;
}
