/* Run under LD_PRELOAD with DOMALLOC_TRACE_SAMPLE: holds 32 MiB in 8192 blocks of 4 KiB, made in
 * hold_buffers, until exit (when the library writes its profile); blocks made and freed on the way
 * (a million of 64 bytes) must leave no trace. Prints "ok held". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define BLOCKS 8192
#define SIZE 4096

static void *held[BLOCKS];

__attribute__((noinline)) static void hold_buffers(void) {
    for (int i = 0; i < BLOCKS; i++) {
        held[i] = malloc(SIZE);
        CHECK(held[i] != NULL, "malloc");
        memset(held[i], i & 0xff, SIZE);
    }
}

__attribute__((noinline)) static void churn(void) {
    for (int i = 0; i < 1000000; i++) {
        char *p = malloc(64);
        CHECK(p != NULL, "malloc");
        p[0] = (char)i;
        free(p);
    }
}

int main(void) {
    hold_buffers();
    churn();
    printf("ok held\n");
    return 0;
}
