/* PEP 445's API from C, linked against libdomalloc: domains, get/set, debug hooks, the arena
 * allocator (an mmap-backed one of this program's), statistics and tracing. Prints "ok" lines;
 * any failure prints what failed and exits 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"
#include "domalloc.h"


static size_t arenas_made, arenas_freed;
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;

static void *my_arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pthread_mutex_lock(&arena_lock);
    arenas_made++;
    pthread_mutex_unlock(&arena_lock);
    return p;
}

static void my_arena_free(void *ctx, void *p, size_t size) {
    (void)ctx;
    munmap(p, size);
    pthread_mutex_lock(&arena_lock);
    arenas_freed++;
    pthread_mutex_unlock(&arena_lock);
}

static void *c_malloc(void *ctx, size_t n) { (void)ctx; return malloc(n); }
static void *c_calloc(void *ctx, size_t n, size_t m) { (void)ctx; return calloc(n, m); }
static void *c_realloc(void *ctx, void *p, size_t n) { (void)ctx; return realloc(p, n); }
static void c_free(void *ctx, void *p) { (void)ctx; free(p); }

static void *churn(void *arg) {
    (void)arg;
    void *blocks[20000];
    for (int i = 0; i < 20000; i++) blocks[i] = domalloc_malloc(DOMALLOC_DOMAIN_OBJECT, 16 + i % 400);
    for (int i = 0; i < 20000; i++) domalloc_free(DOMALLOC_DOMAIN_OBJECT, blocks[i]);
    domalloc_trim();
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    /* domains */
    for (int d = 0; d < 3; d++) {
        char *p = domalloc_malloc(d, 100);
        CHECK(p != NULL, "domalloc_malloc");
        memset(p, 7, 100);
        p = domalloc_realloc(d, p, 5000);
        CHECK(p != NULL && p[99] == 7, "domalloc_realloc keeps the contents");
        domalloc_free(d, p);
        int *z = domalloc_calloc(d, 10, sizeof(int));
        CHECK(z != NULL && z[9] == 0, "domalloc_calloc");
        domalloc_free(d, z);
    }
    CHECK(domalloc_malloc(99, 10) == NULL, "unknown domain");
    printf("ok domains\n");

    /* get / set: read the mem allocator, call it, set it back (the hook pattern) */
    DomallocAllocator mem;
    CHECK(domalloc_get_allocator(DOMALLOC_DOMAIN_MEM, &mem) == DOMALLOC_OK, "get_allocator");
    void *q = mem.malloc(mem.ctx, 64);
    CHECK(q != NULL, "the allocator read back allocates");
    mem.free(mem.ctx, q);
    CHECK(domalloc_set_allocator(DOMALLOC_DOMAIN_MEM, &mem) == DOMALLOC_OK, "set it back");
    CHECK(domalloc_get_allocator(42, &mem) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "unknown domain code");
    /* a C allocator after the domain's first allocation is refused: it cannot claim blocks */
    DomallocAllocator c = {NULL, c_malloc, c_calloc, c_realloc, c_free};
    CHECK(domalloc_set_allocator(DOMALLOC_DOMAIN_MEM, &c) == DOMALLOC_ERR_AMBIGUOUS, "ambiguous");
    printf("ok get/set\n");

    /* the arena allocator: new arenas come from this program's mmap; all go back to it */
    DomallocArenaAllocator old, mine = {NULL, my_arena_alloc, my_arena_free};
    CHECK(domalloc_get_arena_allocator(&old) == DOMALLOC_OK, "get_arena_allocator");
    CHECK(domalloc_set_arena_allocator(&mine) == DOMALLOC_OK, "set_arena_allocator");
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    pthread_join(t, NULL);
    domalloc_trim();
    CHECK(arenas_made > 0, "the pools took arenas from the C arena allocator");
    CHECK(arenas_made == arenas_freed, "every arena went back to it");
    CHECK(domalloc_set_arena_allocator(&old) == DOMALLOC_OK, "set the old one back");
    printf("ok arena allocator (%s)\n", arenas_made > 1 ? "several arenas" : "one arena");

    /* statistics */
    DomallocPoolStats s;
    CHECK(domalloc_pool_stats(&s) == DOMALLOC_OK, "pool_stats");
    size_t need = domalloc_pool_stats_text(NULL, 0);
    /* The buffer's own allocation may change the figures (and their digits) a little: room to
       spare, and the length the second call reports must fit it. */
    size_t cap = need + 1024;
    char *text = malloc(cap);
    size_t got = domalloc_pool_stats_text(text, cap);
    CHECK(got > 0 && got < cap && strlen(text) == got, "stats text length");
    CHECK(strstr(text, "size classes") != NULL, "stats text");
    free(text);
    printf("ok statistics\n");

    /* tracing the mem domain */
    CHECK(domalloc_tracing_start(1) == DOMALLOC_OK, "tracing_start");
    CHECK(domalloc_tracing_is_tracing(), "is_tracing");
    void *kept[100];
    for (int i = 0; i < 100; i++) kept[i] = domalloc_malloc(DOMALLOC_DOMAIN_MEM, 1000);
    size_t cur = 0, peak = 0;
    domalloc_tracing_traced_memory(&cur, &peak);
    CHECK(cur >= 100 * 1000 && peak >= cur, "traced memory");
    char top[4096];
    domalloc_tracing_top(top, sizeof top, 3);
    CHECK(strlen(top) > 0, "top");
    for (int i = 0; i < 100; i++) domalloc_free(DOMALLOC_DOMAIN_MEM, kept[i]);
    size_t after = 0;
    domalloc_tracing_traced_memory(&after, NULL);
    CHECK(after + 100 * 1000 <= cur, "traced memory falls");
    domalloc_tracing_stop();
    CHECK(!domalloc_tracing_is_tracing(), "stopped");
    printf("ok tracing\n");

    /* sampled tracing: 4000 blocks of 1000 bytes, sampled every 4 KiB on average (about 870
     * samples), estimated to within a quarter */
    CHECK(domalloc_tracing_start_sampled(1, 0) == DOMALLOC_ERR_INVALID, "interval 0 refused");
    CHECK(domalloc_tracing_start_sampled(0, 4096) == DOMALLOC_ERR_INVALID, "depth 0 refused");
    CHECK(domalloc_tracing_start_sampled(1, DOMALLOC_MAX_SAMPLE_INTERVAL + 1) == DOMALLOC_ERR_INVALID,
          "interval too large refused");
    CHECK(domalloc_tracing_start_sampled(1, 4096) == DOMALLOC_OK, "tracing_start_sampled");
    CHECK(domalloc_tracing_is_tracing(), "sampled is_tracing");
    static void *sampled[4000];
    for (int i = 0; i < 4000; i++) sampled[i] = domalloc_malloc(DOMALLOC_DOMAIN_MEM, 1000);
    size_t estimate = 0;
    domalloc_tracing_traced_memory(&estimate, NULL);
    CHECK(estimate > 3000000 && estimate < 5000000, "sampled traced memory estimates 4 MB");
    domalloc_tracing_top(top, sizeof top, 3);
    CHECK(strstr(top, "Total allocated size") != NULL, "sampled top");
    for (int i = 0; i < 4000; i++) domalloc_free(DOMALLOC_DOMAIN_MEM, sampled[i]);
    domalloc_tracing_traced_memory(&after, NULL);
    CHECK(after < estimate / 10, "sampled blocks forgotten at their free");
    CHECK(domalloc_tracing_start(1) == DOMALLOC_OK, "back to exact tracing");
    domalloc_tracing_stop();
    printf("ok sampled tracing\n");

    CHECK(domalloc_setup_debug_hooks() >= 0, "debug hooks");
    void *g = domalloc_malloc(DOMALLOC_DOMAIN_OBJECT, 10);
    domalloc_free(DOMALLOC_DOMAIN_OBJECT, g);
    printf("ok debug hooks\n");
    return 0;
}
