/* Opens tests/c/cxx_module.cpp's shared object with RTLD_LOCAL, as Python opens an extension, and
 * runs its check (argv: the module's path, a size no allocator serves). This program is C: no C++
 * runtime is in its global scope. Prints "ok local module" when the check passes. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    void *m = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!m) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    int (*check)(size_t) = (int (*)(size_t))dlsym(m, "cxx_module_check");
    if (!check) return 4;
    int r = check((size_t)strtoull(argv[2], NULL, 0));
    if (r) {
        fprintf(stderr, "the module's check failed: %d\n", r);
        return 5;
    }
    puts("ok local module");
    return 0;
}
