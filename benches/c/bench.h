/* What the C benchmark programs share: a monotonic clock, and running a worker on threads. */
#ifndef DOMALLOC_BENCH_H
#define DOMALLOC_BENCH_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Runs worker(1), ..., worker(threads) on their own threads (at most 64); returns the wall time
 * in nanoseconds. */
static inline double run_threads(void *(*worker)(void *), int threads) {
    pthread_t t[64];
    if (threads > 64) threads = 64;
    double t0 = now_ns();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    return now_ns() - t0;
}

#endif
