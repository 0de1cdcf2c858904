/* Loops of the other entry points, one per mode (argv: ops, mode), for instruction counts:
 *   calloc        calloc(1, 64) + free
 *   realloc       malloc(40) + realloc(p, 48) (the same size class: in place) + free
 *   realloc_move  malloc(40) + realloc(p, 200) (another class) + free
 *   realloc_medium       malloc(1000) + realloc(p, 1020) (a medium block, in place) + free
 *   realloc_medium_move  malloc(1000) + realloc(p, 1100) (another medium class) + free
 *   memalign      posix_memalign(&p, 64, 64) + free
 * benches/c/count.sh LIB MODE counts them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    const char *mode = argc > 2 ? argv[2] : "calloc";
    void *volatile sink;
    if (!strcmp(mode, "calloc")) {
        for (long i = 0; i < n; i++) {
            void *p = calloc(1, 64);
            sink = p;
            free(p);
        }
    } else if (!strcmp(mode, "realloc")) {
        for (long i = 0; i < n; i++) {
            void *p = realloc(malloc(40), 48);
            sink = p;
            free(p);
        }
    } else if (!strcmp(mode, "realloc_move")) {
        for (long i = 0; i < n; i++) {
            void *p = realloc(malloc(40), 200);
            sink = p;
            free(p);
        }
    } else if (!strcmp(mode, "realloc_medium")) {
        for (long i = 0; i < n; i++) {
            void *p = realloc(malloc(1000), 1020);
            sink = p;
            free(p);
        }
    } else if (!strcmp(mode, "realloc_medium_move")) {
        for (long i = 0; i < n; i++) {
            void *p = realloc(malloc(1000), 1100);
            sink = p;
            free(p);
        }
    } else if (!strcmp(mode, "memalign")) {
        for (long i = 0; i < n; i++) {
            void *p = NULL;
            if (posix_memalign(&p, 64, 64)) return 1;
            sink = p;
            free(p);
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    (void)sink;
    return 0;
}
