/* PEP 445's hook pattern from C, the way tracemalloc starts and stops: read the domain's
 * allocator, install a wrapper that forwards to it, later set the original back; on the raw,
 * mem and object domains, 200 times each, while threads allocate and free through every domain
 * (and through malloc/free) the whole time. Every block is checked before it is freed. Prints
 * "ok" lines; any failure prints what failed and exits 1. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "domalloc.h"


/* A counting hook: its context is the allocator it wraps, which domalloc_hook_allocator writes
 * before the hook can be called. */
typedef struct {
    DomallocAllocator old;
    atomic_size_t calls, frees;
} Hook;

static void *h_malloc(void *ctx, size_t n) {
    Hook *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    return h->old.malloc(h->old.ctx, n);
}
static void *h_calloc(void *ctx, size_t n, size_t m) {
    Hook *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    return h->old.calloc(h->old.ctx, n, m);
}
static void *h_realloc(void *ctx, void *p, size_t n) {
    Hook *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    return h->old.realloc(h->old.ctx, p, n);
}
static void h_free(void *ctx, void *p) {
    Hook *h = ctx;
    atomic_fetch_add(&h->calls, 1);
    atomic_fetch_add(&h->frees, 1);
    h->old.free(h->old.ctx, p);
}

static Hook hooks[3];

static int start_hook(int d) {
    Hook *h = &hooks[d];
    atomic_store(&h->calls, 0);
    DomallocAllocator w = {h, h_malloc, h_calloc, h_realloc, h_free};
    return domalloc_hook_allocator(d, &w, &h->old);
}

static int stop_hook(int d) { return domalloc_set_allocator(d, &hooks[d].old); }

static atomic_int stop;

static atomic_int changes;
static int last_domain = -1;
static void on_change(void *ctx, int domain, const DomallocAllocator *now) {
    (void)ctx;
    CHECK(now != NULL && now->malloc != NULL, "the callback gets the allocator");
    last_domain = domain;
    atomic_fetch_add(&changes, 1);
}

/* Keeps 64 live blocks of domain `d` (3: malloc/free), replacing one at a time. */
static void *worker(void *arg) {
    int d = (int)(intptr_t)arg;
    enum { N = 64 };
    unsigned char *blocks[N] = {0};
    size_t sizes[N] = {0};
    unsigned seed = 12345u + (unsigned)d;
    while (!atomic_load(&stop)) {
        seed = seed * 1103515245u + 12345u;
        int i = (seed >> 8) % N;
        if (blocks[i]) {
            for (size_t k = 0; k < sizes[i]; k++) CHECK(blocks[i][k] == (unsigned char)(sizes[i] + k), "a block kept its contents");
            if (d == 3) free(blocks[i]); else domalloc_free(d, blocks[i]);
        }
        size_t n = 1 + (seed >> 12) % ((seed & 1) ? 600 : 5000);
        blocks[i] = d == 3 ? malloc(n) : domalloc_malloc(d, n);
        CHECK(blocks[i] != NULL, "an allocation");
        sizes[i] = n;
        for (size_t k = 0; k < n; k++) blocks[i][k] = (unsigned char)(n + k);
    }
    for (int i = 0; i < N; i++) {
        if (!blocks[i]) continue;
        for (size_t k = 0; k < sizes[i]; k++) CHECK(blocks[i][k] == (unsigned char)(sizes[i] + k), "a block kept its contents");
        if (d == 3) free(blocks[i]); else domalloc_free(d, blocks[i]);
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);

    /* Installing calls none of the hook's functions: it sees exactly the program's calls. */
    void *early = domalloc_malloc(DOMALLOC_DOMAIN_RAW, 40);
    CHECK(start_hook(DOMALLOC_DOMAIN_RAW) == DOMALLOC_OK, "hook raw after its first allocation");
    CHECK(atomic_load(&hooks[0].calls) == 0, "no hidden call at install");
    void *during = domalloc_malloc(DOMALLOC_DOMAIN_RAW, 24);
    domalloc_free(DOMALLOC_DOMAIN_RAW, early); /* made before the hook, freed through it */
    CHECK(atomic_load(&hooks[0].calls) == 2 && atomic_load(&hooks[0].frees) == 1, "the hook sees each call once");
    CHECK(stop_hook(DOMALLOC_DOMAIN_RAW) == DOMALLOC_OK, "raw set back after use");
    domalloc_free(DOMALLOC_DOMAIN_RAW, during); /* made through the hook, freed after it */
    CHECK(atomic_load(&hooks[0].calls) == 2, "a removed hook is not called");
    printf("ok no hidden calls\n");

    /* An unrelated C allocator over live blocks is still refused, with the reason. */
    void *live = domalloc_malloc(DOMALLOC_DOMAIN_MEM, 10);
    DomallocAllocator other = {NULL, NULL, NULL, NULL, NULL};
    CHECK(domalloc_get_allocator(DOMALLOC_DOMAIN_RAW, &other) == DOMALLOC_OK, "get");
    Hook unrelated = {0};
    unrelated.old = other;
    DomallocAllocator unrelated_c = {&unrelated, h_malloc, h_calloc, h_realloc, h_free};
    CHECK(domalloc_set_allocator(DOMALLOC_DOMAIN_MEM, &unrelated_c) == DOMALLOC_ERR_AMBIGUOUS, "an unrelated allocator refused");
    CHECK(atomic_load(&unrelated.calls) == 0, "a refused allocator was never called");
    domalloc_free(DOMALLOC_DOMAIN_MEM, live);
    printf("ok refusal\n");

    /* User domains, the list of domains, change callbacks, and a hook on a user domain. */
    int u = domalloc_add_domain("c-user");
    CHECK(u >= 3, "add_domain");
    CHECK(domalloc_add_domain("c-user") == DOMALLOC_ERR_EXISTS, "a duplicate name");
    CHECK(domalloc_add_domain("") == DOMALLOC_ERR_INVALID && domalloc_add_domain(NULL) == DOMALLOC_ERR_INVALID, "no name");
    int ids[64];
    size_t n = domalloc_domains(ids, 64);
    CHECK(n >= 4 && n <= 64 && ids[0] == 0 && ids[1] == 1 && ids[2] == 2 && ids[n - 1] == u, "the list of domains");
    char name[32];
    CHECK(domalloc_domain_name(u, name, sizeof name) == 6 && !strcmp(name, "c-user"), "a domain's name");
    CHECK(domalloc_domain_name(DOMALLOC_DOMAIN_MEM, name, 2) == 3 && !strcmp(name, "m"), "a name cut to the buffer");
    CHECK(domalloc_domain_name(99, name, sizeof name) == 0, "no name for an unknown domain");
    long long cid = domalloc_on_change(u, on_change, NULL);
    CHECK(cid > 0 && atomic_load(&changes) == 1 && last_domain == u, "a callback is called at once");
    CHECK(domalloc_on_change(99, on_change, NULL) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "a callback on no domain");
    unsigned char *up = domalloc_malloc(u, 100);
    CHECK(up != NULL, "a user domain allocates");
    Hook uh = {0};
    DomallocAllocator uw = {&uh, h_malloc, h_calloc, h_realloc, h_free};
    CHECK(domalloc_hook_allocator(u, &uw, &uh.old) == DOMALLOC_OK && atomic_load(&changes) == 2, "hook a user domain");
    domalloc_free(u, up);
    CHECK(atomic_load(&uh.frees) == 1, "its earlier block freed through the hook");
    CHECK(domalloc_set_allocator(u, &uh.old) == DOMALLOC_OK && atomic_load(&changes) == 3, "set back");
    CHECK(domalloc_remove_change_callback(cid) == DOMALLOC_OK, "remove the callback");
    CHECK(domalloc_remove_change_callback(cid) == DOMALLOC_ERR_INVALID, "removed once");
    CHECK(domalloc_hook_allocator(u, &uw, &uh.old) == DOMALLOC_OK && atomic_load(&changes) == 3, "no call once removed");
    CHECK(domalloc_set_allocator(u, &uh.old) == DOMALLOC_OK, "set back again");
    printf("ok user domains and change callbacks\n");

    /* Removing user domains: refused while a block is live and for the standard domains; the
     * old id is never valid again, even once another domain has its place. */
    long long rcid = domalloc_on_change(u, on_change, NULL);
    CHECK(rcid > 0, "a callback on the domain to remove");
    int before = atomic_load(&changes);
    void *kept = domalloc_malloc(u, 64);
    CHECK(kept != NULL, "a block of the user domain");
    CHECK(domalloc_remove_domain(u) == DOMALLOC_ERR_LIVE_BLOCKS, "refused while a block is live");
    CHECK(domalloc_remove_domain(DOMALLOC_DOMAIN_MEM) == DOMALLOC_ERR_STANDARD, "a standard domain stays");
    CHECK(domalloc_remove_domain(DOMALLOC_DOMAIN_RAW) == DOMALLOC_ERR_STANDARD, "raw stays");
    CHECK(domalloc_remove_domain(99) == DOMALLOC_ERR_UNKNOWN_DOMAIN && domalloc_remove_domain(-1) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "no such domain");
    domalloc_free(u, kept);
    CHECK(domalloc_remove_domain(u) == DOMALLOC_OK, "removed once its blocks are freed");
    CHECK(domalloc_remove_domain(u) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "removed once");
    CHECK(domalloc_malloc(u, 8) == NULL, "no allocation through a removed domain");
    CHECK(domalloc_domain_name(u, name, sizeof name) == 0, "no name for a removed domain");
    DomallocAllocator gone;
    CHECK(domalloc_get_allocator(u, &gone) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "no allocator for a removed domain");
    CHECK(domalloc_on_change(u, on_change, NULL) == DOMALLOC_ERR_UNKNOWN_DOMAIN, "no callback on a removed domain");
    n = domalloc_domains(ids, 64);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != u, "a removed domain is not listed");
    int u2 = domalloc_add_domain("c-user");
    CHECK(u2 >= 3 && u2 != u && (u2 & 0xff) == (u & 0xff), "its place and name are free again, under another id");
    CHECK(domalloc_malloc(u, 8) == NULL, "the old id does not reach the new domain");
    void *fresh = domalloc_malloc(u2, 8);
    CHECK(fresh != NULL, "the new domain allocates");
    domalloc_free(u2, fresh);
    Hook h2 = {0};
    DomallocAllocator w2 = {&h2, h_malloc, h_calloc, h_realloc, h_free};
    CHECK(domalloc_hook_allocator(u2, &w2, &h2.old) == DOMALLOC_OK && domalloc_set_allocator(u2, &h2.old) == DOMALLOC_OK, "hook the new domain");
    CHECK(atomic_load(&changes) == before, "the removed domain's callback is gone");
    CHECK(domalloc_remove_change_callback(rcid) == DOMALLOC_ERR_INVALID, "removed with its domain");
    CHECK(domalloc_remove_domain(u2) == DOMALLOC_OK, "the new domain removed too");
    printf("ok removing domains\n");

    /* tracemalloc's start and stop, over threads that allocate throughout. */
    pthread_t t[4];
    for (int d = 0; d < 4; d++) CHECK(pthread_create(&t[d], NULL, worker, (void *)(intptr_t)d) == 0, "thread");
    size_t seen[3] = {0, 0, 0};
    for (int cycle = 0; cycle < 200; cycle++) {
        for (int d = 0; d < 3; d++) CHECK(start_hook(d) == DOMALLOC_OK, "start");
        usleep(300);
        for (int d = 0; d < 3; d++) {
            CHECK(stop_hook(d) == DOMALLOC_OK, "stop");
            seen[d] += atomic_load(&hooks[d].frees);
        }
    }
    atomic_store(&stop, 1);
    for (int d = 0; d < 4; d++) pthread_join(t[d], NULL);
    for (int d = 0; d < 3; d++) CHECK(seen[d] > 0, "each hook saw frees");
    /* After 200 cycles the chain is the original: the domain's allocator is the one read first. */
    DomallocAllocator now;
    for (int d = 0; d < 3; d++) {
        CHECK(domalloc_get_allocator(d, &now) == DOMALLOC_OK, "get");
        CHECK(now.ctx == hooks[d].old.ctx, "the original allocator is back");
    }
    printf("ok tracemalloc start/stop under threads\n");
    return 0;
}
