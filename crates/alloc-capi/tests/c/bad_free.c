/* One misuse of the malloc family per run (the case is argv[1]); a misuse that is not caught
 * goes on to allocate two blocks and print whether they are the same one (a block handed out
 * twice). The matrix in programs.rs runs each case under each preset. */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A thread with a heap of its own frees a block the main thread made, twice: the block goes into
 * this thread's bin (a free takes any thread's block), where the second free finds it. */
static void *free_twice(void *arg) {
    char *volatile own = malloc(32);
    free(own);
    free(arg);
    free(arg);
    return NULL;
}

/* The same from a thread that allocates nothing (no heap of its own, as a consumer's): the first
 * free sends the block home at once, where the second finds it heading its pool's remote list. */
static void *free_twice_no_heap(void *arg) {
    free(arg);
    free(arg);
    return NULL;
}

/* A pointer inside a block, freed by a thread that allocates nothing. */
static void *free_interior_no_heap(void *arg) {
    free((char *)arg + 16);
    return NULL;
}

/* The address past the last whole block of the 16 KiB pool of `b`, a block of 496 bytes: 33
 * blocks fill 16,368 bytes of the pool, which leaves a tail of 16 that starts at a multiple of
 * the block size but is no block (a block there would reach into the next pool). */
static char *pool_tail(char *b) {
    return (char *)(((size_t)b & ~(size_t)16383) + 33 * 496);
}

/* 8 GiB into the 16 GiB (2^34) the small pool reserves for its arenas, next to block `p` of
 * it, where no arena is. */
static char *in_reservation(char *p) {
    size_t base = (size_t)p & ~(((size_t)1 << 34) - 1);
    return (char *)(base + ((size_t)8 << 30) + 64);
}

static void *free_reserved_no_heap(void *arg) {
    free(in_reservation(arg));
    return NULL;
}

static void *free_pool_tail_no_heap(void *arg) {
    free(pool_tail(arg));
    return NULL;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "none";
    char *volatile p = malloc(64);
    memset(p, 1, 64);
    if (!strcmp(c, "double_free_small")) {
        char *volatile a = malloc(32);
        free(a);
        free(a);
    } else if (!strcmp(c, "double_free_other_thread")) {
        pthread_t t;
        char *volatile a = malloc(32);
        if (pthread_create(&t, NULL, free_twice, a)) return 2;
        pthread_join(t, NULL);
    } else if (!strcmp(c, "double_free_no_heap_thread") || !strcmp(c, "interior_no_heap_thread")) {
        pthread_t t;
        char *volatile a = malloc(64);
        int interior = !strcmp(c, "interior_no_heap_thread");
        if (pthread_create(&t, NULL, interior ? free_interior_no_heap : free_twice_no_heap, a))
            return 2;
        pthread_join(t, NULL);
    } else if (!strcmp(c, "double_free_medium")) {
        char *volatile a = malloc(2000);
        free(a);
        free(a);
    } else if (!strcmp(c, "double_free_large")) {
        char *volatile a = malloc(1 << 20);
        free(a);
        free(a);
    } else if (!strcmp(c, "aligned_overflow") || !strcmp(c, "aligned_underflow")) {
        void *q = NULL;
        if (posix_memalign(&q, 64, 100) || (size_t)q % 64) return 3;
        char *volatile a = q;
        if (!strcmp(c, "aligned_overflow")) a[100] = 0; else a[-1] = 0;
        free(a);
    } else if (!strcmp(c, "pool_tail")) {
        free(pool_tail(malloc(496)));
    } else if (!strcmp(c, "uncarved")) {
        /* The last block start of the pool of the first 976-byte block (16 blocks in 16 KiB):
         * the pool carves its blocks as they are needed, so that one has never been handed out
         * (a stale pointer from the pool's earlier life, freed again, looks like this). */
        char *volatile b = malloc(976);
        free((char *)(((size_t)b & ~(size_t)16383) + 15 * 976));
    } else if (!strcmp(c, "realloc_pool_tail")) {
        char *volatile b = malloc(496);
        free(malloc(496));
        b = realloc(pool_tail(b), 400);
    } else if (!strcmp(c, "pool_tail_no_heap_thread")) {
        pthread_t t;
        if (pthread_create(&t, NULL, free_pool_tail_no_heap, malloc(496))) return 2;
        pthread_join(t, NULL);
    } else if (!strcmp(c, "interior")) {
        free(p + 16);
    } else if (!strcmp(c, "misaligned")) {
        free(p + 1);
    } else if (!strcmp(c, "realloc_freed")) {
        free(p);
        p = realloc(p, 100);
    } else if (!strcmp(c, "realloc_freed_medium")) {
        /* A block of the medium pool (1 KiB to 8 KiB), freed, then resized within that pool
         * after another block of its size was freed (it is no longer the bin's top). */
        char *volatile m = malloc(2000), *volatile n = malloc(2000);
        free(m);
        free(n);
        m = realloc(m, 2100);
    } else if (!strcmp(c, "double_free_pool_list")) {
        /* Freed twice after a thousand frees of its size sent it back to its pool's free list
         * (one block in 50 kept, so that no pool empties). */
        static char *blocks[1000];
        for (int i = 0; i < 1000; i++) blocks[i] = malloc(48);
        for (int i = 0; i < 1000; i++)
            if (i % 50 != 49) free(blocks[i]);
        free(blocks[0]);
    } else if (!strcmp(c, "double_free_later")) {
        /* Freed twice with other frees of its size between: the block is in the bin, not on its
         * top (the mark its first free wrote sends the second the long way). */
        char *volatile a = malloc(48), *volatile b = malloc(48), *volatile d = malloc(48);
        free(a);
        free(b);
        free(d);
        free(a);
    } else if (!strcmp(c, "object_block_freed")) {
        /* A block of the object domain (PyObject_Malloc) given to free(): API misuse. */
        void *(*domain_malloc)(int, size_t) = (void *(*)(int, size_t))dlsym(RTLD_DEFAULT, "domalloc_malloc");
        if (!domain_malloc) return 2;
        free(domain_malloc(2, 32));
    } else if (!strcmp(c, "reserved_no_arena") || !strcmp(c, "realloc_reserved_no_arena")) {
        /* Never glibc's block, whatever glibc would make of the zeros there. */
        char *q = in_reservation(p);
        if (!strcmp(c, "reserved_no_arena")) free(q);
        else q = realloc(q, 100);
    } else if (!strcmp(c, "reserved_no_arena_no_heap_thread")) {
        pthread_t t;
        pthread_create(&t, NULL, free_reserved_no_heap, p);
        pthread_join(t, NULL);
    } else if (!strcmp(c, "usable_size_freed")) {
        free(p);
        printf("%zu\n", malloc_usable_size(p));
    }
    char *x = malloc(64), *y = malloc(64);
    printf("%s not caught: %s\n", c, x == y ? "a block handed out twice" : "distinct blocks");
    return 0;
}
