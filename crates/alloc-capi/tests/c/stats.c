/* Per-domain statistics from C, linked against libdomalloc: domalloc_domain_stats and
 * domalloc_domain_stats_enable. Run as "stats off" (no DOMALLOC_STATS) and "stats on"
 * (DOMALLOC_STATS=1). Prints "ok" lines; any failure prints what failed and exits 1. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "domalloc.h"

#define THREADS 4
#define PER_THREAD 2000

static int user_domain;
static void *made[THREADS][PER_THREAD];

/* Each thread allocates its share through the user domain; the main thread frees them all. */
static void *allocate(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        made[t][i] = domalloc_malloc(user_domain, 16 + (size_t)(i % 64) * 8);
        CHECK(made[t][i] != NULL, "domalloc_malloc in a thread");
    }
    return NULL;
}

/* The usable size the library counts for a block of the user domain, which uses the mem
 * domain's allocator: malloc_usable_size through the exports. */
static uint64_t usable(void *p) { return malloc_usable_size(p); }

static void user_domain_counts_exactly(void) {
    user_domain = domalloc_add_domain("stats-c");
    CHECK(user_domain > DOMALLOC_DOMAIN_OBJECT, "add_domain");
    DomallocDomainStats s;
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_ERR_STATS_OFF ||
              getenv("DOMALLOC_STATS") != NULL,
          "a new domain does not count unless DOMALLOC_STATS=1");
    CHECK(domalloc_domain_stats_enable(user_domain) == DOMALLOC_OK, "enable before allocating");
    CHECK(domalloc_domain_stats_enable(user_domain) == DOMALLOC_OK, "enable twice");
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats once enabled");
    CHECK(s.allocations == 0 && s.frees == 0 && s.live_blocks == 0 && s.live_bytes == 0 &&
              s.peak_live_bytes == 0,
          "nothing counted yet");

    /* One thread: exact bytes and peak. */
    void *a = domalloc_malloc(user_domain, 100);
    void *b = domalloc_calloc(user_domain, 10, 30);
    CHECK(a && b, "allocations");
    uint64_t ua = usable(a), ub = usable(b);
    CHECK(ua >= 100 && ub >= 300, "usable sizes");
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats");
    CHECK(s.allocations == 2 && s.frees == 0 && s.live_blocks == 2, "two blocks live");
    CHECK(s.live_bytes == ua + ub && s.peak_live_bytes == ua + ub, "their usable sizes");
    a = domalloc_realloc(user_domain, a, 2000);
    CHECK(a != NULL, "realloc");
    uint64_t ua2 = usable(a);
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats");
    CHECK(s.allocations == 2 && s.live_blocks == 2 && s.live_bytes == ua2 + ub, "realloc moves bytes");
    domalloc_free(user_domain, a);
    domalloc_free(user_domain, b);
    domalloc_free(user_domain, NULL);
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats");
    CHECK(s.allocations == 2 && s.frees == 2 && s.live_blocks == 0 && s.live_bytes == 0,
          "all freed");
    CHECK(s.peak_live_bytes == ua2 + ub, "the peak stays");
    printf("ok user domain, one thread\n");

    /* Threads allocate, the main thread frees: exact totals. */
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, allocate, (void *)t) == 0, "pthread_create");
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    uint64_t bytes = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) bytes += usable(made[t][i]);
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats");
    CHECK(s.allocations == 2 + THREADS * PER_THREAD, "every thread's allocations");
    CHECK(s.live_blocks == THREADS * PER_THREAD && s.live_bytes == bytes, "live across threads");
    CHECK(s.peak_live_bytes == (bytes > ua2 + ub ? bytes : ua2 + ub), "the peak across threads");
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) domalloc_free(user_domain, made[t][i]);
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_OK, "stats");
    CHECK(s.frees == 2 + THREADS * PER_THREAD && s.live_blocks == 0 && s.live_bytes == 0,
          "frees on another thread");
    CHECK(domalloc_remove_domain(user_domain) == DOMALLOC_OK, "remove the domain");
    CHECK(domalloc_domain_stats(user_domain, &s) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "removed");
    printf("ok user domain, threads\n");
}

int main(int argc, char **argv) {
    int on = argc > 1 && strcmp(argv[1], "on") == 0;
    DomallocDomainStats s;
    memset(&s, 0xAB, sizeof s);
    /* The mem domain has allocated (volatile: the compiler may not drop the pair). */
    void *volatile first = malloc(10);
    free(first);
    printf("stats %s\n", on ? "on" : "off");
    CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, NULL) == DOMALLOC_ERR_INVALID, "null out");
    CHECK(domalloc_domain_stats(99, &s) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "no such domain");
    CHECK(domalloc_domain_stats_enable(99) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "enable: no such domain");
    if (!on) {
        CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, &s) == DOMALLOC_ERR_STATS_OFF, "off");
        CHECK(s.allocations == 0xABABABABABABABABull, "out untouched on error");
        CHECK(domalloc_domain_stats_enable(DOMALLOC_DOMAIN_MEM) == DOMALLOC_ERR_USED,
              "too late for the mem domain");
        printf("ok off by default\n");
    } else {
        /* The exported malloc family goes through the mem domain, counted. */
        CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, &s) == DOMALLOC_OK, "mem counts");
        CHECK(s.allocations >= 1 && s.frees >= 1, "the malloc/free above");
        CHECK(domalloc_domain_stats_enable(DOMALLOC_DOMAIN_MEM) == DOMALLOC_OK, "on already");
        DomallocDomainStats before, after;
        CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, &before) == DOMALLOC_OK, "stats");
        void *p[100];
        uint64_t bytes = 0;
        for (int i = 0; i < 100; i++) {
            p[i] = malloc(1 + (size_t)i * 97);
            CHECK(p[i] != NULL, "malloc");
            bytes += malloc_usable_size(p[i]);
        }
        CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, &after) == DOMALLOC_OK, "stats");
        CHECK(after.allocations - before.allocations == 100, "100 mallocs");
        CHECK(after.live_bytes - before.live_bytes == bytes, "their usable sizes");
        CHECK(after.peak_live_bytes >= after.live_bytes, "the peak");
        for (int i = 0; i < 100; i++) free(p[i]);
        CHECK(domalloc_domain_stats(DOMALLOC_DOMAIN_MEM, &after) == DOMALLOC_OK, "stats");
        CHECK(after.frees - before.frees == 100, "100 frees");
        CHECK(after.live_bytes == before.live_bytes, "back where it was");
        CHECK(after.live_blocks == before.live_blocks, "blocks too");
        printf("ok mem domain through malloc and free\n");
    }
    user_domain_counts_exactly();
    return 0;
}
