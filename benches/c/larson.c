/* A larson-style server (argv: ops per thread, threads): each thread replaces random blocks of a
 * table of 1024 (16 to 512 bytes) and, every 4096 replacements, swaps its table with the one in a
 * shared exchange, so the blocks it frees next were made by another thread (cross-thread frees,
 * as a server's requests are). Prints ns_per_op: wall time over the operations of one thread. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define SLOTS 1024
static long ops;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char **exchange;

static char **new_table(uint64_t *x) {
    char **t = calloc(SLOTS, sizeof *t);
    for (int k = 0; k < SLOTS; k++) {
        *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
        t[k] = malloc(16 + *x % 497);
    }
    return t;
}

static void *worker(void *arg) {
    uint64_t x = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
    char **table = new_table(&x);
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        unsigned k = x % SLOTS;
        size_t size = 16 + (x >> 16) % 497;
        free(table[k]);
        table[k] = malloc(size);
        table[k][0] = (char)i;
        if ((i & 4095) == 4095) {
            pthread_mutex_lock(&lock);
            char **other = exchange;
            exchange = table;
            pthread_mutex_unlock(&lock);
            table = other ? other : new_table(&x);
        }
    }
    pthread_mutex_lock(&lock);
    if (exchange && exchange != table) {
        for (int k = 0; k < SLOTS; k++) free(exchange[k]);
        free(exchange);
    }
    exchange = NULL;
    pthread_mutex_unlock(&lock);
    for (int k = 0; k < SLOTS; k++) free(table[k]);
    free(table);
    return NULL;
}

int main(int argc, char **argv) {
    ops = argc > 1 ? atol(argv[1]) : 100000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    printf("ns_per_op=%.3f\n", run_threads(worker, threads) / (double)ops);
    return 0;
}
