/* The system-call cost behind a guarded block: making a 4-page slot readable and writable,
 * touching it, and making it inaccessible again, as GuardPages does for each sample; and a bare
 * system call for comparison.  gcc -O2 -o /tmp/mprotect_cost benches/c/mprotect_cost.c */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int slots = 512, n = 200000;
    char *base = mmap(0, page * 5 * slots + page, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return 1;
    double t0 = now();
    for (int i = 0; i < n; i++) {
        char *s = base + page + (size_t)(i % slots) * 5 * page;
        mprotect(s, 4 * page, PROT_READ | PROT_WRITE);
        s[4 * page - 64] = 1;
        mprotect(s, 4 * page, PROT_NONE);
    }
    double t1 = now();
    for (int i = 0; i < n; i++)
        getppid();
    double t2 = now();
    printf("open + touch + close: %.0f ns\ngetppid: %.0f ns\n", (t1 - t0) / n, (t2 - t1) / n);
    return 0;
}
