/* A randomized driver of the malloc family (argv: operations, misuse period, seed, misuses).
 *
 * It keeps 256 slots of live blocks and runs OPS random valid operations on them: malloc, calloc,
 * realloc, memalign (alignments of 16 B to 4 KiB), free and malloc_usable_size, every block
 * filled with a pattern of its own and checked before it is resized or freed (a valid operation disturbed by anything shows as a
 * changed pattern: exit status 3). Every PERIOD operations it injects one misuse, drawn from the
 * comma-separated MISUSES, in a forked child: the child commits it and, if nothing stopped it,
 * prints "NOT CAUGHT" and exits 0. The parent waits for the child and requires an abort with
 * domalloc's report on the child's stderr (never glibc's), then goes on with its own blocks.
 * Prints "ops=N injected=I caught=C disturbed=0" at the end. */
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 256
static char *slot[SLOTS];
static size_t len[SLOTS];
static unsigned char tag[SLOTS];
static uint64_t x;

static uint64_t next(void) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static size_t random_size(void) {
    switch (next() % 8) {
    case 0: return next() % 17;              /* tiny, 0 included */
    case 1: case 2: case 3: return 1 + next() % 512;
    case 4: case 5: return 513 + next() % 7680;
    case 6: return 8193 + next() % 57344;
    default: return 65537 + next() % 200000;
    }
}

/* The bytes a block's pattern covers: its first and last 64, and every 512th between. */
static int covered(size_t i, size_t n) {
    return i < 64 || i + 64 >= n || i % 512 == 0;
}

static size_t step(size_t i, size_t n) {
    return (i < 64 || i + 65 >= n) ? i + 1 : (i + 512 < n - 64 ? (i | 511) + 1 : n - 64);
}

static void fill(int k) {
    tag[k] = (unsigned char)next();
    for (size_t i = 0; i < len[k]; i = step(i, len[k])) slot[k][i] = (char)(tag[k] + i);
}

static void check(int k) {
    for (size_t i = 0; i < len[k]; i = step(i, len[k]))
        if (covered(i, len[k]) && slot[k][i] != (char)(tag[k] + i)) {
            printf("disturbed: slot %d byte %zu\n", k, i);
            exit(3);
        }
}

static void release(int k) {
    if (!slot[k]) return;
    check(k);
    free(slot[k]);
    slot[k] = NULL;
}

static void valid_op(void) {
    int k = next() % SLOTS;
    size_t n = random_size();
    switch (next() % 6) {
    case 0: release(k); slot[k] = malloc(n); len[k] = n; fill(k); break;
    case 1:
        release(k);
        slot[k] = calloc(1, n);
        len[k] = n;
        for (size_t i = 0; i < n; i = step(i, n))
            if (slot[k][i]) { printf("disturbed: calloc not zeroed\n"); exit(3); }
        fill(k);
        break;
    case 2:
        if (slot[k]) {
            check(k);
            char *q = realloc(slot[k], n ? n : 1);
            size_t keep = len[k] < n ? len[k] : n;
            for (size_t i = 0; i < keep; i = step(i, len[k]))
                if (covered(i, len[k]) && q[i] != (char)(tag[k] + i)) {
                    printf("disturbed: realloc lost bytes\n");
                    exit(3);
                }
            slot[k] = q;
            len[k] = n ? n : 1;
            fill(k);
        }
        break;
    case 3: {
        size_t align = (size_t)16 << (next() % 9); /* 16 B to 4 KiB */
        release(k);
        slot[k] = memalign(align, n);
        if ((uintptr_t)slot[k] % align) {
            printf("disturbed: memalign(%zu) gave %p\n", align, (void *)slot[k]);
            exit(3);
        }
        len[k] = n;
        fill(k);
        break;
    }
    case 4: release(k); break;
    default:
        if (slot[k] && malloc_usable_size(slot[k]) < len[k]) {
            printf("disturbed: usable size below the request\n");
            exit(3);
        }
    }
}

/* One misuse, in the child. */
static void misuse(const char *what) {
    /* volatile: the compiler may not drop a malloc and free of a block nobody reads. */
    char *volatile p = malloc(64);
    memset(p, 7, 64);
    if (!strcmp(what, "interior")) free(p + 16 * (1 + next() % 3));
    else if (!strcmp(what, "misaligned")) free(p + 1 + next() % 15);
    else if (!strcmp(what, "double_free")) { char *volatile q = malloc(1 + next() % 1024); free(q); free(q); }
    else if (!strcmp(what, "realloc_freed")) { free(p); p = realloc(p, 100); }
    else if (!strcmp(what, "double_free_medium")) {
        char *volatile q = malloc(513 + next() % 60000);
        free(q);
        free(q);
    }
    printf("NOT CAUGHT: %s\n", what);
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv) {
    long ops = argc > 1 ? atol(argv[1]) : 1000000;
    long period = argc > 2 ? atol(argv[2]) : 10000;
    x = argc > 3 ? strtoull(argv[3], NULL, 10) | 1 : 88172645463325252ull;
    char *kinds[16];
    int nkinds = 0;
    char *list = strdup(argc > 4 ? argv[4] : "interior,misaligned,double_free");
    for (char *t = strtok(list, ","); t && nkinds < 16; t = strtok(NULL, ",")) kinds[nkinds++] = t;
    long injected = 0, caught = 0;
    for (long i = 1; i <= ops; i++) {
        valid_op();
        if (i % period) continue;
        const char *what = kinds[next() % nkinds];
        int err[2];
        if (pipe(err)) return 4;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(err[1], 2);
            close(err[0]);
            misuse(what);
        }
        close(err[1]);
        char text[8192];
        size_t got = 0;
        ssize_t r;
        while ((r = read(err[0], text + got, sizeof text - 1 - got)) > 0) got += r;
        text[got] = 0;
        close(err[0]);
        int status;
        waitpid(pid, &status, 0);
        injected++;
        int aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
        int ours = strstr(text, "domalloc: ") || strstr(text, "Fatal error in debug");
        /* glibc's words, on a line that is not domalloc's own. */
        int glibcs = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
            if (strncmp(line, "domalloc: ", 10)
                && (strstr(line, "free(): ") || strstr(line, "double free or corruption")
                    || strstr(line, "tcache") || strstr(line, "munmap_chunk")))
                glibcs = 1;
        if (aborted && ours && !glibcs) caught++;
        else printf("missed: %s (status %#x): %.300s\n", what, status, text);
    }
    for (int k = 0; k < SLOTS; k++) release(k);
    printf("ops=%ld injected=%ld caught=%ld disturbed=0\n", ops, injected, caught);
    return 0;
}
