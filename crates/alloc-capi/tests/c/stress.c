/* Exercises the malloc family as a program would: threads with realloc chains and cross-thread
 * frees, aligned allocations, the error cases, and fork. Prints a summary that must be the same
 * with and without libdomalloc preloaded. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 20000

static void *handoff[THREADS][64];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}
static int check(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

static void *worker(void *arg) {
    long t = (long)arg;
    unsigned seed = (unsigned)t * 977u + 1;
    long ok = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = 1 + (seed = seed * 1103515245u + 12345u) % 700;
        unsigned char *p = malloc(n);
        fill(p, n, (unsigned)r);
        /* a realloc chain, contents checked at each step */
        size_t m = n;
        for (int k = 0; k < 3; k++) {
            size_t m2 = 1 + (seed = seed * 1103515245u + 12345u) % 3000;
            p = realloc(p, m2);
            if (!check(p, m < m2 ? m : m2, (unsigned)r)) { printf("realloc lost bytes\n"); exit(1); }
            fill(p, m2, (unsigned)r);
            m = m2;
        }
        ok += malloc_usable_size(p) >= m;
        /* hand the block to the next thread's slot; free what was there (made by another) */
        pthread_mutex_lock(&lock);
        void **slot = &handoff[(t + 1) % THREADS][r % 64];
        void *old = *slot;
        *slot = p;
        pthread_mutex_unlock(&lock);
        free(old);
    }
    return (void *)ok;
}

int main(void) {
    pthread_t th[THREADS];
    long usable_ok = 0;
    for (long t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < THREADS; t++) {
        void *r;
        pthread_join(th[t], &r);
        usable_ok += (long)r;
    }
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < 64; i++) { free(handoff[t][i]); handoff[t][i] = NULL; }
    printf("threads: %d x %d realloc chains, usable size ok %ld\n", THREADS, ROUNDS, usable_ok);

    /* aligned allocations */
    int aligned_ok = 0;
    size_t aligns[] = {16, 32, 64, 256, 4096, 65536};
    for (int i = 0; i < 6; i++) {
        void *p = NULL;
        if (posix_memalign(&p, aligns[i], 100 + i) == 0 && ((uintptr_t)p % aligns[i]) == 0) aligned_ok++;
        memset(p, 1, 100 + i);
        free(p);
        void *q = aligned_alloc(aligns[i], aligns[i] * 2);
        if (q && ((uintptr_t)q % aligns[i]) == 0) aligned_ok++;
        free(q);
        void *r = memalign(aligns[i], 10);
        if (r && ((uintptr_t)r % aligns[i]) == 0) aligned_ok++;
        free(r);
    }
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10), *pv = pvalloc(10);
    aligned_ok += v && (uintptr_t)v % page == 0;
    aligned_ok += pv && (uintptr_t)pv % page == 0 && malloc_usable_size(pv) >= (size_t)page;
    free(v);
    free(pv);
    printf("aligned: %d of 20\n", aligned_ok);

    /* every alignment from 32 to 4 KiB against sizes on both sides of 512 and 1 KiB (the small
     * pools' aligned blocks up to 1 KiB, the pools' aligned routing above), through the three
     * entry points: aligned, whole, resized and freed (also from another order of frees) */
    int sweep = 0, sweep_ok = 0;
    size_t sizes[] = {1, 17, 100, 500, 513, 700, 1000, 1024, 1025, 3000};
    void *kept[3 * 8 * 10];
    int nkept = 0;
    for (size_t a = 32; a <= 4096; a *= 2)
        for (int i = 0; i < 10; i++)
            for (int how = 0; how < 3; how++) {
                size_t n = sizes[i];
                void *p = NULL;
                if (how == 0 && posix_memalign(&p, a, n)) p = NULL;
                if (how == 1) p = aligned_alloc(a, n);
                if (how == 2) p = memalign(a, n);
                sweep++;
                if (!p || (uintptr_t)p % a || malloc_usable_size(p) < n) continue;
                memset(p, 0x5a, n);
                char *q = realloc(p, n + 40);
                if (!q || q[n - 1] != 0x5a) continue;
                memset(q, 0x6b, n + 40);
                kept[nkept++] = q;
                sweep_ok++;
            }
    for (int i = nkept - 1; i >= 0; i -= 2) free(kept[i]);
    for (int i = nkept - 2; i >= 0; i -= 2) free(kept[i]);
    printf("aligned sweep: %d of %d\n", sweep_ok, sweep);

    /* the error cases and the edges */
    void *bad = NULL;
    int e1 = posix_memalign(&bad, 24, 10);
    errno = 0;
    void *big = malloc(SIZE_MAX / 2);
    int e2 = errno;
    errno = 0;
    void *over = calloc(SIZE_MAX / 2, 4);
    int e3 = errno;
    void *arr = reallocarray(NULL, SIZE_MAX / 2, 4);
    int *z = calloc(1000, sizeof(int));
    int zeros = 1;
    for (int i = 0; i < 1000; i++) zeros &= z[i] == 0;
    void *gone = realloc(z, 0);
    /* a small block too: the pools' own realloc path, not the medium pool's */
    char *small = malloc(40);
    small[0] = 1;
    void *gone_small = realloc(small, 0);
    free(NULL);
    printf("errors: posix_memalign(24) %s, huge malloc %s %s, calloc overflow %s %s, reallocarray overflow %s, calloc zeroed %d, realloc(p, 0) %s, realloc(small, 0) %s\n",
           e1 == EINVAL ? "EINVAL" : "?", big ? "?" : "NULL", e2 == ENOMEM ? "ENOMEM" : "?",
           over ? "?" : "NULL", e3 == ENOMEM ? "ENOMEM" : "?", arr ? "?" : "NULL", zeros,
           gone ? "?" : "NULL", gone_small ? "?" : "NULL");

    /* the aligned entry points' edges: alignments refused, a size of 0, sizes that cannot be had */
    void *a0 = NULL, *a1 = NULL, *a2 = NULL, *a3 = NULL, *a4 = NULL;
    int r0 = posix_memalign(&a0, 0, 10), r1 = posix_memalign(&a1, 4, 10);
    int r2 = posix_memalign(&a2, 64, 0), r3 = posix_memalign(&a3, 64, SIZE_MAX - 8);
    int r4 = posix_memalign(&a4, 8, 24);
    errno = 0;
    void *h = aligned_alloc(64, SIZE_MAX - 8);
    int e4 = errno;
    void *z0 = aligned_alloc(1, 0), *z3 = aligned_alloc(3, 20);
    printf("aligned edges: align 0 %s, align 4 %s, size 0 %s, huge %s %s %s, align 8 %s, aligned_alloc(1, 0) %s, aligned_alloc(3, 20) %s\n",
           r0 == EINVAL ? "EINVAL" : "?", r1 == EINVAL ? "EINVAL" : "?",
           r2 == 0 && a2 && (uintptr_t)a2 % 64 == 0 ? "ok" : "?", r3 == ENOMEM ? "ENOMEM" : "?",
           h ? "?" : "NULL", e4 == ENOMEM ? "ENOMEM" : "?",
           r4 == 0 && a4 && (uintptr_t)a4 % 8 == 0 && malloc_usable_size(a4) >= 24 ? "ok" : "?",
           z0 ? "a block" : "NULL", z3 && (uintptr_t)z3 % 4 == 0 ? "ok" : "?");
    free(a2);
    free(a4);
    free(z0);
    free(z3);

    /* fork while another thread allocates: the child allocates too */
    pthread_t busy;
    pthread_create(&busy, NULL, worker, (void *)7);
    int children_ok = 0;
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char *s = malloc(100);
            for (int k = 0; k < 1000; k++) { s = realloc(s, 100 + k); s[k] = 1; }
            free(s);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        children_ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    pthread_join(busy, NULL);
    for (int i = 0; i < 64; i++) { free(handoff[0][i]); handoff[0][i] = NULL; }
    printf("fork: %d of 20 children allocated and exited\n", children_ok);
    return 0;
}
