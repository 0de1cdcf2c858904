/* The tests' one check: a failed condition prints what failed and the line, and exits 1 (the
 * test harness shows the program's output). */
#ifndef DOMALLOC_TEST_CHECK_H
#define DOMALLOC_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, what)                                     \
    do {                                                      \
        if (!(cond)) {                                        \
            printf("FAILED: %s (line %d)\n", what, __LINE__); \
            exit(1);                                          \
        }                                                     \
    } while (0)

#endif
