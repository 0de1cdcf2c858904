// The memory a thread's heaps cost: N threads each allocate and free one block of every size
// class of the mem domain's pools (16 B to 64 KiB: the small, medium and large pools), then all
// wait while the main thread prints the process's resident memory.
// Build: gcc -O2 -pthread -o thread-footprint benches/c/thread-footprint.c
// Run:   LD_PRELOAD=target/release/libdomalloc.so ./thread-footprint 32
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t ready, done;

static void *work(void *arg) {
    for (size_t s = 16; s <= 65536; s += (s < 512 ? 16 : s < 8192 ? 128 : 1024)) {
        // volatile: the compiler may drop a malloc/free pair whose block nobody reads.
        void *volatile p = malloc(s);
        memset(p, 1, 16);
        free(p);
    }
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done);
    return arg;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 32;
    if (n < 1 || n > 256) {
        fprintf(stderr, "threads: 1 to 256\n");
        return 2;
    }
    pthread_t t[256];
    pthread_barrier_init(&ready, 0, n + 1);
    pthread_barrier_init(&done, 0, n + 1);
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, work, 0);
    pthread_barrier_wait(&ready);
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS", 5)) printf("%d threads %s", n, line);
    if (f) fclose(f);
    pthread_barrier_wait(&done);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    return 0;
}
